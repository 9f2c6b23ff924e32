// A volume made and destroyed between two background passes, then a restart: its copies
// here must be freed by the next run (bb39: they were in neither list of the record
// unread-layers.ts keeps, and stayed on disk for good, 46 MB after a 34-minute churn).
import test from 'ava'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Volume } from '../../crdt/index.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { LayerReclaim } from '../../node/gvs/layer-reclaim.ts'
import { silentLogger } from '../../node/log.ts'

const vol = (id: string): Volume => ({ id, path: `/${id}`, sizeBytes: 4 << 20, replicas: 1, state: 'ready', parent: null, snapshots: {}, epoch: 1 }) as unknown as Volume

test('a volume made and destroyed between two passes, then a restart: the next run frees its copies', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-reclaim-restart-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const keep = vol('vol-keep')
  // the first run: a pass lists the store, then a volume is made, written here and destroyed before the next pass
  const s1 = new ObjectStore({ log: silentLogger }, { dir })
  await s1.start()
  const r1 = new LayerReclaim({ store: s1, log: silentLogger } as never, { freeAfterMs: 0 })
  await r1.load(() => [keep])
  await s1.write('vol-keep', 0, 0, new Uint8Array([1]), { epoch: 1 })
  await r1.free([keep], 0)
  const gone = vol('vol-gone')
  const elsewhere = vol('vol-elsewhere')
  r1.note([keep, gone, elsewhere])
  await s1.write('vol-gone', 0, 0, new Uint8Array([2]), { epoch: 1 })
  // an inventory another node asks of a layer held elsewhere names nothing here (rv43)
  t.deepEqual(await s1.list('vol-elsewhere'), [])
  r1.note([keep, elsewhere])
  // the agent stops (a graceful restart) before its next pass, once the record is on disk
  await r1.settled()
  await s1.stop()
  // it names the layers held or written here, not every layer the document reads (rv42: the grid's whole list, written again at each volume made anywhere)
  const record = JSON.parse(await readFile(join(dir, 'unread-layers.json'), 'utf8')) as { layers: string[], read: string[] }
  t.deepEqual(record.layers, ['vol-gone'])
  t.deepEqual(record.read, ['vol-keep'])
  // the next run loads a document that no longer names the destroyed volume
  const s2 = new ObjectStore({ log: silentLogger }, { dir })
  await s2.start()
  t.teardown(async () => { await s2.stop() })
  const r2 = new LayerReclaim({ store: s2, log: silentLogger } as never, { freeAfterMs: 0 })
  await r2.load(() => [keep, elsewhere])
  t.deepEqual(await r2.free([keep, elsewhere], 1), ['vol-gone'], 'its copies freed')
  t.deepEqual((await readdir(join(dir, 'objects'))).sort(), ['vol-keep'])
})
