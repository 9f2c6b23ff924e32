// A node whose majority just came back (a healed partition, a restart) on a fake
// clock: its document and its member table are stale for a while. Found by the 2 + 3
// partition e2e test (test/e2e/vm-partition.test.ts): on healing, a node of the cut-off
// side saw one member of the other side alive again (a majority) while the holder of a
// VM there was still dead in its table, silent for long because it was this node that
// had been cut off, and took the VM over: it ran twice. And it started its own old
// leases again before the document told it they had moved.
import test from 'ava'
import { decide, type DecideInput } from '../../node/dvmm/decide.ts'
import type { DocView, LeaseView } from '../../node/dvmm/view.ts'
import type { Lease, RollEntry, Vm } from '../../crdt/index.ts'
import { fenced, majoritySince, takeover, type NodeView } from '../../crdt/placement/index.ts'

const GiB = 2 ** 30
const N = ['n1', 'n2', 'n3', 'n4', 'n5']
const vm = (id: string): Vm => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] }, at: 1, by: 'n1' })
const lease = (v: string, holder: string, extra: Partial<Lease> = {}): Lease => ({ vm: v, holder, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running', at: 1, by: holder, ...extra })
const lv = (l: Lease): LeaseView => ({ winner: l, claims: [l] })
const roll = (id: string): RollEntry => ({ node: id, name: id, joined: 1, draining: false, at: 1, by: id })
const cfg = { settleMs: 1500, fenceTimeoutMs: 5000, takeoverMarginMs: 1500, strategy: 'spread' as const }

/** n1's step at `now`: `alive` maps each member n1 sees alive to since when */
function step (now: number, alive: Record<string, number>, over: Partial<DecideInput> & { leases?: Lease[] } = {}): ReturnType<typeof decide> {
  const { leases = [], ...rest } = over
  const doc: DocView = { vms: new Map(['v', 'w'].map(id => [id, vm(id)])), leases: new Map(leases.map(l => [l.vm, lv(l)])), roll: new Map(N.map(n => [n, roll(n)])) }
  const nodes: NodeView[] = N.map(id => ({
    id, name: id, draining: false, labels: {}, capacity: { cpu: 4, memoryBytes: 8 * GiB },
    alive: id === 'n1' || alive[id] !== undefined,
    ...(id === 'n1' ? { aliveSince: -Infinity } : alive[id] !== undefined ? { aliveSince: alive[id] } : {})
  }))
  const seen = 1 + Object.keys(alive).length
  return decide({
    me: 'n1', now, doc, nodes,
    holderAlive: n => n === 'n1' || alive[n] !== undefined,
    lastHeard: () => 10_000, // everyone else was last heard when the cut came
    fence: fenced({ rollSize: 5, aliveSeen: seen, lastMajorityAt: seen >= 3 ? now : 10_000, now, fenceTimeoutMs: cfg.fenceTimeoutMs }),
    runs: new Set(), busy: new Set(), claimedAt: new Map(), conflictSeenAt: new Map(), unplacedSince: new Map(),
    capacity: { cpu: 4, memoryBytes: 8 * GiB }, cfg, ...rest
  })
}

test('majoritySince: when enough of the members seen alive now had all become alive', t => {
  const roll = ['a', 'b', 'c', 'd', 'e']
  const since = (m: Record<string, number>) => majoritySince(roll, 'a', id => m[id])
  t.is(since({ b: 100, c: 50, d: 900 }), 100, 'a needs 2 others: the second earliest')
  t.is(since({ b: 100 }), Infinity, 'no majority')
  t.is(since({ b: 100, c: 2000 }), 2000, 'the member that came back last is part of the majority')
  t.is(majoritySince(['a'], 'a', () => undefined), -Infinity, 'alone on the roll: nobody needed')
  // only roll members vote (rv21): a node not on the roll has no vote of its own
  t.is(majoritySince([], 'a', () => undefined), -Infinity, 'no roll yet: a grid of this node alone')
  t.is(majoritySince(['b', 'c'], 'a', id => ({ b: 100 } as Record<string, number>)[id]), Infinity, 'not on the roll: one of two is no majority')
  t.is(majoritySince(['b', 'c'], 'a', id => ({ b: 100, c: 300 } as Record<string, number>)[id]), 300, 'not on the roll: both of two')
})

test('takeover counts the holder\'s silence only while this node had a majority', t => {
  const base = { holderAlive: false, holderLastHeard: 1000, now: 20_000, fenceTimeoutMs: 5000, marginMs: 1500 }
  t.like(takeover(base), { allowed: true })
  t.like(takeover({ ...base, majoritySince: 500 }), { allowed: true }, 'a majority all along: as before')
  t.like(takeover({ ...base, majoritySince: 19_000 }), { allowed: false, waitMs: 5500 })
  t.like(takeover({ ...base, majoritySince: 13_500 }), { allowed: true })
  t.like(takeover({ ...base, majoritySince: Infinity }), { allowed: false })
})

test('healed partition: a node back from the cut-off side takes over no live holder\'s VM while its table is stale', t => {
  // n1 was cut off with n2 at 10 s; healed at 30 s it sees n3 alive again at 30.5 s (a
  // majority: n1, n2, n3), while n4, which holds w (taken over during the cut), is still dead to it
  const healed = { n2: 0, n3: 30_500 }
  const d = step(30_600, healed, { leases: [lease('w', 'n4', { epoch: 2 })] })
  t.false(d.unplaced.includes('w'), 'w is not up for takeover right after the majority came back')
  t.false(d.claims.some(c => c.vm === 'w'))
  t.is(d.wakeInMs, 30_500 + 6500 - 30_600)
  // a node that had its majority all along takes a dead holder's VM over as before
  const steady = step(30_600, { n2: 0, n3: 0 }, { leases: [lease('w', 'n4', { epoch: 2 })] })
  t.true(steady.unplaced.includes('w'), 'w is up for takeover on a steady majority')
  // and so does the healed node once it has had its majority for fence timeout + margin
  t.true(step(37_000, healed, { leases: [lease('w', 'n4', { epoch: 2 })] }).unplaced.includes('w'))
})

test('healed partition: a node does not restart its own old lease before the document could tell it the lease moved', t => {
  const mine = [lease('v', 'n1')] // killed by its fence; meanwhile the others took it over (not seen yet)
  const early = step(31_000, { n2: 0, n3: 30_500 }, { leases: mine })
  t.deepEqual(early.start, [], 'no restart right after the majority came back')
  t.is(early.wakeInMs, 30_500 + 6500 - 31_000)
  t.deepEqual(step(37_000, { n2: 0, n3: 30_500 }, { leases: mine }).start, ['v'], 'the lease still its own after fence timeout + margin: it restarts')
  t.deepEqual(step(31_000, { n2: 0, n3: 0 }, { leases: mine }).start, ['v'], 'with a majority all along (a crash restart) at once')
  // a claim this node made after its majority came back starts after its settle window as usual
  const fresh = step(33_000, { n2: 0, n3: 30_500 }, { leases: [lease('v', 'n1', { status: 'claimed' })], claimedAt: new Map([['v', 31_000]]) })
  t.deepEqual(fresh.start, ['v'])
})
