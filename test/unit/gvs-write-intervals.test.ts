// Where a volume's writes went (node/gvs/write-intervals.ts): the pure record, then a
// volume over real object stores in one process whose newest copies are only on nodes
// that went: without the record the nodes left serve an older copy (or zeros) as the
// newest (the defect this guards against); with it a read, a write and a repair fail as
// unavailable, naming them, until one is back. Then the writer's side
// (write-interval-records.ts) on a real document.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { volumeHealth } from '../../node/gvs/health.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { WriteIntervalRecords } from '../../node/gvs/write-interval-records.ts'
import {
  activeIntervals, afterRepair, forgetInIntervals, holdersIn, intervalKey, needsRecord, unheard, unheardObjects, withInterval, CLEAR_SLACK_MS, type IntervalNode, type WriteInterval
} from '../../node/gvs/write-intervals.ts'
import { Replica, syncPair } from '../../crdt/index.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const ns = (...ids: string[]): IntervalNode[] => ids.map(id => ({ id, weight: 10 }))

test('the record: one key per node set and weights; the writer must be in the newest; a healthy repair clears what was recorded before it and its placement is in force instead', t => {
  t.is(intervalKey(ns('B', 'A')), intervalKey(ns('A', 'B')))
  t.not(intervalKey(ns('A', 'B')), intervalKey([{ id: 'A', weight: 10 }, { id: 'B', weight: 11 }]), 'a weight changes placement')
  const one = { writeIntervals: withInterval(undefined, ns('B', 'A'), 1000) }
  t.deepEqual(Object.values(one.writeIntervals), [{ nodes: ns('A', 'B'), at: 1000 }])
  t.true(needsRecord(one, ns('A', 'B'), false), 'never confirmed from this node: asked again')
  t.false(needsRecord(one, ns('A', 'B'), true))
  const two = { writeIntervals: withInterval(one, ns('A', 'B', 'C'), 1000) }
  t.is(two.writeIntervals[intervalKey(ns('A', 'B', 'C'))]!.at, 1001, 'a later interval is the newer, whatever the clock')
  t.true(needsRecord(two, ns('A', 'B'), true), 'back in an older placement: recorded again as the newest')
  t.is(afterRepair(two, ns('A', 'C'), 1000 + CLEAR_SLACK_MS, 9000), null, 'everything recorded too lately (writes may have been in flight): nothing cleared')
  const r = afterRepair(two, ns('C', 'A'), 1002 + CLEAR_SLACK_MS, 9000)!
  t.deepEqual(r, { writeIntervalsClearedBefore: 1002, writeIntervalsRepaired: { nodes: ns('A', 'C'), at: 9000 } })
  const after = { ...two, ...r }
  t.deepEqual(Object.values(activeIntervals(after)), [{ nodes: ns('A', 'C'), at: 9000 }], 'only the repaired placement is in force')
  t.false(needsRecord(after, ns('A', 'C'), true), 'a writer that confirmed it writes on')
  t.true(needsRecord(after, ns('A', 'B', 'C'), true))
  t.is(afterRepair(after, ns('A', 'C'), 1e9, 1e9), null, 'nothing older left to clear')
})

test('an object is heard in an interval when one of its holders there answers; fewer nodes than R hold every object; a node given up is not waited for', t => {
  const s: WriteInterval = { nodes: ns('A', 'B', 'C', 'D'), at: 1 }
  const hs = holdersIn(s, 'vol', 7, 2)
  t.deepEqual(hs, new Placement(ns('A', 'B', 'C', 'D')).holders(objectKey('vol', 7), 2))
  t.deepEqual(unheard([s], 'vol', 7, 2, n => n === hs[0]), [])
  t.deepEqual(unheard([s], 'vol', 7, 2, n => !hs.includes(n)), [hs])
  t.deepEqual(holdersIn({ nodes: ns('A', 'B'), at: 1 }, 'vol', 7, 3).sort(), ['A', 'B'])
  t.deepEqual(unheard([{ ...s, lost: hs }], 'vol', 7, 2, () => false), [], 'both given up: its writes too')
  // one given up, the other down: unheard, unless the one given up is back and answers (bb18: its whole copies were passed over)
  const oneLost = { ...s, lost: [hs[0]!] }
  t.deepEqual(unheard([oneLost], 'vol', 7, 2, () => false), [[hs[1]!]])
  t.deepEqual(unheard([oneLost], 'vol', 7, 2, n => n === hs[0]), [], 'the node given up, back, counts again')
})

/** object stores named by node, in one process; calls to nodes not in `live` fail as a dead node's would */
async function grid (t: ExecutionContext, names: string[], self: string): Promise<{ stores: Record<string, ObjectStore>, transport: ReplicaTransport, live: Set<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-iv-'))
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

/** a volume over the live nodes, placed as the service places it, recording its intervals in `rec` when `withRecord` */
function volumeOver (transport: ReplicaTransport, live: Set<string>, all: string[], R: number, minReplicas: number, rec: { v: Record<string, WriteInterval> }, withRecord: boolean, retryMs?: number, downSince?: (node: string) => number | undefined): ReplicatedVolume {
  const nodes = (): string[] => all.filter(n => live.has(n))
  return new ReplicatedVolume({
    transport,
    ...(downSince != null ? { downSince } : {}),
    holders: (key, r) => new Placement(ns(...nodes())).holders(key, r),
    nodes,
    generation: () => nodes().length,
    ...(withRecord ? { intervals: () => Object.values(rec.v), beforeWrite: async () => { rec.v = withInterval({ writeIntervals: rec.v }, ns(...nodes()), Date.now()); return nodes().length } } : {})
  }, { volume: 'v', size: 8 * MiB, replicas: R, minReplicas, epoch: 1, ...(retryMs != null ? { retryMs } : {}) })
}

test('writes kept on A and B only (R=3, minReplicas 1): with both gone, C does not serve its older copy, nor write over it, nor spread it', async t => {
  const all = ['A', 'B', 'C']
  const { transport, live } = await grid(t, all, 'C')
  const rec = { v: {} as Record<string, WriteInterval> }
  await volumeOver(transport, live, all, 3, 1, rec, true).write(0, fill(1), true)
  live.delete('C')
  await volumeOver(transport, live, all, 3, 1, rec, true).write(0, fill(2), true)
  t.is(Object.keys(rec.v).length, 2, 'two intervals: all three, then A and B')
  live.clear(); live.add('C')
  t.is((await volumeOver(transport, live, all, 3, 1, rec, false).read(0, 4096))[0], 1, 'without the record: C\'s older copy, read as the newest (the defect)')
  const guarded = volumeOver(transport, live, all, 3, 1, rec, true)
  await t.throwsAsync(guarded.read(0, 4096), { instanceOf: GvsError, message: /its writes went to .*A and B.*none of them answers/ })
  await t.throwsAsync(guarded.write(0, fill(3), true), { instanceOf: GvsError, message: /A and B/ })
  const repair = await new Repairer({ transport, holders: (key, r) => new Placement(ns('C')).holders(key, r), nodes: () => ['C'], intervals: () => Object.values(rec.v) }, { volume: 'v', replicas: 3, objects: 2 }).run()
  t.is(repair.health, 'degraded')
  t.like(repair, { total: 2, done: 2, failed: 2, bytes: 0 }, 'nothing copied: each object counts as one failed copy (object 1 too, found nowhere: it may have been written on A and B)')
  t.regex(repair.errors.join(), /object 0 is not repaired: its writes went to .*A and B/)
  live.add('B')
  t.is((await volumeOver(transport, live, all, 3, 1, rec, true).read(0, 4096))[0], 2, 'B is back: the newest copy, from B')
})

test('R=2 on five nodes, both holders of an object die: the three left (a majority) answer neither zeros nor an older copy for it', async t => {
  const all = ['A', 'B', 'C', 'D', 'E']
  const { stores, transport, live } = await grid(t, all, 'E')
  const rec = { v: {} as Record<string, WriteInterval> }
  // object 0's holders over all five, and a third node that held it before (an older copy left there)
  const hs = new Placement(ns(...all)).holders(objectKey('v', 0), 2)
  const other = all.find(n => !hs.includes(n) && n !== 'E')!
  await stores[other]!.write('v', 0, 0, fill(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  await volumeOver(transport, live, all, 2, 2, rec, true).write(0, fill(2), true)
  for (const h of hs) live.delete(h)
  t.is((await volumeOver(transport, live, all, 2, 2, rec, false).read(0, 4096))[0], 1, 'without the record: the older copy (the defect)')
  await t.throwsAsync(volumeOver(transport, live, all, 2, 2, rec, true).read(0, 4096), { instanceOf: GvsError, message: /none of them answers/ })
  live.add(hs[1]!)
  t.is((await volumeOver(transport, live, all, 2, 2, rec, true).read(0, 4096))[0], 2)
})

test('R=2 on five nodes, both holders of an object that only they ever held die: a repair by the three left does not call the volume healthy (nor clear the record), and reads stay unavailable, not zeros', async t => {
  const all = ['A', 'B', 'C', 'D', 'E']
  const { transport, live } = await grid(t, all, 'E')
  const rec = { v: {} as Record<string, WriteInterval> }
  const hs = new Placement(ns(...all)).holders(objectKey('v', 0), 2)
  await volumeOver(transport, live, all, 2, 2, rec, true).write(0, fill(7), true)
  for (const h of hs) live.delete(h)
  const left = all.filter(n => !hs.includes(n))
  // no node left holds any copy of object 0: it is in no inventory (the tester's 2 + 3 split)
  const repair = await new Repairer({ transport, holders: (key, r) => new Placement(ns(...left)).holders(key, r), nodes: () => left, intervals: () => Object.values(rec.v) }, { volume: 'v', replicas: 2, objects: 2 }).run()
  t.is(repair.health, 'degraded', 'not healthy: so the record is not cleared (repair-runs clears it only after a healthy repair)')
  t.true(repair.failed >= 1, 'object 0 counts as a failed copy')
  t.regex(repair.errors.join(), /object 0 is not repaired: its writes went to .*none of them answers/)
  t.true((repair.unavailable ?? 0) >= 1, 'counted as unavailable, not merely a copy short')
  const repairer = new Repairer({ transport, holders: (key, r) => new Placement(ns(...left)).holders(key, r), nodes: () => left, intervals: () => Object.values(rec.v) }, { volume: 'v', replicas: 2, objects: 2 })
  t.true((await repairer.unavailable(left))!.includes(0), 'and by what the volume\'s state asks before any repair ran')
  t.deepEqual(await repairer.unavailable(all), [], 'with every node answering: none')
  t.regex(repair.unavailableWhy ?? '', /^volume "v" object 0 is not repaired: its writes went to /)
  // what the volume's state says of it: unreadable, not one copy short
  const h = volumeHealth({ replicas: 2, minReplicas: 2, live: new Set(left), copies: [], repair: null, lastRepair: { node: left[0]!, at: 1, copied: 0, failed: repair.failed, bytes: 0, lost: 0, unavailable: repair.unavailable, unavailableWhy: repair.unavailableWhy } })
  t.is(h.state, 'degraded')
  t.regex(h.reasons.join('\n'), /^\d+ objects? (is|are) unavailable, unreadable and not written until a node that took (its|their) writes returns: volume "v" object 0 is not repaired.*\(vgrid node forget of a node gone for good gives its writes up\)$/m)
  t.false(h.reasons.some(r => /could not make/.test(r)), 'no other failure to report')
  await t.throwsAsync(volumeOver(transport, live, all, 2, 2, rec, true).read(0, 4096), { instanceOf: GvsError, message: /none of them answers/ }, 'unavailable, not zeros')
  await t.throwsAsync(volumeOver(transport, live, all, 2, 2, rec, true).write(4096, fill(8).subarray(0, 4096), true), { instanceOf: GvsError, message: /none of them answers/ }, 'nor written over')
  // gone for a moment (both restarting, one after the other): a read waits for one of
  // them, up to the retry time, and gets the acknowledged data (it failed at once)
  const waiting = volumeOver(transport, live, all, 2, 2, rec, true, 10_000).read(0, 4096)
  setTimeout(() => { live.add(hs[0]!) }, 300)
  t.is((await waiting)[0], 7, 'a holder is back: the acknowledged data')
})

test('unheardObjects: only intervals with at least R nodes down are searched, and an object counts when all its holders there are down (a node given up excepted)', async t => {
  const iv: WriteInterval = { nodes: ns('A', 'B', 'C', 'D', 'E'), at: 1 }
  const answered = (up: string[]) => (n: string): boolean => up.includes(n)
  t.deepEqual(await unheardObjects([iv], 'v', 64, 2, answered(['A', 'B', 'C', 'D'])), [], 'one node down, R=2: no object has both holders down')
  const down = await unheardObjects([iv], 'v', 64, 2, answered(['A', 'B', 'C']))
  const expect = Array.from({ length: 64 }, (_, i) => i).filter(i => holdersIn(iv, 'v', i, 2).every(n => n === 'D' || n === 'E'))
  t.deepEqual(down, expect)
  t.true(down.length > 0 && down.length < 64, `some objects (${down.length} of 64) have both holders on D and E`)
  t.deepEqual(await unheardObjects([{ ...iv, lost: ['D', 'E'] }], 'v', 64, 2, answered(['A', 'B', 'C'])), [], 'both given up by a forget: not waited for')
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

const records = (r: Replica, alive: Set<string>, nodes: IntervalNode[]): WriteIntervalRecords => new WriteIntervalRecords({
  self: ID.A,
  log: silentLogger,
  state: { read: () => r.read(), write: async (fn, m) => r.change(fn, m).result, heads: () => r.heads() },
  alive: n => alive.has(n),
  nameOf: n => n.slice(0, 1),
  generation: () => nodes.length,
  nodes: () => nodes
})

test('the writer records its interval in the document; without a majority holding it the write waits, and no volume is read without a majority', async t => {
  const solo = doc([ID.A])
  await records(solo, new Set(), ns(ID.A)).before('V')
  t.deepEqual(Object.values(activeIntervals(solo.read().get('volumes', 'V')!.value)).map(s => s.nodes), [ns(ID.A)], 'a grid of one: itself is the majority')
  // three members, B alive but not asked (no host here): the record is written, the write refused, transient
  const three = doc([ID.A, ID.B, ID.C])
  const rs = records(three, new Set([ID.B]), ns(ID.A, ID.B))
  const err = await t.throwsAsync(rs.before('V'), { instanceOf: GvsError, message: /not written: a write needs a majority of the grid's 3 members to hold the record of where it goes, and 1 does \(B: cannot be asked from here\)/ })
  t.true(err!.transient)
  t.is(rs.intervals('V').length, 1, 'kept: stricter reads, never laxer')
  // alone of three: no volume is read or written here at all, and no one is asked
  const alone = records(three, new Set(), ns(ID.A))
  t.throws(() => alone.intervals('V'), { instanceOf: GvsError, message: /volume "\/t\/v": this node sees 1 of the grid's 3 members \(no majority\), so it cannot tell whether its copies are the newest/ })
  await t.throwsAsync(alone.before('V'), { message: /and 1 does \(0 other members are alive\)/ })
  // forgetting B: given up in every interval; where it was an object's last holder, the volume is named
  const lost = three.change(w => forgetInIntervals(w, ID.B, 4 * MiB)).result
  t.deepEqual(lost, [], 'A still holds every object of both intervals')
  three.change(w => { w.update('volumes', 'V', { writeIntervals: withInterval(undefined, ns(ID.B), 5) }) })
  t.deepEqual(three.change(w => forgetInIntervals(w, ID.B, 4 * MiB)).result, ['/t/v'], 'B alone took writes')
  t.deepEqual(Object.values(activeIntervals(three.read().get('volumes', 'V')!.value))[0]!.lost, [ID.B])
  // recorded on the volume for good (vol info says so after repairs made it healthy)
  t.like(three.read().get('volumes', 'V')!.value.writesGivenUp, [{ node: ID.B, name: ID.B }])
})

test('without a majority, but with one once the members away under confirmed restart graces are back: reads and writes are refused as before, saying until when they wait (GvsError.until: the later grace\'s end)', async t => {
  const three = doc([ID.A, ID.B, ID.C])
  const since = Date.now() - 1000
  three.change(w => { w.update('roll', ID.C, { restart: { fenceMs: 35_000, since, confirmed: true } }) })
  // B dead, C away: A and C's lent vote are 2 of 3
  const err3 = t.throws(() => records(three, new Set(), ns(ID.A)).intervals('V'), { instanceOf: GvsError, message: /sees 1 of the grid's 3 members \(no majority\)/ })
  // the grace itself: its watchdog's 3/5 of the fence the record holds (the others wait the fence)
  t.is(err3?.until, since + 21_000)
  // a grace not confirmed by every member lends nothing: nothing to wait for
  three.change(w => { w.update('roll', ID.C, { restart: { fenceMs: 35_000, since, confirmed: false } }) })
  t.is((t.throws(() => records(three, new Set(), ns(ID.A)).intervals('V')) as GvsError | undefined)?.until, undefined)
  // a grid of four, A and B alive, C and D away under graces: the later end
  const four = doc([ID.A, ID.B, ID.C, 'Dnode'])
  four.change(w => {
    w.update('roll', ID.C, { restart: { fenceMs: 35_000, since, confirmed: true } })
    w.update('roll', 'Dnode', { restart: { fenceMs: 35_000, since: since + 500, confirmed: true } })
  })
  const err4 = t.throws(() => records(four, new Set([ID.B]), ns(ID.A, ID.B)).intervals('V'), { instanceOf: GvsError, message: /sees 2 of the grid's 4 members \(no majority\)/ })
  t.is(err4?.until, since + 500 + 21_000)
  // and says so where health and vol ls show why (bb18: "refuses every read and write" meanwhile)
  t.regex(records(four, new Set([ID.B]), ns(ID.A, ID.B)).noMajority() ?? '', /no majority\); members away for a restart under confirmed graces are due back within (19|20|21) s, and reads and writes wait for them until then$/)
})

test('an object whose every holder has been out of reach longer than the retry time fails a write and a read at once, not after another 20 s (bb19)', async t => {
  const all = ['A', 'B', 'C']
  const hs = new Placement(ns(...all)).holders(objectKey('v', 0), 2)
  // the writer's node holds no copy of object 0
  const self = all.find(n => !hs.includes(n))!
  const { transport: base } = await grid(t, all, self)
  const rec = { v: {} as Record<string, WriteInterval> }
  const live = new Set(all)
  await volumeOver(base, live, all, 2, 2, rec, true).write(0, fill(1), true)
  // cut off from both holders for a minute already; membership still holds them alive
  const since = Date.now() - 60_000
  const transport: ReplicaTransport = {
    self,
    call: async (peer, req, data) => {
      if (hs.includes(peer)) throw new GvsError('unavailable', `replica ${peer} is out of reach from this node for 60 s (test)`, { transient: true, since })
      return await base.call(peer, req, data)
    }
  }
  const v = volumeOver(transport, live, all, 2, 2, rec, true, 20_000)
  let t0 = Date.now()
  await t.throwsAsync(v.read(0, 4096), { instanceOf: GvsError, message: /none of them answers|out of reach/ })
  t.true(Date.now() - t0 < 5000, `the read failed at once (${Date.now() - t0} ms)`)
  t0 = Date.now()
  await t.throwsAsync(v.write(0, fill(2), true), { instanceOf: GvsError })
  t.true(Date.now() - t0 < 5000, `the write failed at once (${Date.now() - t0} ms)`)
})

test('writes given up are kept for every node forgotten, one after another or on two nodes at once (bb18: vol info listed only the last)', t => {
  const a = doc([ID.A, ID.B, ID.C])
  // B alone took the writes of one interval, C alone of another
  a.change(w => { w.update('volumes', 'V', { writeIntervals: withInterval({ writeIntervals: withInterval(undefined, ns(ID.B), 5) }, ns(ID.C), 6) }) })
  const b = Replica.load({ clusterId: 'c', nodeId: ID.B }, a.save())
  // each forgotten from another node's document, before either saw the other's
  t.deepEqual(a.change(w => forgetInIntervals(w, ID.B, 4 * MiB)).result, ['/t/v'])
  t.deepEqual(b.change(w => forgetInIntervals(w, ID.C, 4 * MiB)).result, ['/t/v'])
  syncPair(a, b)
  for (const r of [a, b]) t.deepEqual(r.read().get('volumes', 'V')!.value.writesGivenUp?.map(g => g.node).sort(), [ID.B, ID.C])
  // and one more after: all three
  a.change(w => { w.update('volumes', 'V', { writeIntervals: withInterval(w.reader.get('volumes', 'V')!.value, ns(ID.A), 7) }) })
  t.deepEqual(a.change(w => forgetInIntervals(w, ID.A, 4 * MiB)).result, ['/t/v'])
  t.deepEqual(a.read().get('volumes', 'V')!.value.writesGivenUp?.map(g => g.node).sort(), [ID.A, ID.B, ID.C])
})

test('writes given up at the bound of 64, added on two nodes at once: both replicas keep the newest 64, both new ones in (rv26: spliced appends made one list of 65, which the schema refused)', t => {
  const a = doc([ID.A, ID.B, ID.C])
  const old = Array.from({ length: 64 }, (_, i) => ({ node: `12D3KooWOld${i}`, name: `old-${i}`, at: 1000 + i }))
  a.change(w => { w.update('volumes', 'V', { writesGivenUp: old, writeIntervals: withInterval({ writeIntervals: withInterval(undefined, ns(ID.B), 5) }, ns(ID.C), 6) }) })
  const b = Replica.load({ clusterId: 'c', nodeId: ID.B }, a.save())
  a.change(w => forgetInIntervals(w, ID.B, 4 * MiB))
  b.change(w => forgetInIntervals(w, ID.C, 4 * MiB))
  t.is(syncPair(a, b).rejected, undefined)
  for (const r of [a, b]) {
    const given = r.read().get('volumes', 'V')!.value.writesGivenUp!
    t.is(given.length, 64)
    t.true(given.some(g => g.node === ID.B) && given.some(g => g.node === ID.C))
  }
  t.is(a.read().digest(), b.read().digest())
})

test('an object whose every holder membership has held dead longer than the retry time fails a read and a write at once; one dead a moment ago is waited for (bb23: every request waited 20 s, minutes after both holders were killed)', async t => {
  const all = ['A', 'B', 'C', 'D', 'E']
  const { transport, live } = await grid(t, all, 'E')
  const rec = { v: {} as Record<string, WriteInterval> }
  const hs = new Placement(ns(...all)).holders(objectKey('v', 0), 2)
  await volumeOver(transport, live, all, 2, 2, rec, true).write(0, fill(1), true)
  for (const h of hs) live.delete(h)
  // dead (not asked: not live) for a minute
  let deadAt = Date.now() - 60_000
  const downSince = (n: string): number | undefined => hs.includes(n) ? deadAt : undefined
  const v = volumeOver(transport, live, all, 2, 2, rec, true, 20_000, downSince)
  let t0 = Date.now()
  await t.throwsAsync(v.read(0, 4096), { instanceOf: GvsError, message: /none of them answers/ })
  t.true(Date.now() - t0 < 5000, `the read failed at once (${Date.now() - t0} ms)`)
  t0 = Date.now()
  await t.throwsAsync(v.write(0, fill(2), true), { instanceOf: GvsError })
  t.true(Date.now() - t0 < 5000, `the write failed at once (${Date.now() - t0} ms)`)
  // dead a moment ago: the retry time from then (one may be back: an agent restarting)
  deadAt = Date.now()
  const soon = volumeOver(transport, live, all, 2, 2, rec, true, 1500, downSince)
  t0 = Date.now()
  await t.throwsAsync(soon.read(0, 4096), { instanceOf: GvsError })
  t.true(Date.now() - t0 >= 1000, `waited for the holders (${Date.now() - t0} ms)`)
})

test('awayForRestart: a member away under a confirmed grace, until it ends; a record of a clock far ahead holds at most the longest grace and its start-up from when this node found it away (rv36)', t => {
  const three = doc([ID.A, ID.B, ID.C])
  const now = Date.now()
  three.change(w => { w.update('roll', ID.C, { restart: { fenceMs: 35_000, since: now - 1000, confirmed: true } }) })
  const r = records(three, new Set([ID.B]), ns(ID.A, ID.B))
  t.deepEqual([...r.awayForRestart(now)], [[ID.C, now - 1000 + 21_000]])
  // its clock an hour ahead: its record says an hour
  three.change(w => { w.update('roll', ID.C, { restart: { fenceMs: 35_000, since: now + 3_600_000, confirmed: true } }) })
  const ahead = records(three, new Set([ID.B]), ns(ID.A, ID.B))
  t.is(ahead.awayForRestart(now).get(ID.C), now + 5 * 60_000 + 5000, 'capped at the longest grace and its start-up')
  t.true(ahead.awayForRestart(now + 5 * 60_000 + 4000).has(ID.C))
  t.false(ahead.awayForRestart(now + 5 * 60_000 + 5000).has(ID.C), 'and no longer once that has passed')
  t.deepEqual([...records(three, new Set([ID.B, ID.C]), ns(ID.A, ID.B, ID.C)).awayForRestart(now)], [], 'a member alive is not away')
})
