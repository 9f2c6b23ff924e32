// Writes acknowledged with fewer than R copies (node/gvs/short-writes.ts): the pure
// record, then a volume R=3, minReplicas 1 over real object stores in one process,
// written while only A and B were live; A and B go, C comes back. Without the record
// C would read its older copy as the newest (the defect this guards against); with it
// the read, a write and a repair fail as unavailable, naming A and B, until one of
// them is back. Then the writer's side (short-write-records.ts) on a real document.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { ShortWriteRecords } from '../../node/gvs/short-write-records.ts'
import {
  activeSets, clearedBefore, forgetShortWrites, planShortWrite, shortKey, unheardSets, withSet, withoutNode, CLEAR_SLACK_MS, REFRESH_MS, type ShortWrite
} from '../../node/gvs/short-writes.ts'
import { Replica } from '../../crdt/index.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

test('the record: one key per node set, refreshed while in use, cleared by a repair that began well after its last write', t => {
  t.is(shortKey(['B', 'A']), shortKey(['A', 'B', 'A']))
  t.not(shortKey(['A']), shortKey(['A', 'B']))
  const rec = { shortWrites: withSet(undefined, ['B', 'A'], 1000) }
  t.deepEqual(Object.values(rec.shortWrites), [{ nodes: ['A', 'B'], at: 1000 }])
  t.is(planShortWrite(rec, ['A', 'B'], 1000, false), 'record', 'never confirmed from this node: asked again')
  t.is(planShortWrite(rec, ['A', 'B'], 1000 + REFRESH_MS - 1, true), 'recorded')
  t.is(planShortWrite(rec, ['A', 'B'], 1000 + REFRESH_MS, true), 'refresh')
  t.is(planShortWrite(rec, ['A'], 1000, true), 'record', 'another set')
  // a repair that began right after the last write does not clear it (the write may have been in flight)
  t.is(clearedBefore(rec, 1000 + REFRESH_MS), null)
  const mark = clearedBefore(rec, 1001 + REFRESH_MS + CLEAR_SLACK_MS)
  t.is(mark, 1001)
  t.deepEqual(activeSets({ ...rec, shortClearedBefore: mark! }), {}, 'cleared')
  t.is(planShortWrite({ ...rec, shortClearedBefore: mark! }, ['A', 'B'], 1002, true), 'record', 'a cleared set is recorded (and confirmed) anew')
  t.deepEqual(Object.keys(withSet({ ...rec, shortClearedBefore: mark! }, ['C'], 2000)), [shortKey(['C'])], 'cleared sets are dropped as the next is written')
})

test('a set is heard when any of its nodes answers; a forgotten node leaves its sets, and a set left empty gives its writes up', t => {
  const rec = { shortWrites: { ...withSet(undefined, ['A', 'B'], 1), ...withSet(undefined, ['B'], 2) } }
  const sets = Object.values(activeSets(rec))
  t.deepEqual(unheardSets(sets, n => n === 'A').map(s => s.nodes), [['B']])
  t.deepEqual(unheardSets(sets, n => n === 'B'), [])
  const a = withoutNode(rec, 'A')
  t.false(a.gaveUp)
  t.deepEqual(Object.values(a.next).map(s => s.nodes), [['B']], '{A,B} without A is {B}: one set, the newer time')
  t.is(Object.values(a.next)[0]!.at, 2)
  const b = withoutNode(rec, 'B')
  t.true(b.gaveUp, 'B alone held the later writes')
  t.deepEqual(Object.values(b.next).map(s => s.nodes), [['A']])
})

/** object stores named by node, in one process; calls to nodes not in `live` fail as a dead node's would */
async function grid (t: ExecutionContext, names: string[], self: string): Promise<{ stores: Record<string, ObjectStore>, transport: ReplicaTransport, live: Set<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-short-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of names) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  const live = new Set(names)
  const transport: ReplicaTransport = {
    self,
    call: async (peer, req, data) => {
      if (!live.has(peer)) throw new GvsError('unavailable', `replica ${peer} unreachable (dead, test)`)
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  return { stores, transport, live }
}

const fill = (n: number): Uint8Array => new Uint8Array(4096).fill(n)

test('writes kept on A and B only: with both gone, C does not serve its older copy, nor write over it, nor spread it', async t => {
  const { transport, live } = await grid(t, ['A', 'B', 'C'], 'C')
  const nodes = (): string[] => ['A', 'B', 'C'].filter(n => live.has(n))
  let rec: Record<string, ShortWrite> = {}
  const recorded: string[][] = []
  const volume = (withRecord: boolean): ReplicatedVolume => new ReplicatedVolume({
    transport,
    holders: () => nodes(),
    nodes,
    generation: () => nodes().length,
    ...(withRecord ? { shortSets: () => Object.values(rec), shortWrite: async hs => { recorded.push(hs); rec = withSet({ shortWrites: rec }, hs, Date.now()) } } : {})
  }, { volume: 'v', size: 8 * MiB, replicas: 3, minReplicas: 1, epoch: 1 })
  // all three live: a full write, nothing recorded
  await volume(true).write(0, fill(1), true)
  t.deepEqual(recorded, [])
  // C dies: the next write lands on A and B only, recorded first
  live.delete('C')
  await volume(true).write(0, fill(2), true)
  t.deepEqual(recorded, [['A', 'B']])
  // A and B die, C comes back
  live.clear(); live.add('C')
  t.is((await volume(false).read(0, 4096))[0], 1, 'without the record: C\'s older copy, read as the newest (the defect)')
  const guarded = volume(true)
  await t.throwsAsync(guarded.read(0, 4096), { instanceOf: GvsError, message: /fewer than R copies while only A and B held it, and none of them answers/ })
  await t.throwsAsync(guarded.write(0, fill(3), true), { instanceOf: GvsError, message: /only A and B held it/ })
  const repair = await new Repairer({ transport, holders: () => nodes(), nodes, shortSets: () => Object.values(rec) }, { volume: 'v', replicas: 3, objects: 2 }).run()
  t.is(repair.health, 'degraded')
  t.is(repair.total, 0, 'nothing copied')
  t.regex(repair.errors.join(), /only A and B held it/)
  // B is back: the newest copy, from B
  live.add('B')
  t.is((await volume(true).read(0, 4096))[0], 2)
})

test('a write is not sent before its short record is made: a record that fails fails the write, and nothing lands', async t => {
  const { stores, transport, live } = await grid(t, ['A', 'B', 'C'], 'A')
  live.delete('C')
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'], shortWrite: async () => { throw new GvsError('unavailable', 'no majority holds the record (test)') } }, { volume: 'v', size: 8 * MiB, replicas: 3, minReplicas: 1, epoch: 1 })
  await t.throwsAsync(v.write(0, fill(9), false), { message: /no majority holds the record/ })
  for (const n of ['A', 'B']) t.false((await stores[n]!.stat('v', 0)).present, `nothing written on ${n}`)
})

const ID = { A: 'Anode', B: 'Bnode', C: 'Cnode' }

/** a document with a volume R=3 (minReplicas 1) and a roll of `roll` */
function doc (roll: string[]): Replica {
  const r = Replica.create({ clusterId: 'c', nodeId: ID.A })
  r.change(w => {
    w.put('volumes', { id: 'V', path: '/t/v', sizeBytes: 8 * MiB, replicas: 3, minReplicas: 1, state: 'ready', parent: null, snapshots: {}, epoch: 1 })
    for (const n of roll) w.put('roll', { node: n, name: n.slice(0, 1), joined: 1 })
  })
  return r
}

const records = (r: Replica, alive: Set<string>): ShortWriteRecords => new ShortWriteRecords({
  self: ID.A,
  log: silentLogger,
  state: { read: () => r.read(), write: async (fn, m) => r.change(fn, m).result, heads: () => r.heads() },
  alive: n => alive.has(n),
  nameOf: n => n.slice(0, 1)
})

test('the writer records the set in the document; without a majority holding it the write waits, and reads need a majority', async t => {
  // a grid of one: itself is the majority
  const solo = doc([ID.A])
  await records(solo, new Set()).before('V', [ID.A])
  t.deepEqual(Object.values(activeSets(solo.read().get('volumes', 'V')!.value)).map(s => s.nodes), [[ID.A]])
  // three members, B alive but not asked (no host here): the record is written, the write refused, transient
  const three = doc([ID.A, ID.B, ID.C])
  const rs = records(three, new Set([ID.B]))
  const err = await t.throwsAsync(rs.before('V', [ID.A, ID.B]), { instanceOf: GvsError, message: /waits until a majority of the grid's 3 members holds the record of where it is, and 1 does \(B: cannot be asked from here\)/ })
  t.true(err!.transient)
  t.deepEqual(rs.sets('V').map(s => s.nodes), [[ID.A, ID.B]], 'kept: stricter reads, never laxer')
  // alone of three: no volume is read or written here at all
  const alone = records(three, new Set())
  t.throws(() => alone.sets('V'), { instanceOf: GvsError, message: /volume "\/t\/v": this node sees 1 of the grid's 3 members \(no majority\), so it cannot tell whether its copies are the newest/ })
  // forgetting B gives its sets up where it was the last node of one
  three.change(w => { w.update('volumes', 'V', { shortWrites: withSet(undefined, [ID.B], 5) }) })
  const lost = three.change(w => forgetShortWrites(w, ID.B)).result
  t.deepEqual(lost, ['/t/v'])
  t.deepEqual(activeSets(three.read().get('volumes', 'V')!.value), {})
})
