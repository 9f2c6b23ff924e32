// Which deleted snapshots' layers fold into the layer above them (layer-reclaim.ts
// planMerges, pure), the names of new top layers after folds, and a fold written while
// another node takes a snapshot: both survive, and no snapshot shares a writable layer.
import test from 'ava'
import { Replica, syncPair, type Volume } from '../../crdt/index.ts'
import { planMerges, dropMerged, waitingLayers, foldingLayers, layerReaders, layerUses } from '../../node/gvs/layer-reclaim.ts'
import { layersLine } from '../../node/gvs/cli-format.ts'
import { layersOf, nextLayer, planSnapshot, snapshotLayers } from '../../node/gvs/volumes.ts'

const vol = (id: string, layers: string[], snaps: Record<string, string[]> = {}, extra: Partial<Volume> = {}): Volume => ({
  id, path: `/v/${id}`, sizeBytes: 1 << 24, replicas: 2, state: 'ready', parent: null, epoch: 1, at: 1, by: 'n',
  snapshots: Object.fromEntries(Object.entries(snaps).map(([name, l]) => [name, { name, createdAt: 1, layers: l, at: 1, by: 'n' }])),
  layers, ...extra
})

test('the layer of a deleted snapshot folds into the frozen layer above it; the newest under the writable top waits', t => {
  // s1 = [V], s2 = [V@1, V], s3 = [V@2, V@1, V]; the volume writes to V@3
  const all = ['V@3', 'V@2', 'V@1', 'V']
  t.deepEqual(planMerges([vol('V', all, { s1: ['V'], s2: ['V@1', 'V'], s3: ['V@2', 'V@1', 'V'] })]), [], 'every snapshot kept: nothing')
  t.like(planMerges([vol('V', all, { s2: ['V@1', 'V'], s3: ['V@2', 'V@1', 'V'] })]), [{ layer: 'V', into: 'V@1', volumes: ['V'], placementKey: 'V' }])
  t.like(planMerges([vol('V', all, { s1: ['V'], s3: ['V@2', 'V@1', 'V'] })]), [{ layer: 'V@1', into: 'V@2' }])
  // s3's layer is right under the top a writer copies up into: not until a newer snapshot freezes that
  t.deepEqual(planMerges([vol('V', all, { s1: ['V'], s2: ['V@1', 'V'] })]), [])
  // s1 and s2 gone: one fold per chain and pass (V@1 folds into V@2; V waits, as V@1 is going)
  t.deepEqual(planMerges([vol('V', all, { s3: ['V@2', 'V@1', 'V'] })]).map(m => [m.layer, m.into]), [['V@1', 'V@2']])
  // no snapshots at all: every frozen layer but the one under the top; one of the chain
  t.deepEqual(planMerges([vol('V', all)]).map(m => [m.layer, m.into]), [['V@1', 'V@2']])
})

test('a clone that reads a layer under its own top keeps it; the clone of a kept snapshot does not block', t => {
  const v = vol('V', ['V@3', 'V@2', 'V@1', 'V'], { s3: ['V@2', 'V@1', 'V'] })
  // a clone of the deleted s2 ([V@1, V]): V@1 is under the clone's top in its stack
  const c2 = vol('C', ['C', 'V@1', 'V'], {}, { placementKey: 'V', parent: 'V' })
  t.deepEqual(planMerges([v, c2]).map(m => [m.layer, m.into]), [['V', 'V@1']], 'V folds into V@1 in both stacks; V@1 stays')
  t.deepEqual(planMerges([v, c2]).find(m => m.layer === 'V')?.volumes, ['C', 'V'])
  // a clone of the kept s3: V@2 is above V@1 in every stack
  const c3 = vol('D', ['D', 'V@2', 'V@1', 'V'], {}, { placementKey: 'V', parent: 'V' })
  t.deepEqual(planMerges([v, c3]).map(m => [m.layer, m.into, m.placementKey]), [['V@1', 'V@2', 'V']])
})

test('folded layers leave every stack that reads them; the next top is named past every number used', t => {
  const v = vol('V', ['V@3', 'V@2', 'V@1', 'V'], { s3: ['V@2', 'V@1', 'V'] }, { merged: { 'V@1': 'V@2', V: 'V@2' } })
  t.deepEqual(layersOf(v), ['V@3', 'V@2'])
  t.deepEqual(snapshotLayers(v, v.snapshots.s3!), ['V@2'])
  t.is(nextLayer(v), 'V@4')
  const p = planSnapshot(v, 's4', 2)
  t.deepEqual(p.layers, ['V@4', 'V@3', 'V@2'])
  t.deepEqual(p.snapshot.layers, ['V@3', 'V@2'])
  // a clone's first snapshot layer: C@1, whatever its stack's length
  t.is(nextLayer(vol('C', ['C', 'V@2', 'V'])), 'C@1')
})

test('a fold and a snapshot written on two nodes at once both survive', t => {
  const a = Replica.create({ clusterId: 'c', nodeId: 'A' })
  const b = Replica.create({ clusterId: 'c', nodeId: 'B' })
  const { at: _a, by: _b, ...draft } = vol('V', ['V@2', 'V@1', 'V'], { s2: ['V@1', 'V'] })
  a.change(w => { w.put('volumes', draft) })
  syncPair(a, b)
  t.like(planMerges(a.read().list('volumes')), [{ layer: 'V', into: 'V@1' }])
  // A folds V into V@1; B meanwhile snapshots the volume (its new top over the old stack)
  a.change(w => { t.true(dropMerged(w, { layer: 'V', into: 'V@1' })) })
  b.change(w => {
    const cur = w.reader.list('volumes')[0]!
    const p = planSnapshot(cur, 's3', 5)
    w.update('volumes', 'V', { layers: p.layers })
    w.addSnapshot('V', p.snapshot)
  })
  t.is(syncPair(a, b).rejected, undefined)
  for (const r of [a, b]) {
    const v = r.read().list('volumes')[0]!
    t.deepEqual(layersOf(v), ['V@3', 'V@2', 'V@1'], 'the snapshot\'s new top stays, the folded layer is out')
    t.deepEqual(snapshotLayers(v, v.snapshots.s3!), ['V@2', 'V@1'])
    t.deepEqual(snapshotLayers(v, v.snapshots.s2!), ['V@1'])
  }
  // s2 deleted: V@1 may fold into V@2, but a clone of s2 made meanwhile reads it under its own top: nothing is written
  a.change(w => { w.removeSnapshot('V', 's2') })
  t.like(planMerges(a.read().list('volumes')), [{ layer: 'V@1', into: 'V@2' }])
  a.change(w => { w.put('volumes', { ...draft, id: 'C', path: '/v/C', layers: ['C', 'V@1'], snapshots: {}, placementKey: 'V' }) })
  a.change(w => { t.false(dropMerged(w, { layer: 'V@1', into: 'V@2' })) })
  t.deepEqual(layersOf(a.read().list('volumes').find(v => v.id === 'V')!), ['V@3', 'V@2', 'V@1'])
})

test('waitingLayers counts every deleted snapshot\'s layer still in a stack, not only the one fold a plan makes per chain', t => {
  // a rotation whose folds waited (a member down): 4 deleted snapshots' layers under the top, 2 kept
  const v = vol('V', ['V@7', 'V@6', 'V@5', 'V@4', 'V@3', 'V@2', 'V'], { k1: ['V@6', 'V@5', 'V@4', 'V@3', 'V@2', 'V'], k2: ['V@3', 'V@2', 'V'] })
  t.is(planMerges([v]).length, 2, 'a plan folds one layer of each run of deleted ones at a time')
  t.is(waitingLayers([v]).get('V'), 4, 'V@5, V@4, V@2 and V wait')
  // a clone reads a deleted snapshot's layer under its own top: that one is kept (V under it still folds into it)
  const c = vol('C', ['C', 'V@2', 'V'])
  t.is(waitingLayers([v, c]).get('V'), 3, 'V@5, V@4 and V')
  t.is(waitingLayers([v, c]).get('C'), 1, 'V')
})

test('waitingLayers counts a fold under a kept snapshot that a clone was made of', t => {
  const v = vol('V', ['V@4', 'V@3', 'V@2', 'V'], { s3: ['V@3', 'V@2', 'V'], s1: ['V'] })
  const c = vol('C', ['C', 'V@3', 'V@2', 'V'], {}, { placementKey: 'V' })
  t.is(planMerges([v, c]).length, 1)
  t.deepEqual([...waitingLayers([v, c])].sort(), [['C', 1], ['V', 1]])
})

test('vol info says what each layer under the top is there for: snapshots, folds, clones, the source of a clone', t => {
  // s3 kept; clones were made of the deleted s2 (top V@2) and s1 (top V@1)
  const v = vol('V', ['V@4', 'V@3', 'V@2', 'V@1', 'V'], { s3: ['V@3', 'V@2', 'V@1', 'V'] })
  const c1 = vol('C1', ['C1', 'V@2', 'V@1', 'V'])
  const c2 = vol('C2', ['C2', 'V@1', 'V'])
  const all = [v, c1, c2]
  const folding = foldingLayers(all)
  t.deepEqual([...folding.get('V')!], ['V'], 'V folds into V@1, which every stack reads above it')
  t.deepEqual(layerUses(v, layerReaders(all), folding.get('V')!), { snapshots: 1, folding: 1, source: 0, clones: 2, untilNextSnapshot: 0 })
  t.deepEqual(layerUses(c1, layerReaders(all), folding.get('C1')!), { snapshots: 0, folding: 1, source: 2, clones: 0, untilNextSnapshot: 0 })
  // no snapshot left: the one under the top waits for the next snapshot to freeze the top
  const w = vol('W', ['W@2', 'W@1'])
  t.deepEqual(layerUses(w, layerReaders([w]), foldingLayers([w]).get('W')!), { snapshots: 0, folding: 0, source: 0, clones: 0, untilNextSnapshot: 1 })
  t.is(layersLine({ count: 5, max: 128, ...layerUses(v, layerReaders(all), folding.get('V')!) }),
    '5 of 128 (1 for snapshots; 2 kept for clones of deleted snapshots; 1 left by deleted snapshots, to be folded away in the background)')
  t.is(layersLine({ count: 4, max: 128, waiting: 'n2 is down', ...layerUses(c1, layerReaders(all), folding.get('C1')!) }),
    '4 of 128 (2 of the snapshot it was cloned from; 1 left by deleted snapshots, waiting to be folded away: n2 is down)')
  t.is(layersLine({ count: 1, max: 128, folding: 0 }), '1 of 128', 'an older agent\'s answer, or a volume without snapshots')
})
