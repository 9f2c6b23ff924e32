// Two `vm update`s of one VM written while the document's sync was cut (one on a node
// cut off a moment before it knew, bb52): the `spec` field is written whole, so
// Automerge keeps both values and shows one by its actor order, which kept the
// minority's earlier update over the majority's later one, and the VM ran with it. The
// reader picks the later write (`updatedAt`, conflicts.ts latestSpec) on every node.
import test from 'ava'
import { Replica, syncPair } from '../../crdt/index.ts'
import { latestSpec } from '../../crdt/conflicts.ts'

const CLUSTER = 'c0ffee'
const MiB = 2 ** 20
const spec = { driver: 'process' as const, cpu: 1, memoryBytes: 64 * MiB, volumes: [], constraints: {}, command: ['x'] }

for (const [actorA, actorB] of [['ff'.repeat(16), '11'.repeat(16)], ['11'.repeat(16), 'ff'.repeat(16)]] as const) {
  test(`concurrent updates of a VM's spec: the later one is read on both sides (actor ${actorA.slice(0, 2)} writes it first)`, t => {
    let clock = 1_000_000
    const a = Replica.create({ clusterId: CLUSTER, nodeId: 'nodeA', actor: actorA, now: () => clock++ })
    const b = Replica.create({ clusterId: CLUSTER, nodeId: 'nodeB', actor: actorB, now: () => clock++ })
    a.change(w => { w.put('vms', { id: 'web', name: 'web', app: null, desired: 'stopped', spec: { ...spec } }) })
    syncPair(a, b)
    // a (cut off) updates first, b later; neither hears of the other. a wrote more of
    // other things meanwhile: Automerge's own pick (the op with the greater counter) is a's
    for (let i = 0; i < 20; i++) a.change(w => { w.setLabel('nodeA', `k${i}`, 'x') })
    a.change(w => { w.update('vms', 'web', { spec: { ...spec, memoryBytes: 32 * MiB, updatedAt: w.at } }) })
    clock += 5000
    b.change(w => { w.update('vms', 'web', { spec: { ...spec, memoryBytes: 256 * MiB, updatedAt: w.at } }) })
    syncPair(a, b)
    for (const r of [a, b]) t.is(r.read().get('vms', 'web')!.value.spec.memoryBytes, 256 * MiB, 'the later update')
    t.is(a.read().digest(), b.read().digest())
  })
}

test('latestSpec: the greatest updatedAt, none counting as 0, then the same pick from any order', t => {
  const x = { cpu: 1, updatedAt: 5 }
  const y = { cpu: 2, updatedAt: 9 }
  const z = { cpu: 3 }
  t.deepEqual(latestSpec([x, y, z]), y)
  t.deepEqual(latestSpec([z, x]), x)
  t.deepEqual(latestSpec([{ cpu: 4, updatedAt: 9 }, y]), latestSpec([y, { cpu: 4, updatedAt: 9 }]), 'a tie: the same on every node')
  t.deepEqual(latestSpec(['bad', x]), x, 'not an object: loses')
})
