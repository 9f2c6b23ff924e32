// What a takeover waits for, as `vgrid ha` says it (DvmmService.failoverWait): in a grid of
// more than five, the liveness window only once every node has advertised one for a
// silence timeout (a cut-off holder's view of the adverts may lag this node's: rv24).
import test from 'ava'
import { harness, member, ME, sleep, until, type Harness } from './fence-harness.ts'
import type { Member } from '../../protocol/membership.ts'
import { LENT_VOTE_SLACK_MS } from '../../crdt/placement/fence.ts'

const withWindow = (id: string): Member => { const m = member(id, 'alive'); return { ...m, advert: { ...m.advert, livenessMs: 3500 } as Member['advert'] } }

test('the failover wait counts the liveness window only once every node has advertised one for a silence timeout; a node without one brings the silence timeout back', async t => {
  const others = ['Nb', 'Nc', 'Nd', 'Ne', 'Nf', 'Ng']
  const silenceMs = 1500
  const h: Harness = await harness({ others, detection: () => ({ watchers: 4, silenceMs, agents: 7, livenessMs: 3500 }) })
  t.teardown(async () => { await h.stop() })
  // the harness's members advertise no window (an older release)
  const first = h.dvmm.ha().failover!
  t.is(first.ms, 5000 + silenceMs + 500, 'fence timeout + the silence timeout + margin')
  t.regex(first.why, /the silence timeout 1\.5 s \(Nb, Nc, Nd and 4 more advertise no liveness window: older releases, or not heard from\)/)
  for (const id of ['Nme', ...others]) h.members.set(id, withWindow(id))
  const lately = h.dvmm.ha().failover!
  t.is(lately.ms, 5000 + silenceMs + 500, 'every node has a window now, but not for a silence timeout yet')
  t.regex(lately.why, /every node has advertised a liveness window only lately/)
  await sleep(silenceMs + 100)
  const now = h.dvmm.ha().failover!
  t.is(now.ms, 5000 + 3500 + 500)
  t.regex(now.why, /the fence timeout 5 s \+ the liveness window 3\.5 s \(a node cut off from all loses sight of the others only that long after the cut\) \+ a margin of 0\.5 s/)
  // one node back to an older release
  h.members.set('Nd', member('Nd', 'alive'))
  t.regex(h.dvmm.ha().failover!.why, /the silence timeout 1\.5 s \(Nd advertises no liveness window: an older release, or not heard from\)/)
})

test('in a grid of five or fewer, the failover wait is the fence timeout and the margin', async t => {
  const h = await harness({ others: ['Nb', 'Nc'], detection: () => ({ watchers: 4, silenceMs: 30_000, agents: 3, livenessMs: 3500 }) })
  t.teardown(async () => { await h.stop() })
  t.deepEqual(h.dvmm.ha().failover, { ms: 5500, why: 'the fence timeout 5 s + a margin of 0.5 s' })
})

test('while a member back from a restart holds takeovers back (the vote it may have lent), the failover wait says so and for how long (bb22)', async t => {
  // Nb stopped for a restart with a grace of 20 s a moment ago and is back: its vote
  // counts towards a takeover of Nc's leases only once that grace has lapsed
  const h = await harness({
    others: ['Nb', 'Nc'],
    seed: w => { w.put('roll', { node: 'Nb', name: 'Nb', joined: 1, restart: { fenceMs: 20_000, since: Date.now() - 1000, confirmed: true, back: true } }) }
  })
  t.teardown(async () => { await h.stop() })
  h.members.set('Nc', member('Nc', 'dead'))
  h.transition()
  // the fence reads the restart records at its next step
  await until(() => h.dvmm.ha().failover!.lockedMs != null, 5000)
  const f = h.dvmm.ha().failover!
  // the grace left (19 s), the slack on a lent vote, the longest fence timeout (5 s: the
  // others advertise none) and the margin
  t.true((f.lockedMs ?? 0) > 19_000 && f.lockedMs! <= 19_000 + LENT_VOTE_SLACK_MS + 5500, `locked ${f.lockedMs} ms`)
  t.regex(f.why, /^the fence timeout 5 s \+ a margin of 0\.5 s; and none within \d+ s from now: this node's majority counts a member back from a restart only once the vote it may have lent, to keep VMs alive elsewhere, has lapsed$/)
  // without the record, the plain wait
  h.replica.change(w => { w.update('roll', 'Nb', { restart: null }) })
  h.transition()
  t.true(await until(() => h.dvmm.ha().failover!.lockedMs === undefined, 5000), 'no lock once the record is gone')
  t.is(h.dvmm.ha().failover!.why, 'the fence timeout 5 s + a margin of 0.5 s')
})

test('while no lock holds anything back, the failover wait says whose loss now would bring the locks to bear, and how long it would wait (bb47)', async t => {
  // Nb and Nc back from restarts a moment ago, Nd never restarted: all in sight, the
  // locks hold nothing back; losing Nd would leave this node alone with no vote to lend
  const back = { fenceMs: 20_000, since: Date.now() - 1000, confirmed: true, back: true }
  const h = await harness({
    others: ['Nb', 'Nc', 'Nd'],
    seed: w => { for (const n of ['Nb', 'Nc']) w.put('roll', { node: n, name: n, joined: 1, restart: back }) }
  })
  t.teardown(async () => { await h.stop() })
  await until(() => h.dvmm.ha().failover!.ifLost != null, 5000)
  const f = h.dvmm.ha().failover!
  t.is(f.ms, 5500, 'the wait now is the plain one')
  t.is(f.lockedMs, undefined)
  // Nd's loss, or this node's own (judged from Nd)
  t.deepEqual(f.ifLost?.nodes, ['Nd', ME])
  t.deepEqual(f.ifLost?.locked, ['Nb', 'Nc'])
  t.true((f.ifLost?.ms ?? 0) > 19_000 && f.ifLost!.ms <= 19_000 + LENT_VOTE_SLACK_MS + 5500, `would wait ${f.ifLost?.ms} ms`)
  // the records gone: nothing to say
  h.replica.change(w => { for (const n of ['Nb', 'Nc']) w.update('roll', n, { restart: null }) })
  h.transition()
  t.true(await until(() => h.dvmm.ha().failover!.ifLost === undefined, 5000), 'nothing once the records are gone')
})
