// Deleted snapshots give their layers back (layer-reclaim.ts), on three in-process
// agents sharing one document: a deleted snapshot's layer is folded into the frozen
// layer above it and freed on every node, every snapshot, clone and the volume read
// as before, a clone keeps the layer it reads under its own top, and a volume
// snapshotted and rotated many times keeps a short stack; a node down while a volume
// was destroyed frees its copies when it is back.
import test, { type ExecutionContext } from 'ava'
import { readdir } from 'node:fs/promises'
import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import type { Volume } from '../../crdt/index.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { layersOf } from '../../node/gvs/volumes.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService, type GvsComponents } from '../../node/gvs/service.ts'
import { silentLogger } from '../../node/log.ts'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { RollMemory } from '../../node/membership/roll-memory.ts'
import type { Member } from '../../protocol/membership.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'

const OBJ = OBJECT_SIZE
const OBJECTS = 4

test('a deleted snapshot\'s layer is folded into the one above and freed; every reader sees the same bytes', async t => {
  const grid = await memoryHosts(t, 3, 'gvsfold')
  const doc = sharedDocument(grid.hosts)
  const svcs = await startServices(grid, doc, { freeAfterMs: 0 })
  const api = apiOf(svcs[0]!)
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object): Promise<{ status: number, body: { id: string } & Record<string, unknown> }> => {
    const r = await api.inject({ method, url, ...(payload != null ? { payload } : {}) })
    return { status: r.statusCode, body: r.body === '' ? { id: '' } : r.json() }
  }
  const created = await call('POST', '/v1/volumes', { path: '/r/vol', size: OBJECTS * OBJ })
  t.is(created.status, 201, JSON.stringify(created.body))
  const id: string = created.body.id
  const volume = (): Volume => doc.replica.read().list('volumes').find(v => v.id === id)!
  const sock = (i: number): string => join(grid.dir, `a${i}`, 'nbd.sock')

  /** writes one 4 KiB mark at the start of each object listed, through node 1's NBD server */
  const mark = async (marks: Record<number, string>): Promise<void> => {
    const c = await NbdClient.open(sock(1), 'r/vol')
    for (const [i, ch] of Object.entries(marks)) await c.write(Number(i) * OBJ, Buffer.alloc(4096, ch), true)
    await c.flush()
    await c.close()
  }
  /** the mark of each object as an export reads it, through node 2 (no 4 KiB written: "0") */
  const reads = async (name: string): Promise<string> => {
    const c = await NbdClient.open(sock(2), name)
    let out = ''
    for (let i = 0; i < OBJECTS; i++) { const b = await c.read(i * OBJ, 4096); out += b[0] === 0 ? '0' : String.fromCharCode(b[0]!) }
    await c.close()
    return out
  }
  const snapshot = async (name: string): Promise<void> => { t.is((await call('POST', `/v1/volumes/${id}/snapshots`, { name })).status, 201) }
  const unsnapshot = async (name: string): Promise<void> => { t.is((await call('DELETE', `/v1/volumes/${id}/snapshots/${name}`)).status, 200) }
  const fold = async (): Promise<number> => { let n = 0; for (const s of svcs) n += await s.fold(); for (const s of svcs) await s.reconcile(); return n }
  const onDisk = async (layer: string): Promise<number> => (await Promise.all(svcs.map(async s => (await s.store.volumes()).includes(layer) ? (await s.store.list(layer)).length : 0))).reduce((a, b) => a + b, 0)

  await mark({ 0: 'a', 1: 'a', 2: 'a', 3: 'a' })
  await snapshot('s1')
  await mark({ 0: 'b', 1: 'b' })
  await snapshot('s2')
  await mark({ 0: 'c', 2: 'c' })
  await snapshot('s3')
  await mark({ 3: 'd' })
  t.deepEqual(layersOf(volume()), [`${id}@3`, `${id}@2`, `${id}@1`, id])
  const clone = await call('POST', '/v1/volumes', { path: '/r/clone', from: '/r/vol@s2' })
  t.is(clone.status, 201)
  const want = { 'r/vol@s1': 'aaaa', 'r/vol@s2': 'bbaa', 'r/vol@s3': 'cbca', 'r/vol': 'cbcd', 'r/clone': 'bbaa' }
  const check = async (what: string, names: Array<keyof typeof want>): Promise<void> => {
    for (const n of names) t.is(await reads(n), want[n], `${n} ${what}`)
  }
  await check('before any fold', ['r/vol@s1', 'r/vol@s2', 'r/vol@s3', 'r/vol', 'r/clone'])
  // sessions open across the folds: one on a snapshot that is kept, one on one deleted later
  const kept = await NbdClient.open(sock(2), 'r/vol@s3')
  const doomed = await NbdClient.open(sock(2), 'r/vol@s2')
  t.teardown(async () => { await kept.close().catch(() => {}); await doomed.close().catch(() => {}) })
  const marks = async (c: NbdClient): Promise<string> => { let out = ''; for (let i = 0; i < OBJECTS; i++) { const b = await c.read(i * OBJ, 4096); out += b[0] === 0 ? '0' : String.fromCharCode(b[0]!) } return out }
  t.is(await fold(), 0, 'nothing to fold while every snapshot is kept')

  // s1 goes: the base layer is folded into s2's, which is read above it everywhere
  await unsnapshot('s1')
  t.is(await fold(), 1)
  t.deepEqual(layersOf(volume()), [`${id}@3`, `${id}@2`, `${id}@1`])
  t.is(await onDisk(id), 0, 'its objects are freed on every node')
  t.is(await onDisk(`${id}@1`), OBJECTS * 2, 'the layer above took the objects it lacked, on both holders')
  await check('after s1 was folded', ['r/vol@s2', 'r/vol@s3', 'r/vol', 'r/clone'])

  // s2 goes, but the clone reads its layer under its own top: kept
  await unsnapshot('s2')
  t.is(await fold(), 0, 'a layer a clone reads under its top stays')
  t.true(await onDisk(`${id}@1`) > 0)
  await check('while the clone keeps s2\'s layer', ['r/vol@s3', 'r/vol', 'r/clone'])
  t.is((await call('DELETE', `/v1/volumes/${encodeURIComponent('/r/clone')}`)).status, 200)
  t.is(await fold(), 1, 'once the clone is gone, it folds')
  t.deepEqual(layersOf(volume()), [`${id}@3`, `${id}@2`])
  t.is(await onDisk(`${id}@1`), 0)
  await check('after s2 was folded', ['r/vol@s3', 'r/vol'])
  t.is(await marks(kept), 'cbca', 'a session open on a kept snapshot reads the same bytes through the folds')
  await t.throwsAsync(async () => await doomed.read(0, 4096), undefined, 'a session of a deleted snapshot fails once its layers go, never reads other bytes')

  // the next top is named past every number used (the stack is shorter than that now)
  await snapshot('s4')
  t.deepEqual(layersOf(volume()), [`${id}@4`, `${id}@3`, `${id}@2`])

  // a rotation: one snapshot a round, the one before deleted; the stack stays short
  let prev = 's4'
  for (let round = 0; round < 12; round++) {
    await mark({ [round % OBJECTS]: String.fromCharCode(0x65 + round) })
    const name = `rot${round}`
    await snapshot(name)
    await unsnapshot(prev)
    prev = name
    t.is(await fold(), 1, `round ${round}: the deleted snapshot's layer folds`)
    // the top, the newest snapshot's layer, and s3's
    t.is(layersOf(volume()).length, 3, `round ${round}: ${layersOf(volume()).join(' ')}`)
  }
  // a burst: five snapshots, four of them deleted before any pass; one pass folds the
  // whole chain (planned again after each fold), and the API says what waits meanwhile
  for (let k = 0; k < 5; k++) { await mark({ [k % OBJECTS]: String.fromCharCode(0x71 + k) }); await snapshot(`burst${k}`) }
  await unsnapshot(prev)
  for (let k = 0; k < 4; k++) await unsnapshot(`burst${k}`)
  prev = 'burst4'
  const info = (await call('GET', `/v1/volumes/${id}`)).body as unknown as { layers: { count: number, max: number, folding: number } }
  t.is(info.layers.count, 8)
  t.is(info.layers.max, 128)
  t.true(info.layers.folding >= 1, `${info.layers.folding} waiting to be folded`)
  t.is(await fold(), 5, 'one pass folds them all')
  t.is(layersOf(volume()).length, 3)
  t.like((await call('GET', `/v1/volumes/${id}`)).body, { layers: { count: 3, folding: 0 } })
  // s3 was kept all along: its bytes never moved
  t.is(await reads('r/vol@s3'), 'cbca')
  const top = await reads('r/vol')
  t.is(await reads(`r/vol@${prev}`), top, 'the newest snapshot reads as the volume (nothing written since)')
  t.is(top, 'urst')
})

type Grid = Awaited<ReturnType<typeof memoryHosts>>
type Doc = ReturnType<typeof sharedDocument>

/** one 4 KiB mark of `ch` at the start of each of the 12 objects of `path`, through node 0 (2 copies each on 3 nodes: node 2 holds some; with 4 objects, it held none about once in 80 runs) */
async function fill (grid: Grid, path: string, ch: number): Promise<void> {
  const c = await NbdClient.open(join(grid.dir, 'a0', 'nbd.sock'), path)
  for (let i = 0; i < 12; i++) await c.write(i * OBJ, Buffer.alloc(4096, ch), true)
  await c.close()
}

/** node 2's volume store started again on its data dir, with `state` as its document */
async function restartNode2 (grid: Grid, doc: Doc, state: GvsComponents['state']): Promise<GvsService> {
  const again = new GvsService({ peerId: grid.hosts[2]!.peerId.toString(), log: silentLogger, config: { dataDir: join(grid.dir, 'a2') }, host: grid.hosts[2]!, state, membership: { members: doc.members } }, { reconcileMs: 0, env: false, freeAfterMs: 0 })
  await again.start()
  grid.svcs.push(again)
  return again
}

/** a volume whose copies node 2 holds, destroyed while node 2 is down; `kept`: the document node 2 kept on its disk */
async function destroyedWhileNode2Down (t: ExecutionContext, name: string): Promise<{ grid: Grid, doc: Doc, id: string, kept: Replica }> {
  const grid = await memoryHosts(t, 3, name)
  const doc = sharedDocument(grid.hosts)
  const svcs = await startServices(grid, doc, { freeAfterMs: 0 })
  const api = apiOf(svcs[0]!)
  const id: string = (await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: `/r/${name}`, size: 12 * OBJ } })).json().id
  await fill(grid, `r/${name}`, 0x5a)
  for (const s of svcs) await s.reconcile()
  t.true((await svcs[2]!.store.list(id)).length > 0, 'node 2 holds some of its objects')
  const kept = doc.replica.fork()
  await svcs[2]!.stop()
  const n2 = grid.hosts[2]!.peerId.toString()
  const member = doc.members.get(n2)!
  doc.members.set(n2, { ...member, state: 'dead' })
  t.is((await api.inject({ method: 'DELETE', url: `/v1/volumes/${id}` })).statusCode, 200)
  doc.members.set(n2, member)
  return { grid, doc, id, kept }
}

test('a node down while a volume was destroyed frees its copies when it comes back', async t => {
  const { grid, doc, id, kept } = await destroyedWhileNode2Down(t, 'gone')
  // back: it starts on the document it kept, then peers sync it the destroy
  let synced = false
  const again = await restartNode2(grid, doc, { read: () => synced ? doc.replica.read() : kept.read(), write: doc.state.write.bind(doc.state) })
  synced = true
  await again.reconcile()
  t.false((await again.store.volumes()).includes(id), 'its copies are freed')
})

test('a node whose peers synced it a destroy before its volume store started frees its copies (the document as loaded from its disk named the volume)', async t => {
  const { grid, doc, id, kept } = await destroyedWhileNode2Down(t, 'early')
  // back: its state service loaded the document it kept, and a peer synced it the
  // destroy before the volume store started: the store never reads the volume now
  const again = await restartNode2(grid, doc, { read: () => doc.replica.read(), write: doc.state.write.bind(doc.state), volumesAsLoaded: () => kept.read().list('volumes') })
  await again.reconcile()
  t.false((await again.store.volumes()).includes(id), 'its copies are freed')
})

test('a node stopped after it saw a deleted snapshot\'s layer folded, before it freed its copies, frees them after its restart', async t => {
  const grid = await memoryHosts(t, 3, 'gvsfoldstop')
  const doc = sharedDocument(grid.hosts)
  const svcs = await startServices(grid, doc, { freeAfterMs: 0 })
  const api = apiOf(svcs[0]!)
  const id: string = (await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/fs', size: 12 * OBJ } })).json().id
  await fill(grid, 'r/fs', 0x61)
  t.is((await api.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })).statusCode, 201)
  await fill(grid, 'r/fs', 0x62)
  t.is((await api.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's2' } })).statusCode, 201)
  await fill(grid, 'r/fs', 0x63)
  for (const s of svcs) await s.reconcile()
  const s1Layer = doc.replica.read().get('volumes', id)!.value.snapshots.s1!.layers![0]!
  t.true((await svcs[2]!.store.list(s1Layer)).length > 0, 'node 2 holds some of the layer s1 froze')
  // s1 deleted and its layer folded; node 2 notes it (every 2 s) and is stopped before its next pass frees it
  t.is((await api.inject({ method: 'DELETE', url: `/v1/volumes/${id}/snapshots/s1` })).statusCode, 200)
  for (const s of svcs) await s.fold()
  t.false(layersOf(doc.replica.read().get('volumes', id)!.value).includes(s1Layer), 'folded')
  await new Promise(resolve => setTimeout(resolve, 2500))
  await svcs[2]!.stop()
  t.true((await svcs[2]!.store.list(s1Layer)).length > 0, 'not freed before the stop')
  // back: the document it loads has the fold (nothing there reads the layer any more)
  const again = await restartNode2(grid, doc, { read: () => doc.replica.read(), write: doc.state.write.bind(doc.state), volumesAsLoaded: () => doc.replica.read().list('volumes') })
  await again.reconcile()
  t.false((await again.store.volumes()).includes(s1Layer), 'its copies of the folded layer are freed')
  // the volume's data is whole
  const c = await NbdClient.open(join(grid.dir, 'a2', 'nbd.sock'), 'r/fs@s2')
  for (let i = 0; i < 12; i++) t.is((await c.read(i * OBJ, 1))[0], 0x62)
  await c.close()
})

test('a destroyed volume leaves no writer epochs behind on any node, also of the layers its snapshots had', async t => {
  const grid = await memoryHosts(t, 3, 'gvsepochs')
  const doc = sharedDocument(grid.hosts)
  const svcs = await startServices(grid, doc, { freeAfterMs: 0 })
  const api = apiOf(svcs[0]!)
  const created = await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/fenced', size: 4 * OBJ } })
  const id: string = created.json().id
  for (const s of svcs) await s.store.fence(id, 3)
  t.is((await api.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })).statusCode, 201)
  const top = layersOf(doc.replica.read().get('volumes', id)!.value)[0]!
  for (const s of svcs) await s.store.fence(top, 4)
  const files = async (s: GvsService): Promise<string[]> => (await readdir(join(s.store.dir, 'epochs'))).filter(f => f.startsWith(id))
  t.true((await files(svcs[1]!)).length >= 2)
  // every node has seen the document read its layers (noted every 2 s)
  for (const s of svcs) await s.reconcile()
  t.is((await api.inject({ method: 'DELETE', url: `/v1/volumes/${id}?snapshots=true` })).statusCode, 200)
  t.deepEqual(await files(svcs[0]!), [], 'the node that destroyed it')
  for (const s of svcs.slice(1)) await s.reconcile()
  for (const s of svcs.slice(1)) t.deepEqual(await files(s), [], 'a node that saw it destroyed')
})

test('a node restarted on an empty document (its state lost, no peer yet) keeps every copy it holds', async t => {
  const grid = await memoryHosts(t, 3, 'gvsempty')
  const doc = sharedDocument(grid.hosts)
  const svcs = await startServices(grid, doc, { freeAfterMs: 0 })
  const id: string = (await apiOf(svcs[0]!).inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/live', size: 12 * OBJ } })).json().id
  await fill(grid, 'r/live', 0x5a)
  for (const s of svcs) await s.reconcile()
  const held = (await svcs[2]!.store.list(id)).length
  t.true(held > 0)
  await svcs[2]!.stop()
  const empty = Replica.create({ clusterId: 'c1', nodeId: grid.hosts[2]!.peerId.toString() })
  const again = await restartNode2(grid, doc, { read: () => empty.read(), write: doc.state.write.bind(doc.state) })
  await again.reconcile()
  await again.reconcile()
  t.is((await again.store.list(id)).length, held, 'a layer the document never showed this run may be new here: kept')
})

test('nothing is freed while a member is down or announced changes not here yet (a clone made there may read the layer); then it is', async t => {
  const grid = await memoryHosts(t, 3, 'gvsbehind')
  const doc = sharedDocument(grid.hosts)
  let behind: string[] = []
  let unheard: string[] = []
  const state = { read: () => doc.replica.read(), write: doc.state.write.bind(doc.state), lacksHeadsOf: () => behind, headsUnheardOf: () => unheard }
  const svcs = await startServices(grid, { state, members: doc.members }, { freeAfterMs: 0 })
  const id: string = (await apiOf(svcs[0]!).inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/behind', size: 12 * OBJ } })).json().id
  await fill(grid, 'r/behind', 0x5a)
  for (const s of svcs) await s.reconcile()
  const held = async (): Promise<number> => (await Promise.all(svcs.map(async s => (await s.store.list(id)).length))).reduce((a, b) => a + b, 0)
  const before = await held()
  t.true(before > 0)
  // a member announced changes not here yet: not even the destroying node frees its copies at once
  behind = [grid.hosts[1]!.peerId.toString()]
  t.is((await apiOf(svcs[0]!).inject({ method: 'DELETE', url: `/v1/volumes/${id}` })).statusCode, 200)
  for (const s of svcs) await s.reconcile()
  t.is(await held(), before, 'a member announced changes not here: kept')
  behind = []
  // a member not heard announcing any heads yet (this agent just started): kept too (rv31)
  unheard = [grid.hosts[1]!.peerId.toString()]
  for (const s of svcs) await s.reconcile()
  t.is(await held(), before, 'a member not heard from yet: kept')
  t.regex(svcs[0]!.mayFree() ?? '', /^not heard yet which changes .+ holds \(a member's advert says\)$/)
  unheard = []
  const n2 = grid.hosts[2]!.peerId.toString()
  const member = doc.members.get(n2)!
  doc.members.set(n2, { ...member, state: 'dead' })
  for (const s of svcs.slice(0, 2)) await s.reconcile()
  t.is(await held(), before, 'a member down: kept')
  doc.members.set(n2, member)
  for (const s of svcs) await s.reconcile()
  t.is(await held(), 0, 'then freed everywhere')
})

test('a dead member forgotten (vgrid node forget), still in the gossip table for its forget time, holds no fold up; while folds wait, vol info says what for', async t => {
  // a tester's grid: a host SIGKILLed, forgotten and started again on an empty data dir
  // (a new identity, the same name); its deleted snapshots' layers waited about 15
  // minutes, with vol info saying only "to be folded away in the background"
  const grid = await memoryHosts(t, 3, 'gvsforgot')
  const doc = sharedDocument(grid.hosts)
  const old = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  // one that died before its roll entry reached this node: not forgotten, it counts
  const unjoined = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const dead = (id: string): Member => ({ ...doc.members.get(grid.hosts[2]!.peerId.toString())!, nodeId: id, state: 'dead' })
  const memory = new RollMemory()
  const svcs = await startServices(grid, { ...doc, forgotten: node => memory.forgotten(node, doc.replica.read().list('roll')) }, { freeAfterMs: 0 })
  const api = apiOf(svcs[0]!)
  const id: string = (await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/forgot', size: 12 * OBJ } })).json().id
  await fill(grid, 'r/forgot', 0x61)
  // then it died (the writes were made over the three live nodes)
  doc.members.set(old, dead(old))
  doc.replica.change(w => {
    for (const [i, h] of grid.hosts.entries()) w.put('roll', { node: h.peerId.toString(), name: `a${i}`, joined: 1 })
    w.put('roll', { node: old, name: 'a2', joined: 1 })
  })
  for (const name of ['s1', 's2']) t.is((await api.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name } })).statusCode, 201)
  t.is((await api.inject({ method: 'DELETE', url: `/v1/volumes/${id}/snapshots/s1` })).statusCode, 200)
  const fold = async (): Promise<number> => { let n = 0; for (const s of svcs) n += await s.fold(); return n }
  const layers = async (): Promise<{ count: number, folding: number, waiting?: string }> => (await api.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json().layers

  // the old identity is on the roll and dead: a member down may hold the only copy of an object
  t.is(await fold(), 0, 'a dead member on the roll: the fold waits')
  const waiting = await layers()
  t.like(waiting, { count: 3, folding: 1 })
  t.regex(waiting.waiting ?? '', new RegExp(`a member of the grid is not alive: a2 \\(${old}\\) is dead`), 'vol info says what it waits for')

  // forgotten: off the roll, while the gossip table keeps it dead for its forget time
  doc.replica.change(w => { w.remove('roll', old) })
  // and one dead before its roll entry came: still waited for
  doc.members.set(unjoined, dead(unjoined))
  t.is(await fold(), 0, 'a dead member never seen on the roll: the fold waits')
  t.regex((await layers()).waiting ?? '', new RegExp(`${unjoined}\\) is dead`))
  t.notRegex((await layers()).waiting ?? '', new RegExp(old))
  doc.members.delete(unjoined)
  t.is(await fold(), 1, 'the forgotten member holds nothing up')
  t.like(await layers(), { count: 2, folding: 0, waiting: undefined })
  for (const s of svcs) await s.reconcile()
  t.deepEqual(await Promise.all(svcs.map(async s => (await s.store.volumes()).includes(id))), [false, false, false], 'the folded layer is freed on every node')
})

test('a volume made, written and destroyed between two of the 2 s notes: a node that held copies frees them, having noted the document\'s change (rv42: never seen, they stayed for good)', async t => {
  const grid = await memoryHosts(t, 3, 'gvsquick')
  const doc = sharedDocument(grid.hosts)
  // the document's changes told, as the agent's state service tells them
  const emitter = new EventEmitter()
  const state = {
    replica: doc.replica,
    read () { return this.replica.read() },
    async write<T> (fn: Parameters<Replica['change']>[0], message?: string): Promise<T> { const r = this.replica.change(fn, message).result as T; emitter.emit('changed'); return r },
    on: (e: 'changed', fn: () => void) => emitter.on(e, fn),
    off: (e: 'changed', fn: () => void) => emitter.off(e, fn)
  }
  // no 2 s note falls between the volume's making and its destroy here (they take about 2 s)
  const svcs = await startServices(grid, { state, members: doc.members }, { freeAfterMs: 0, noteEveryMs: 600_000 })
  const api = apiOf(svcs[0]!)
  const id: string = (await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/r/quick', size: 12 * OBJ } })).json().id
  await fill(grid, 'r/quick', 0x71)
  t.true((await svcs[2]!.store.list(id)).length > 0, 'node 2 holds some of its objects')
  await new Promise(resolve => setTimeout(resolve, 300))
  t.is((await api.inject({ method: 'DELETE', url: `/v1/volumes/${id}` })).statusCode, 200)
  for (const s of svcs) await s.reconcile()
  t.false((await svcs[2]!.store.volumes()).includes(id), 'its copies are freed')
})
