// Writer epochs as layers are folded away and freed (node/gvs/epochs.ts, invariant 3):
// a fold teaches an epoch only within a volume's own line, a layer freed while a newer
// epoch is being recorded on it keeps that epoch in its line's floor, and a destroyed
// line's floor goes on every node that saw it.
import test from 'ava'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Volume } from '../../crdt/index.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { WriterEpochs } from '../../node/gvs/epochs.ts'
import { execute } from '../../node/gvs/replication.ts'
import { LayerReclaim, planMerges } from '../../node/gvs/layer-reclaim.ts'
import { planClone, planSnapshot } from '../../node/gvs/volumes.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

async function store (t: { teardown: (f: () => Promise<void>) => void }): Promise<{ s: ObjectStore, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-floor-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  return { s, dir }
}

test('a source volume\'s layer folded into a clone\'s base teaches the clone nothing: the clone\'s own writer is still admitted', async t => {
  // a source snapshotted (s1) and cloned; the clone snapshotted (its base frozen); the source destroyed
  let src = { id: 'vol-src', path: '/r/src', sizeBytes: 4 << 20, replicas: 1, state: 'ready', parent: null, snapshots: {}, epoch: 1 } as unknown as Volume
  const sp = planSnapshot(src, 's1', 0)
  src = { ...src, layers: sp.layers, snapshots: { s1: { ...sp.snapshot, at: 0, by: 'x' } } } as unknown as Volume
  const clone0 = planClone({ path: '/r/c', from: '/r/src@s1' }, [src], () => 'vol-c') as unknown as Volume
  const cp = planSnapshot(clone0, 'k1', 0)
  const clone = { ...clone0, layers: cp.layers, snapshots: { k1: { ...cp.snapshot, at: 0, by: 'x' } } } as unknown as Volume
  t.true(planMerges([clone]).some(m => m.layer === 'vol-src' && m.into === 'vol-c'), 'the source\'s layer folds into the clone\'s base')
  const { s } = await store(t)
  await s.write('vol-src', 0, 0, new Uint8Array([1]), { epoch: 900 }) // the source's writers, many failovers on
  await s.write('vol-c@1', 1, 0, new Uint8Array([2]), { epoch: 3 }) // the clone's own writer
  await execute(s, { op: 'merge', volume: 'vol-c', from: 'vol-src', index: 0 } as never, null)
  await execute(s, { op: 'merge', volume: 'vol-c', from: 'vol-src' } as never, null)
  await s.write('vol-c@1', 1, 0, new Uint8Array([3]), { epoch: 3 })
  t.is(await s.writerFloor('vol-c@1'), 3)
  // within a line the fold teaches: a layer of the source folded into the one above it
  await s.write('vol-src@1', 0, 0, new Uint8Array([1]), { epoch: 901 })
  await execute(s, { op: 'merge', volume: 'vol-src@2', from: 'vol-src@1' } as never, null)
  t.is(await s.epoch('vol-src@2'), 901)
})

test('a layer freed while a newer epoch is being recorded on it keeps that epoch for the layers above it', async t => {
  for (let i = 0; i < 20; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'gvs-race-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const e = new WriterEpochs(dir)
    await e.admit('vol-a@1', 5, false)
    await e.admit('vol-a@3', 5, false)
    // @1 folded away and freed here while a fence at 7 (from a node whose document lags) lands on it
    await Promise.all([e.forget('vol-a@1'), e.admit('vol-a@1', 7, false)])
    const refused = async (x: WriterEpochs): Promise<boolean> => await x.admit('vol-a@3', 6, false).then(() => false, err => isGvsError(err, 'stale-epoch'))
    t.true(await refused(e), `run ${i}: the deposed writer at 6 is refused on the top`)
    t.true(await refused(new WriterEpochs(dir)), `run ${i}: also after a restart`)
  }
})

test('a destroyed line\'s floor goes on a node that holds nothing else of it', async t => {
  const { s, dir } = await store(t)
  const r = new LayerReclaim({ store: s, log: silentLogger } as never, { freeAfterMs: 0 })
  await s.fence('vol-a', 5) // the VM's start: the fence reaches every node, on the top (then the base)
  const vol = (layers: string[], merged?: Record<string, string>): Volume => ({ id: 'vol-a', path: '/a', sizeBytes: 1, replicas: 1, snapshots: {}, layers, ...(merged != null ? { merged } : {}) }) as unknown as Volume
  await r.free([vol(['vol-a@2', 'vol-a@1', 'vol-a'])], 0)
  // vol-a folded into vol-a@1 (a snapshot deleted): freed here, its epoch kept in the floor
  t.deepEqual(await r.free([vol(['vol-a@2', 'vol-a@1', 'vol-a'], { 'vol-a': 'vol-a@1' })], 1), ['vol-a'])
  t.deepEqual(await readdir(join(dir, 'epochs')), ['vol-a.floor'])
  t.true(isGvsError(await t.throwsAsync(s.write('vol-a@2', 0, 0, new Uint8Array([1]), { epoch: 4 })), 'stale-epoch'))
  // the volume destroyed (on another node): this node's next pass
  await r.free([], 2)
  t.deepEqual(await readdir(join(dir, 'epochs')), [], 'nothing of the destroyed line left')
})

test('a copy of an object teaches its new holder the epoch its writers must reach, counting the layers under it', async t => {
  const { s } = await store(t)
  await s.fence('vol-b@1', 5) // the writer took over while @1 was the top
  await s.write('vol-b@3', 0, 0, new Uint8Array([1]), { epoch: 5 }) // two snapshots on: nothing recorded on @3 itself
  const got = await execute(s, { op: 'get', volume: 'vol-b@3', index: 0 } as never, null)
  t.is(got.reply.epoch, 5, 'repair puts it on the new holder with this epoch')
  const { s: fresh } = await store(t)
  await execute(fresh, { op: 'put', volume: 'vol-b@3', index: 0, epoch: got.reply.epoch, version: got.reply.version, replace: false } as never, got.data)
  t.true(isGvsError(await t.throwsAsync(fresh.write('vol-b@3', 0, 0, new Uint8Array([9]), { epoch: 4 })), 'stale-epoch'), 'the deposed writer is refused on the new holder')
})
