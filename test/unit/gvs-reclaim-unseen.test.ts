// A write that reaches a node before its document has the volume, and the volume's
// making and destroy then arriving in one sync: no read of the document ever names the
// layer, and its copies stayed for good (rv43). The changes since that write name the
// volume (unseen-writes.ts, Replica.keysWrittenSince): they are freed.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Replica, syncPair, type Volume } from '../../crdt/index.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { LayerReclaim } from '../../node/gvs/layer-reclaim.ts'
import { silentLogger } from '../../node/log.ts'

const volume = (id: string): Volume => ({ id, path: `/${id}`, sizeBytes: 4 << 20, replicas: 2, state: 'ready', parent: null, snapshots: {} }) as unknown as Volume

async function setup (t: ExecutionContext): Promise<{ a: Replica, b: Replica, store: ObjectStore, reclaim: LayerReclaim, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-reclaim-unseen-'))
  let clock = 1_000_000
  const a = Replica.create({ clusterId: 'c0ffee', nodeId: 'nodeA', now: () => clock++ })
  const b = Replica.create({ clusterId: 'c0ffee', nodeId: 'nodeB', now: () => clock++ })
  a.change(w => { w.put('volumes', volume('vol-keep')) })
  syncPair(a, b)
  const store = new ObjectStore({ log: silentLogger }, { dir })
  await store.start()
  t.teardown(async () => { await store.stop(); await rm(dir, { recursive: true, force: true }) })
  // node B's reclaim, reading B's document
  const reclaim = new LayerReclaim({
    store,
    log: silentLogger,
    heads: () => b.heads(),
    hasHeads: (h: readonly string[]) => b.hasHeads([...h]),
    keysWrittenSince: (h: readonly string[], keys: ReadonlySet<string>) => b.keysWrittenSince(h, 'volumes', keys)
  } as never, { freeAfterMs: 0 })
  await reclaim.load(() => b.read().list('volumes'))
  await store.write('vol-keep', 0, 0, new Uint8Array([1]), { epoch: 1 })
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 0), [])
  return { a, b, store, reclaim, dir }
}

test('a volume made, written here before this node had it, and destroyed, all in one sync: its copies are freed', async t => {
  const { a, b, store, reclaim, dir } = await setup(t)
  // a write for vol-gone reaches B's store before B's document has the volume
  await store.write('vol-gone', 0, 0, new Uint8Array([2]), { epoch: 1 })
  reclaim.note(b.read().list('volumes'))
  a.change(w => { w.put('volumes', volume('vol-gone')) })
  a.change(w => { w.remove('volumes', 'vol-gone') })
  // the making and the destroy reach B in one sync
  syncPair(a, b)
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 1), ['vol-gone'])
  t.deepEqual((await readdir(join(dir, 'objects'))).sort(), ['vol-keep'])
})

test('a layer written here whose volume has not reached this node yet is kept, and read once it comes', async t => {
  const { a, b, store, reclaim, dir } = await setup(t)
  await store.write('vol-early', 0, 0, new Uint8Array([3]), { epoch: 1 })
  reclaim.note(b.read().list('volumes'))
  // other changes arrive, none naming vol-early: kept, pass after pass
  a.change(w => { w.put('volumes', volume('vol-other')) })
  syncPair(a, b)
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 1), [])
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 100_000), [])
  // its making arrives: read, kept
  a.change(w => { w.put('volumes', volume('vol-early')) })
  syncPair(a, b)
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 200_000), [])
  t.deepEqual((await readdir(join(dir, 'objects'))).sort(), ['vol-early', 'vol-keep'])
  // destroyed later (seen by then): freed the usual way
  a.change(w => { w.remove('volumes', 'vol-early') })
  syncPair(a, b)
  t.deepEqual(await reclaim.free(b.read().list('volumes'), 300_000), ['vol-early'])
})

test('keysWrittenSince names the volumes changes since the heads made or destroyed that the document no longer holds; nothing for heads not in the history', t => {
  let clock = 1
  const a = Replica.create({ clusterId: 'c0ffee', nodeId: 'nodeA', now: () => clock++ })
  const before = a.heads()
  a.change(w => { w.put('volumes', volume('vol-x')) })
  const mid = a.heads()
  // present now: not named (rv45: one that fails this agent's schema is no destroyed one either)
  t.deepEqual([...a.keysWrittenSince(before, 'volumes', new Set(['vol-x']))!.found], [])
  a.change(w => { w.remove('volumes', 'vol-x') })
  t.deepEqual([...a.keysWrittenSince(before, 'volumes', new Set(['vol-x', 'vol-y']))!.found], ['vol-x'])
  t.deepEqual([...a.keysWrittenSince(mid, 'volumes', new Set(['vol-x']))!.found], ['vol-x'], 'the destroy names it')
  const now = a.keysWrittenSince(a.heads(), 'volumes', new Set(['vol-x']))!
  t.deepEqual([...now.found], [])
  t.deepEqual(now.heads, a.heads())
  t.is(a.keysWrittenSince(['00'.repeat(32)], 'volumes', new Set(['vol-x'])), null)
  // the same key in another collection, or inside a volume (a snapshot's name), is no volume of that id (rv45)
  const later = a.heads()
  a.change(w => { w.put('volumes', { ...volume('vol-z'), snapshots: {} }) })
  a.change(w => { w.addSnapshot('vol-z', { name: 'vol-q', createdAt: 5, sizeBytes: 4 << 20 }) })
  t.deepEqual([...a.keysWrittenSince(later, 'volumes', new Set(['vol-q']))!.found], [])
})
