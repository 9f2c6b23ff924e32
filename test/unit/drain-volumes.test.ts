// A drained node's volume copies (node/gvs/live-placement.ts evacuating, LivePlacement;
// node/dvmm/drain-volumes.ts, the drain's progress), pure.
import test from 'ava'
import { evacuating, LivePlacement } from '../../node/gvs/live-placement.ts'
import { objectKey } from '../../node/gvs/placement.ts'
import { volumeDrainLine, volumeDrainProgress, type VolumesAnswer } from '../../node/dvmm/drain-volumes.ts'
import type { Member, MemberTable } from '../../protocol/membership.ts'

const member = (id: string, state: Member['state'] = 'alive', disk = 100): Member => ({ nodeId: id, state, since: 0, lastSeen: 0, version: [1, 0], advert: { name: id, capacity: { cpu: 4, memoryBytes: 1, diskBytes: disk }, free: { diskBytes: disk } } } as unknown as Member)
const table = (...ms: Member[]): MemberTable => new Map(ms.map(m => [m.nodeId, m]))

test('evacuating: drained nodes alive move their objects off, in the order their drains began, while the others with a disk can still hold R', t => {
  const four = table(member('a'), member('b'), member('c'), member('d'))
  const d = (...ns: Array<[string, number?]>): Array<{ node: string, since?: number }> => ns.map(([node, since]) => since == null ? { node } : { node, since })
  t.deepEqual([...evacuating({ draining: d(['c', 1]), table: four, replicas: 2 }).nodes], ['c'])
  t.deepEqual([...evacuating({ draining: d(['c', 1], ['d', 2]), table: four, replicas: 2 }).nodes].sort(), ['c', 'd'])
  const three = evacuating({ draining: d(['d', 1], ['b', 3], ['c', 2]), table: four, replicas: 2, nameOf: n => `h-${n}` })
  t.deepEqual([...three.nodes].sort(), ['c', 'd'], 'the earliest drains first, while 2 are left for R=2')
  t.is(three.why, 'volume copies stay on the draining node h-b: the 1 other live node with a disk left cannot hold the 2 copies a volume keeps')
  // the volume whose R holds the drain back is named (bb36: an unused R=3 volume did, unnamed)
  const named = evacuating({ draining: d(['c', 1], ['d', 2]), table: four, replicas: 3, volumes: [{ path: '/prod/stream', replicas: 2 }, { path: '/prod/data', replicas: 3 }], nameOf: n => `h-${n}` })
  t.is(named.why, 'volume copies stay on the draining node h-d: the 2 other live nodes with a disk left cannot hold the 3 copies /prod/data keeps (copies move off for every volume or none: lower its replicas, remove it if unused, or add a node)')
  // rv27: a second drain does not take the first one's move back (b sorts before c by id)
  const t3 = table(member('a'), member('b'), member('c'))
  t.deepEqual([...evacuating({ draining: d(['c', 5]), table: t3, replicas: 2 }).nodes], ['c'])
  t.deepEqual([...evacuating({ draining: d(['c', 5], ['b', 9]), table: t3, replicas: 2 }).nodes], ['c'], 'the first drain keeps its move; the second stays')
  t.deepEqual([...evacuating({ draining: d(['c'], ['b']), table: t3, replicas: 2 }).nodes], ['b'], 'drains of an older release (no time): by id')
  t.deepEqual([...evacuating({ draining: d(['x', 1]), table: four, replicas: 2 }).nodes], [], 'a node not alive here: nothing to move')
  const diskless = table(member('a'), member('b', 'alive', 0), member('c'))
  t.truthy(evacuating({ draining: d(['c', 1]), table: diskless, replicas: 2 }).why, 'a node without a disk holds nothing: one other left')
})

test('LivePlacement: a drained node is live (its copies are read) but holds nothing; the generation moves on when the set changes, and back', t => {
  const members = table(member('a'), member('b'), member('c'))
  let drained: ReadonlySet<string> = new Set()
  const p = new LivePlacement(() => members, () => drained)
  const g0 = p.generation()
  const before = Array.from({ length: 64 }, (_, i) => p.holders(objectKey('v', i), 2))
  t.true(before.some(h => h.includes('c')))
  drained = new Set(['c'])
  t.true(p.generation() > g0)
  t.deepEqual(p.liveNodes().map(n => n.id).sort(), ['a', 'b', 'c'], 'still live: where its copies are read from')
  t.deepEqual([...p.liveIds()].sort(), ['a', 'b', 'c'], 'and it still holds what it has (health, writers, sources)')
  for (let i = 0; i < 64; i++) t.deepEqual(p.holders(objectKey('v', i), 2).sort(), ['a', 'b'])
  t.is(p.pool().nodes, 2)
  const g1 = p.generation()
  drained = new Set()
  t.true(p.generation() > g1)
  t.deepEqual(Array.from({ length: 64 }, (_, i) => p.holders(objectKey('v', i), 2)), before, 'undrained: placement as before')
})

test('the drain\'s volume progress: copies on the node and volumes repairing; done once neither; why copies stay', t => {
  const vol = (path: string, state: string, copiesOn?: Record<string, number>): VolumesAnswer['volumes'][number] => ({ path, state: 'ready', health: { state, ...copiesOn != null ? { copiesOn } : {} } } as VolumesAnswer['volumes'][number])
  let p = volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n1: 4, n3: 4 }), vol('/b', 'repairing', { n1: 2 })], evacuation: { nodes: ['n3'] } })
  t.deepEqual(p, { holding: [{ path: '/a', copies: 4 }], repairing: ['/b'], recorded: [], nothingThere: false, done: false })
  // no copy left there and healthy, but the records of where its writes went still place
  // objects on it: not done until a repair clears them (a leave then left them unavailable, bb28)
  const rec = volumeDrainProgress('n3', { volumes: [{ ...vol('/r', 'healthy', { n1: 4 }), writesWentTo: ['n1', 'n3'] }], evacuation: { nodes: ['n3'] } })
  t.false(rec.done)
  t.is(volumeDrainLine('h3', rec), '  volumes: no copy left on h3; 1 volume(s) still record writes as going to h3 (/r), until their next repair clears that')
  t.is(volumeDrainLine('h3', p), '  volumes: 4 object copies of 1 volume(s) still on h3 (/a); 1 volume(s) repairing or degraded (/b)')
  // one that stays degraded says why (bb28: a drain onto a full disk said nothing for minutes)
  const stuck = { ...vol('/c', 'degraded', { n1: 2, n3: 2 }), health: { state: 'degraded', copiesOn: { n1: 2, n3: 2 }, reasons: ['the last repair could not make 2 object copies (retried on the next pass): object 3 to h4: disk full'] } } as VolumesAnswer['volumes'][number]
  t.is(volumeDrainLine('h3', volumeDrainProgress('n3', { volumes: [stuck], evacuation: { nodes: ['n3'] } })),
    '  volumes: 2 object copies of 1 volume(s) still on h3 (/c); 1 volume(s) repairing or degraded (/c); /c: the last repair could not make 2 object copies (retried on the next pass): object 3 to h4: disk full')
  p = volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n1: 4, n2: 4 }), vol('/b', 'healthy', { n1: 2, n2: 2 })], evacuation: { nodes: ['n3'] } })
  t.true(p.done)
  t.is(volumeDrainLine('h3', p), '  volumes: no copy left on h3, every volume healthy on the other nodes')
  p = volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n1: 4, n3: 4 })], evacuation: { nodes: [], why: 'volume copies stay on the draining node: the 1 other live node with a disk cannot hold the 2 copies a volume keeps' } })
  t.regex(p.stays!, /cannot hold the 2 copies/)
  t.regex(volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n3: 1 })] }).stays!, /older release/)
  t.is(volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n3: 1 })], evacuation: { nodes: [] } }).stays, undefined, 'the drain not taken in yet: waited for')
  t.true(volumeDrainProgress('n3', { volumes: [] }).done, 'no volume: nothing to move')
  // a node not alive (restarting during the drain) lists nothing: not "nothing there" (bb30:
  // the wait said drained while it held the only copies of an R=1 volume)
  const away = volumeDrainProgress('n3', { volumes: [vol('/a', 'degraded', { n1: 4 })], evacuation: { nodes: [], away: ['n3'] } })
  t.like(away, { away: true, nothingThere: false, done: false })
  t.is(volumeDrainLine('h3', away), '  volumes: h3 is not alive now (restarting?): what it holds is not known, and its copies move once it is back; 1 volume(s) repairing or degraded (/a)')
  t.like(volumeDrainProgress('n3', { volumes: [vol('/a', 'degraded', { n1: 4 })], evacuation: { nodes: ['n3'] } }), { nothingThere: true, done: false }, 'alive, listed, holding nothing: a volume degraded of its own is not the drain\'s')
  // a volume with no inventory yet: not known, not "no copy left" (bb31)
  const unknown = volumeDrainProgress('n3', { volumes: [vol('/a', 'healthy', { n1: 4 }), vol('/b', 'degraded')], evacuation: { nodes: ['n3'] } })
  t.like(unknown, { unknown: ['/b'], nothingThere: false, done: false })
  t.regex(volumeDrainLine('h3', unknown), /^ {2}volumes: where the copies of 1 volume\(s\) are is not known yet \(no inventory: \/b\)/)
})
