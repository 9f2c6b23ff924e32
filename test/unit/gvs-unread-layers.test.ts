// The record of layers the document stopped reading (node/gvs/unread-layers.ts): read
// back by the next run, written only when it changed, a damaged one reported once and
// read as none (its copies then stay: nothing is freed on a guess).
import test from 'ava'
import { mkdir, mkdtemp, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { UnreadLayers, type LayerRecord } from '../../node/gvs/unread-layers.ts'
import { createLogger, silentLogger } from '../../node/log.ts'
import { LayerReclaim, type LayerReclaimComponents } from '../../node/gvs/layer-reclaim.ts'
import type { Volume } from '../../crdt/index.ts'

const H1 = 'a'.repeat(64)
const H2 = 'b'.repeat(64)
const rec = (unread: string[], read: string[] = [], heads: string[] = []): LayerRecord => ({ unread: new Set(unread), read: new Set(read), heads })

async function dir (t: { teardown: (f: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'gvs-unread-'))
  t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

test('kept layers are read back by the next run; an unchanged set is not written again', async t => {
  const file = join(await dir(t), 'unread-layers.json')
  const lines: string[] = []
  const log = createLogger({ level: 'debug', write: l => lines.push(l) })
  const a = new UnreadLayers(file, log)
  t.deepEqual([...(await a.load()).unread], [], 'no file: none')
  await a.keep(rec(['vol-a@3', 'vol-b']))
  t.is((await stat(file)).mode & 0o777, 0o600)
  const before = (await stat(file)).mtimeMs
  await new Promise(resolve => setTimeout(resolve, 20))
  await a.keep(rec(['vol-b', 'vol-a@3'], [], [H2]))
  t.is((await stat(file)).mtimeMs, before, 'the same sets: no write (other heads alone make none)')
  t.deepEqual([...(await new UnreadLayers(file, log).load()).unread].sort(), ['vol-a@3', 'vol-b'])
  await a.keep(rec([], ['vol-c'], [H1]))
  t.deepEqual(JSON.parse(await readFile(file, 'utf8')), { v: 2, layers: [], read: ['vol-c'], heads: [H1] })
  const back = await new UnreadLayers(file, log).load()
  t.deepEqual([[...back.read], back.heads], [['vol-c'], [H1]])
  // an earlier release's record: its unread layers only
  await writeFile(file, '{"v":1,"layers":["vol-d"]}')
  const v1 = await new UnreadLayers(file, log).load()
  t.deepEqual([[...v1.unread], [...v1.read], v1.heads], [['vol-d'], [], []])
  t.deepEqual(lines, [])
})

test('a damaged record is reported once, naming the file, and read as none', async t => {
  const d = await dir(t)
  const cases: Array<[string, string]> = [['garbage', 'not json'], ['shape', '{"v":3,"layers":[]}'], ['names', '{"v":1,"layers":["ok","../etc/passwd"]}'], ['read', '{"v":2,"layers":[],"read":"x","heads":[]}'], ['heads', '{"v":2,"layers":[],"read":[],"heads":["nothex"]}']]
  for (const [name, text] of cases) {
    const file = join(d, `${name}.json`)
    await writeFile(file, text)
    const lines: string[] = []
    const r = new UnreadLayers(file, createLogger({ level: 'debug', write: l => lines.push(l) }))
    t.deepEqual([...(await r.load()).unread], [], name)
    await r.load()
    t.is(lines.length, 1, `${name}: one warning`)
    t.true(lines[0]!.includes(file), lines[0])
  }
})

// the layer reclaim's use of the record (node/gvs/layer-reclaim.ts), over a store that
// only lists and removes layers
const vol = (id: string, layers: string[], snaps: Record<string, string[]> = {}, extra: Partial<Volume> = {}): Volume => ({
  id, path: `/v/${id}`, sizeBytes: 1 << 24, replicas: 2, state: 'ready', parent: null, epoch: 1, at: 1, by: 'n',
  snapshots: Object.fromEntries(Object.entries(snaps).map(([name, l]) => [name, { name, createdAt: 1, layers: l, at: 1, by: 'n' }])),
  layers, ...extra
})
function fakeStore (d: string, held: Set<string>, gate: { wait?: Promise<void> } = {}): { store: object, removed: string[] } {
  const removed: string[] = []
  return {
    removed,
    store: {
      dir: d,
      layers: async () => [...held],
      takeTouched: () => new Set<string>(),
      removeVolume: async (n: string) => { if (gate.wait != null) await gate.wait; held.delete(n); removed.push(n) },
      epochFloors: async () => [],
      forgetLine: async () => {},
      // the layers here all hold objects
      dropIfEmpty: async () => false
    }
  }
}
const reclaimOf = (store: object): LayerReclaim => new LayerReclaim({ self: 'n', log: silentLogger, store } as unknown as LayerReclaimComponents, { freeAfterMs: 20_000 })
const recordOf = async (d: string): Promise<string[]> => await readFile(join(d, 'unread-layers.json'), 'utf8').then(t => JSON.parse(t).layers as string[], () => [])

test('a layer the document began to read during a pass is never recorded (a restart on an empty document would free it)', async t => {
  const d = await dir(t)
  const held = new Set(['A', 'A@1', 'N'])
  const gate: { wait?: Promise<void> } = {}
  const r = reclaimOf(fakeStore(d, held, gate).store)
  const before = [vol('A', ['A@1', 'A'], { s: ['A'] })]
  r.note(before)
  await r.load(() => before)
  // A's snapshot deleted, A folded into A@1; a pass 20 s later frees A, slowly
  const folded = [vol('A', ['A@1', 'A'], {}, { merged: { A: 'A@1' } })]
  await r.free(folded, 0)
  t.deepEqual(await recordOf(d), ['A'])
  let release!: () => void
  gate.wait = new Promise(resolve => { release = resolve })
  const pass = r.free(folded, 30_000)
  await new Promise(resolve => setTimeout(resolve, 20))
  // meanwhile a volume N is made (this node holds copies of it) and noted
  r.note([...folded, vol('N', ['N'])])
  release()
  await pass
  t.deepEqual(await recordOf(d), [], 'A freed; N read: neither recorded')
  // a restart on an empty document, no peer yet: nothing is freed
  const { store, removed } = fakeStore(d, held)
  const again = reclaimOf(store)
  again.note([])
  await again.load(() => [])
  await again.free([], 0)
  await again.free([], 30_000)
  t.deepEqual(removed, [])
})

test('the record names only layers held here: it does not grow with every destroy and fold on the grid', async t => {
  const d = await dir(t)
  const held = new Set(['R@1'])
  const r = reclaimOf(fakeStore(d, held).store)
  await r.load(() => [])
  for (let i = 1; i <= 20; i++) {
    r.note([vol('R', [`R@${i + 1}`, `R@${i}`], { k: [`R@${i}`] })])
    await r.free([vol('R', [`R@${i + 1}`], {}, { merged: { [`R@${i}`]: `R@${i + 1}` } })], i * 60_000)
  }
  t.deepEqual(await recordOf(d), [], 'R@1 freed here; the other layers were never held here')
})

test('a record that failed to be written is written by the next keep, even of the same set', async t => {
  const d = await dir(t)
  const file = join(d, 'unread-layers.json')
  const u = new UnreadLayers(file, silentLogger)
  await u.load()
  await u.keep(rec(['a']))
  await rm(file)
  await mkdir(file) // the rename over it fails
  await u.keep(rec(['a', 'b']))
  await rmdir(file)
  await u.keep(rec(['a', 'b']))
  t.deepEqual(JSON.parse(await readFile(file, 'utf8')).layers, ['a', 'b'])
})

test('a node killed right after a destroy reached its disk, before it saw it, frees the layer after its restart: the record\'s heads are in the document it loads (bb26)', async t => {
  const d = await dir(t)
  const held = new Set(['K', 'K@1'])
  let heads = [H1]
  const docHas = new Set([H1])
  const reclaimWith = (store: object): LayerReclaim => new LayerReclaim({ self: 'n', log: silentLogger, store, heads: () => heads, hasHeads: (h: readonly string[]) => h.every(x => docHas.has(x)) } as unknown as LayerReclaimComponents, { freeAfterMs: 20_000 })
  const first = reclaimWith(fakeStore(d, held).store)
  const live = [vol('K', ['K@1', 'K'], { s: ['K'] })]
  await first.load(() => live)
  await first.free(live, 0)
  // the destroy reaches the document on disk (heads H2); the node is killed before it looks
  heads = [H2]
  docHas.add(H2)
  const { store, removed } = fakeStore(d, held)
  const again = reclaimWith(store)
  again.note([])
  await again.load(() => [])
  await again.free([], 0)
  await again.free([], 30_000)
  t.deepEqual(removed.sort(), ['K', 'K@1'], 'freed once unread for the wait')
})

test('a restart on a document without the record\'s heads (the state lost, or an older one) frees none of the layers it had seen read', async t => {
  const d = await dir(t)
  const held = new Set(['L'])
  const reclaimWith = (store: object, has: boolean): LayerReclaim => new LayerReclaim({ self: 'n', log: silentLogger, store, heads: () => [H1], hasHeads: () => has } as unknown as LayerReclaimComponents, { freeAfterMs: 20_000 })
  const first = reclaimWith(fakeStore(d, held).store, true)
  await first.load(() => [vol('L', ['L'])])
  await first.free([vol('L', ['L'])], 0)
  const { store, removed } = fakeStore(d, held)
  const again = reclaimWith(store, false)
  await again.load(() => [])
  await again.free([], 0)
  await again.free([], 60_000)
  t.deepEqual(removed, [], 'kept: the empty document tells nothing of it')
})

test('a document that syncs in during the load is asked for the record\'s heads with the volumes read then, not an older list (rv31: a live layer was recorded as unread)', async t => {
  const d = await dir(t)
  const held = new Set(['L'])
  const docHas = new Set<string>()
  const reclaimWith = (store: object): LayerReclaim => new LayerReclaim({ self: 'n', log: silentLogger, store, heads: () => [H1], hasHeads: (h: readonly string[]) => h.every(x => docHas.has(x)) } as unknown as LayerReclaimComponents, { freeAfterMs: 20_000 })
  // run 1 records L as read, with heads H1
  const first = reclaimWith(fakeStore(d, held).store)
  await first.load(() => [vol('L', ['L'])])
  await first.free([vol('L', ['L'])], 0)
  // run 2 starts on an older document (no L, no H1); the full one syncs in during the load
  let doc: Volume[] = []
  const { store } = fakeStore(d, held)
  const slow = { ...store, layers: async () => { doc = [vol('L', ['L'])]; docHas.add(H1); return [...held] } }
  const again = reclaimWith(slow)
  await again.load(() => doc)
  t.deepEqual(await recordOf(d), [], 'L is read by the document the heads were asked of: not recorded as unread')
})

test('a layer the store named just before a pass listed it, not on disk yet, stays in the record (rv43: dropped, its copies kept for good after a destroy and a restart)', async t => {
  const d = await dir(t)
  const held = new Set<string>()
  const { store } = fakeStore(d, held)
  // the write names L and makes its directory once the listing is done
  let touched = new Set<string>()
  Object.assign(store, { takeTouched: () => { const x = touched; touched = new Set(); return x } })
  const r = reclaimOf(store)
  await r.load(() => [])
  r.note([vol('L', ['L'])])
  touched.add('L')
  // the pass: the document no longer reads L (destroyed), the listing does not show it yet
  await r.free([], 0)
  t.deepEqual(await recordOf(d), ['L'], 'named: a restart frees its copies')
})
