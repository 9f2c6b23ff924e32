// Anti-affinity groups sharing a node (node/dvmm/spread.ts crowdedGroups, pure): which
// VMs share, and for each the nodes that could take it now with none of its group
// (bb47; rv46: a node that fits the small one was offered to the big one too).
import test from 'ava'
import type { Lease, Vm } from '../../crdt/schema.ts'
import type { NodeView } from '../../crdt/placement/index.ts'
import { anyCould, crowdedGroups } from '../../node/dvmm/spread.ts'
import type { DocView } from '../../node/dvmm/view.ts'

const GiB = 2 ** 30
const node = (id: string, memGiB: number, extra: Partial<NodeView> = {}): NodeView => ({ id, name: id, alive: true, draining: false, capacity: { cpu: 8, memoryBytes: memGiB * GiB }, labels: {}, ...extra })
const vm = (id: string, memGiB: number, group?: string): Vm =>
  ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: memGiB * GiB, volumes: [], constraints: {}, command: ['x'], ...(group != null ? { antiAffinity: group } : {}) }, at: 1, by: 'a' } as unknown as Vm)
const lease = (v: string, holder: string, memGiB: number, status: Lease['status'] = 'running'): Lease => ({ vm: v, holder, epoch: 1, cpu: 1, memoryBytes: memGiB * GiB, status, at: 1, by: holder } as Lease)
const doc = (vms: Vm[], leases: Lease[]): DocView => ({
  vms: new Map(vms.map(v => [v.id, v])),
  leases: new Map(leases.map(l => [l.vm, { winner: l, claims: [l] }])),
  roll: new Map()
})

test('each VM of a crowded group gets the nodes that could take it; nodes with one of the group, too small or draining are none', t => {
  const nodes = [node('host1', 32), node('host2', 32), node('host3', 4), node('host4', 32, { draining: true })]
  const d = doc([vm('db-big', 16, 'db'), vm('db-small', 1, 'db'), vm('db-3', 1, 'db'), vm('web', 1)],
    [lease('db-big', 'host1', 16), lease('db-small', 'host1', 1), lease('db-3', 'host2', 1), lease('web', 'host3', 1)])
  const [c, ...more] = crowdedGroups(d, nodes)
  t.deepEqual(more, [])
  t.is(c!.group, 'db')
  t.is(c!.node, 'host1')
  t.deepEqual(c!.vms, ['db-big', 'db-small'])
  // host2 holds one of the group; host3 has 3 GiB free; host4 drains
  t.deepEqual(c!.could.get('db-big'), [])
  t.deepEqual(c!.could.get('db-small'), ['host3'])
  t.deepEqual(anyCould(c!), ['host3'])
})

test('a group spread over its nodes, or sharing only a stopped VM\'s node, is not crowded', t => {
  const nodes = [node('host1', 32), node('host2', 32)]
  t.deepEqual(crowdedGroups(doc([vm('a', 1, 'g'), vm('b', 1, 'g')], [lease('a', 'host1', 1), lease('b', 'host2', 1)]), nodes), [])
  t.deepEqual(crowdedGroups(doc([vm('a', 1, 'g'), vm('b', 1, 'g')], [lease('a', 'host1', 1), lease('b', 'host1', 1, 'stopped')]), nodes), [])
  // on a node that is not alive here: lost, another matter
  t.deepEqual(crowdedGroups(doc([vm('a', 1, 'g'), vm('b', 1, 'g')], [lease('a', 'host1', 1), lease('b', 'host1', 1)]), [node('host1', 32, { alive: false }), node('host2', 32)]), [])
})
