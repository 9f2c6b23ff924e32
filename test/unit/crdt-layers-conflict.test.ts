// Two nodes that snapshot one volume while their document sync is cut each give it a
// new `layers` stack. The field is written whole, so Automerge keeps both values; the
// reader must pick the stack that took the most snapshots (its top numbered highest),
// not the one Automerge itself shows (the op with the greater counter, then actor): the writer's side, which may have
// snapshotted more, has its acknowledged writes in its top, and a stack without that
// top would read the volume without them (and let the layer be freed).
import test from 'ava'
import { Replica, syncPair } from '../../crdt/index.ts'
import { largest, tallestStack } from '../../crdt/conflicts.ts'

const CLUSTER = 'c0ffee'
const volume = { id: 'V', path: '/v', sizeBytes: 1 << 20, replicas: 2, state: 'ready', parent: null, snapshots: {}, layers: ['V'] } as const

const pair = (actorA: string, actorB: string): [Replica, Replica] => {
  let clock = 1_000_000
  const a = Replica.create({ clusterId: CLUSTER, nodeId: 'nodeA', actor: actorA, now: () => clock++ })
  const b = Replica.create({ clusterId: CLUSTER, nodeId: 'nodeB', actor: actorB, now: () => clock++ })
  a.change(w => { w.put('volumes', { ...volume, layers: [...volume.layers] }) })
  syncPair(a, b)
  return [a, b]
}

const snapshot = (r: Replica, name: string, layers: string[]): void => {
  r.change(w => {
    const cur = w.reader.get('volumes', 'V')!.value
    w.update('volumes', 'V', { layers })
    w.addSnapshot('V', { name, createdAt: 1, layers: cur.layers ?? ['V'], sizeBytes: cur.sizeBytes })
  })
}

for (const [actorA, actorB] of [['ff'.repeat(16), '11'.repeat(16)], ['11'.repeat(16), 'ff'.repeat(16)]] as const) {
  test(`concurrent snapshots on two sides: the stack with the most snapshots is read on both (actor ${actorA.slice(0, 2)} writes it)`, t => {
    const [a, b] = pair(actorA, actorB)
    // a (the writer's side) snapshots twice, b once, neither hearing of the other
    snapshot(a, 'a1', ['V@1', 'V'])
    snapshot(a, 'a2', ['V@2', 'V@1', 'V'])
    // b wrote more of other things meanwhile: Automerge's own pick (the op with the
    // greater counter) would be b's stack
    for (let i = 0; i < 20; i++) b.change(w => { w.setLabel('nodeB', `k${i}`, 'x') })
    snapshot(b, 'b1', ['V@1', 'V'])
    syncPair(a, b)
    for (const r of [a, b]) {
      const v = r.read().get('volumes', 'V')!.value
      t.deepEqual(v.layers, ['V@2', 'V@1', 'V'], 'the top that took the writes after the second snapshot is still read')
      t.deepEqual(Object.keys(v.snapshots).sort(), ['a1', 'a2', 'b1'], 'every snapshot of either side is kept')
    }
    t.is(a.read().digest(), b.read().digest())
    // and the other way round: the side that did not write has more
    const [c, d] = pair(actorA, actorB)
    for (let i = 0; i < 20; i++) c.change(w => { w.setLabel('nodeA', `k${i}`, 'x') })
    snapshot(c, 'c1', ['V@1', 'V'])
    snapshot(d, 'd1', ['V@1', 'V'])
    snapshot(d, 'd2', ['V@2', 'V@1', 'V'])
    syncPair(c, d)
    for (const r of [c, d]) t.deepEqual(r.read().get('volumes', 'V')!.value.layers, ['V@2', 'V@1', 'V'])
  })
}

test('tallestStack: the highest-numbered top, then the longer stack, then the same pick from any order', t => {
  t.deepEqual(tallestStack([['V@1', 'V'], ['V@3', 'V@1', 'V'], ['V@2', 'V@1', 'V']]), ['V@3', 'V@1', 'V'])
  t.deepEqual(tallestStack([['C', 'V@1'], ['C@1', 'C', 'V@1']]), ['C@1', 'C', 'V@1'])
  t.deepEqual(tallestStack([['V@2', 'V'], ['V@2', 'V@1', 'V']]), ['V@2', 'V@1', 'V'])
  const x = [['V@2', 'a'], ['V@2', 'b']]
  t.deepEqual(tallestStack(x), tallestStack([...x].reverse()))
  t.is(tallestStack([]), undefined)
  // anything not a list of strings is left to the schema's check (and never preferred)
  t.deepEqual(tallestStack([7, ['V@1', 'V']]), ['V@1', 'V'])
})

for (const [actorA, actorB] of [['ff'.repeat(16), '11'.repeat(16)], ['11'.repeat(16), 'ff'.repeat(16)]] as const) {
  test(`concurrent grows through two nodes: the larger size is read on both, whichever actor wrote it (actor ${actorA.slice(0, 2)} grows less; bb26)`, t => {
    const [a, b] = pair(actorA, actorB)
    // a wrote more of other things first: Automerge's own pick (the op with the greater counter) would be a's smaller size
    for (let i = 0; i < 20; i++) a.change(w => { w.setLabel('nodeA', `k${i}`, 'x') })
    a.change(w => { w.update('volumes', 'V', { sizeBytes: 3 << 20 }) })
    b.change(w => { w.update('volumes', 'V', { sizeBytes: 5 << 20 }) })
    syncPair(a, b)
    for (const r of [a, b]) t.is(r.read().get('volumes', 'V')!.value.sizeBytes, 5 << 20)
    t.is(a.read().digest(), b.read().digest())
  })
}

test('largest: the greatest number, from any order; values that are not numbers lose', t => {
  t.is(largest([3, 7, 5]), 7)
  t.is(largest([7, 3]), largest([3, 7]))
  t.is(largest(['x', 4, null]), 4)
  t.is(largest(['x']), 'x')
})
