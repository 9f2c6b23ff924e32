// Votes lent by members away for a confirmed restart (crdt/placement/fence.ts): the
// members that stay keep their VMs alive on them, and no one counts them towards a
// takeover until no one counts them lent, so a VM never runs twice.
import test from 'ava'
import { LENT_VOTE_SLACK_MS, fenced, holderFenceMs, lentVotes, majoritySince, restartPending, restartPendingFrom, restartsDueBy, takeover, voteLockedUntil, type RestartRecord } from '../../crdt/placement/index.ts'

const F = 5000
const MARGIN = 1500

test('lentVotes: members away for a restart every member confirmed, within its fence as this node counts it', t => {
  const roll = ['a', 'b', 'c', 'd', 'e']
  const rec: Record<string, RestartRecord | null> = {
    a: { fenceMs: 50_000, since: 1000, confirmed: true },
    b: { fenceMs: 50_000, since: 1000 }, // not confirmed: some member may not hold it
    c: { fenceMs: 50_000, since: 1000, confirmed: true },
    d: null
  }
  const base = { roll, me: 'e', alive: (id: string) => id === 'c', record: (id: string) => rec[id], lastHeard: () => 500, now: 10_000, wallNow: 11_000 }
  // c is alive (counted anyway), b unconfirmed, d has none
  t.deepEqual(lentVotes(base), ['a'])
  // past its fence by the wall clock (since + fenceMs), or by when this node last heard it
  t.deepEqual(lentVotes({ ...base, wallNow: 51_001 }), [])
  t.deepEqual(lentVotes({ ...base, now: 50_500 }), [])
  // never heard here: by the wall clock alone
  t.deepEqual(lentVotes({ ...base, lastHeard: () => undefined, now: 1e9 }), ['a'])
})

test('fenced: lent votes keep a node unfenced, but it claims nothing', t => {
  const at = { rollSize: 4, aliveSeen: 2, lastMajorityAt: 0, now: 60_000, fenceTimeoutMs: F }
  t.like(fenced(at), { fenced: true, majority: false })
  const kept = fenced({ ...at, lent: 2 })
  t.like(kept, { fenced: false, majority: false, mayClaim: false, lent: 2, lastMajorityAt: 60_000 })
  t.regex(kept.reason, /sees 2 of 4 roll members, and 2 more away for a restart/)
  // not enough lent: fenced as before
  t.like(fenced({ ...at, rollSize: 6, lent: 1 }), { fenced: true })
})

test('voteLockedUntil: from the record and from when this node saw it go, the longer, plus the slack', t => {
  const r: RestartRecord = { fenceMs: 50_000, since: 100_000, confirmed: true }
  // the wall clock says 10 s since the record: 40 s of its fence left, at local time 1000
  t.is(voteLockedUntil(r, undefined, 1000, 110_000), 41_000 + LENT_VOTE_SLACK_MS)
  // this node saw it go later than the record says (it asked the members, then stopped)
  t.is(voteLockedUntil(r, 3000, 1000, 110_000), 53_000 + LENT_VOTE_SLACK_MS)
  t.is(voteLockedUntil(null, 3000, 1000, 110_000), -Infinity)
})

test('majoritySince: this node\'s own vote counts from selfSince', t => {
  const alive = (id: string): number | undefined => ({ b: 0, c: 0 } as Record<string, number>)[id]
  t.is(majoritySince(['a', 'b', 'c', 'd'], 'a', alive), 0)
  t.is(majoritySince(['a', 'b', 'c', 'd'], 'a', alive, 7000), 7000)
  t.is(majoritySince(['a'], 'a', () => undefined, 7000), 7000)
})

test('two of five away for a restart, then a cut: the one left alone keeps its VMs on their votes, and the other side takes them over only after it has fenced', t => {
  // b and c stop for a restart at wall time 0 (their fence 50 s); at 2 s a is cut off from d and e;
  // b and c come back at 10 s, on the side of d and e. Local clocks here start at wall time.
  const rec: RestartRecord = { fenceMs: 50_000, since: 0, confirmed: true }
  const records = (id: string): RestartRecord | null => id === 'b' || id === 'c' ? rec : null
  const roll = ['a', 'b', 'c', 'd', 'e']
  // a: sees itself only; lends b and c until their fence as it counts it (it last heard them at 0.5 s)
  const aFence = (now: number, lastMajorityAt: number): ReturnType<typeof fenced> =>
    fenced({ rollSize: 5, aliveSeen: 1, lent: lentVotes({ roll, me: 'a', alive: () => false, record: records, lastHeard: id => id === 'b' || id === 'c' ? 500 : 2000, now, wallNow: now }).length, lastMajorityAt, now, fenceTimeoutMs: F })
  let lastMajorityAt = 2000
  let aFencedAt = Infinity
  for (let now = 2000; now <= 120_000; now += 100) {
    const f = aFence(now, lastMajorityAt)
    lastMajorityAt = f.lastMajorityAt
    if (f.fenced) { aFencedAt = now; break }
  }
  t.true(aFencedAt > 50_000 && aFencedAt <= 50_500 + F + 100, `a fenced at ${aFencedAt}`)
  // e: sees b, c (alive again since 10 s, their votes locked), d (alive all along); a was last heard at 2 s
  const since = majoritySince(roll, 'e', id => id === 'd' ? 0 : id === 'b' || id === 'c' ? Math.max(10_000, voteLockedUntil(rec, 500, 10_000, 10_000)) : undefined)
  let takenAt = Infinity
  for (let now = 2000; now <= 200_000; now += 100) {
    if (takeover({ holderAlive: false, holderLastHeard: 2000, majoritySince: since, now, fenceTimeoutMs: F, marginMs: MARGIN }).allowed) { takenAt = now; break }
  }
  t.true(takenAt > aFencedAt, `a's VMs taken over at ${takenAt}, after a fenced at ${aFencedAt}`)
  // without the lock, e would have taken them over at 10 s + fence + margin, while a ran them
  const unlocked = majoritySince(roll, 'e', id => id === 'd' ? 0 : id === 'b' || id === 'c' ? 10_000 : undefined)
  t.true(unlocked + F + MARGIN < aFencedAt, 'the lock is what keeps the runs apart')
})

test('a restarted node that came back does not count its own lent vote towards a takeover either', t => {
  const rec: RestartRecord = { fenceMs: 50_000, since: 0, confirmed: true }
  // b is back at 10 s; with d and e it is 3 of 5, but its own vote may still be lent to a
  const selfLock = voteLockedUntil(rec, undefined, 10_000, 10_000)
  const since = majoritySince(['a', 'b', 'c', 'd', 'e'], 'b', id => id === 'd' || id === 'e' ? 0 : undefined, selfLock)
  t.is(since, 50_000 + LENT_VOTE_SLACK_MS)
})

test('a record its node\'s next run said back holds nothing any more: no grace, no vote lent, the usual fence; the lock stays', t => {
  const r: RestartRecord = { fenceMs: 50_000, since: 1000, confirmed: true }
  const back: RestartRecord = { ...r, back: true }
  t.true(restartPending(r, 20_000))
  t.false(restartPending(back, 20_000), 'a crash of the run that came back is a crash')
  t.true(restartPendingFrom(r, 10_000, 20_000, 20_000))
  t.false(restartPendingFrom(back, 10_000, 20_000, 20_000))
  t.is(holderFenceMs(F, { restart: r }, 600_000), 50_000)
  t.is(holderFenceMs(F, { restart: back }, 600_000), F, 'a takeover waits the usual fence')
  const i = { roll: ['a', 'b', 'c', 'd'], me: 'd', alive: (id: string) => id === 'c', lastHeard: () => 500, now: 10_000, wallNow: 11_000 }
  t.deepEqual(lentVotes({ ...i, record: id => id === 'a' ? r : null }), ['a'])
  t.deepEqual(lentVotes({ ...i, record: id => id === 'a' ? back : null }), [], 'dead after it came back: it lends no vote')
  // the vote it may have lent before it came back stays locked for takeovers
  t.is(voteLockedUntil(back, 500, 10_000, 11_000), voteLockedUntil(r, 500, 10_000, 11_000))
})

test('restartsDueBy: when members away under confirmed graces are due back, only where with them this node sees a majority', t => {
  const now = 1_000_000
  const grace = (since: number, o: Partial<{ confirmed: boolean, back: boolean }> = {}): { fenceMs: number, since: number, confirmed?: boolean, back?: boolean } => ({ fenceMs: 35_000, since, confirmed: true, ...o })
  const roll = (restarts: Record<string, ReturnType<typeof grace> | null>): Array<{ node: string, restart?: ReturnType<typeof grace> | null }> => ['A', 'B', 'C', 'D'].map(node => ({ node, restart: restarts[node] ?? null }))
  const onlyB = (id: string): boolean => id === 'B'
  const none = (): boolean => false
  // two of four away under confirmed graces, B alive: due back when the later grace ends
  t.is(restartsDueBy(roll({ C: grace(now - 10_000), D: grace(now - 5_000) }), 'A', onlyB, now), now - 5_000 + 35_000)
  // one away is enough with B: 3 of 4
  t.is(restartsDueBy(roll({ C: grace(now) }), 'A', onlyB, now), now + 35_000)
  // a majority in sight already: nothing to wait for
  t.is(restartsDueBy(roll({ D: grace(now) }), 'A', id => id !== 'D', now), null)
  // B dead too: both away are needed (3 of 4), and neither one crashed (no record), an
  // unconfirmed grace, one that is over nor one back counts
  t.is(restartsDueBy(roll({ C: grace(now), D: grace(now) }), 'A', none, now), now + 35_000)
  t.is(restartsDueBy(roll({ C: grace(now) }), 'A', none, now), null)
  t.is(restartsDueBy(roll({ C: grace(now), D: grace(now, { confirmed: false }) }), 'A', none, now), null)
  t.is(restartsDueBy(roll({ C: grace(now), D: grace(now - 40_000) }), 'A', none, now), null)
  t.is(restartsDueBy(roll({ C: grace(now), D: grace(now, { back: true }) }), 'A', none, now), null)
  // a clock an hour ahead: counted from when this node last heard it too, the shorter (a reviewer's: requests held an hour)
  const mono = 5_000_000
  const ahead = roll({ C: grace(now + 3_600_000) })
  t.is(restartsDueBy(ahead, 'A', onlyB, now), now + 3_600_000 + 35_000, 'by its record alone')
  t.is(restartsDueBy(ahead, 'A', onlyB, now, ms => ms, { lastHeard: () => mono - 2000, now: mono }), now - 2000 + 35_000)
  // heard long ago (past its grace as this node counts): not due, nothing to wait for
  t.is(restartsDueBy(ahead, 'A', onlyB, now, ms => ms, { lastHeard: () => mono - 40_000, now: mono }), null)
})
