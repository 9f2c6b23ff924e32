// Object versions across replicas (versions.ts): a holder that comes back after
// missing writes, or that a write failed on while later ones landed, never serves its
// old copy; the writer, a reader and repair each bring it the newest one.
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { planSettle } from '../../node/gvs/versions.ts'
import { silentLogger } from '../../node/log.ts'
import { memoryHosts } from './hosts.ts'

const MiB = 1024 * 1024
const SIZE = 16 * MiB
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

interface Node { id: string, store: ObjectStore, svc: ReplicaService }

async function grid (t: ExecutionContext, n: number, tag: string): Promise<Node[]> {
  const { dir, hosts } = await memoryHosts(t, n, tag)
  const nodes: Node[] = []
  t.teardown(async () => { for (const x of nodes) { await x.svc.stop(); await x.store.stop() } })
  for (const [i, host] of hosts.entries()) {
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`) })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 30_000 })
    await svc.start()
    nodes.push({ id: host.peerId.toString(), store, svc })
  }
  return nodes
}

/** a volume as one node sees it, over the nodes it takes to be live */
function volume (transport: ReplicaTransport, live: () => string[], epoch = 1): ReplicatedVolume {
  const holders = (key: string, r: number): string[] => new Placement(live().map(id => ({ id, weight: 1 }))).holders(key, r)
  return new ReplicatedVolume({ transport, holders, nodes: live }, { volume: 'vol', size: SIZE, replicas: 2, epoch })
}

test('planSettle: the newest copy is the source; older, absent and suspect holders get it; silent nodes are left out', t => {
  const v = (epoch: number, seq: number): { epoch: number, seq: number } => ({ epoch, seq })
  t.deepEqual(planSettle(['a', 'b'], [{ node: 'a', present: true, version: v(1, 9) }, { node: 'b', present: true, version: v(1, 4) }, { node: 'c', present: true, version: v(1, 9) }]),
    { newest: v(1, 9), sources: ['a', 'c'], lacking: [{ node: 'b', replace: false }] })
  // a holder away while a newer writer wrote elsewhere: the other node is the source
  t.deepEqual(planSettle(['a', 'b'], [{ node: 'a', present: true, version: v(1, 9) }, { node: 'b', present: false, version: v(0, 0) }, { node: 'c', present: true, version: v(2, 1) }]),
    { newest: v(2, 1), sources: ['c'], lacking: [{ node: 'a', replace: false }, { node: 'b', replace: false }] })
  // equal versions, but a write failed on b: a is the source, b is replaced whatever it says
  t.deepEqual(planSettle(['a', 'b'], [{ node: 'a', present: true, version: v(1, 9) }, { node: 'b', present: true, version: v(1, 9) }], new Set(['b'])),
    { newest: v(1, 9), sources: ['a'], lacking: [{ node: 'b', replace: true }] })
  // nobody has it: thin, nothing to do; b did not answer: neither source nor lacking
  t.deepEqual(planSettle(['a', 'b'], [{ node: 'a', present: false, version: v(0, 0) }]), { newest: v(0, 0), sources: [], lacking: [] })
  t.deepEqual(planSettle(['a', 'b'], [{ node: 'a', present: true, version: v(1, 2) }]), { newest: v(1, 2), sources: ['a'], lacking: [] })
})

test('a holder back from missing writes never serves its old copy: reads find the newest, a write brings it there, repair too', async t => {
  const nodes = await grid(t, 3, 'gvsver')
  const all = nodes.map(n => n.id)
  const old = randomBytes(SIZE)
  await volume(nodes[0]!.svc, () => all).write(0, old, false)
  // a node is cut off: the others take it for dead and write on without it. It is the
  // one of nodes 1 and 2 holding more objects (every object is on one of them at least)
  const placed = new Placement(all.map(id => ({ id, weight: 1 })))
  const count = (n: Node): number => [0, 1, 2, 3].filter(i => placed.holders(objectKey('vol', i), 2).includes(n.id)).length
  const [away, other] = count(nodes[1]!) >= count(nodes[2]!) ? [nodes[1]!, nodes[2]!] : [nodes[2]!, nodes[1]!]
  const without = all.filter(id => id !== away.id)
  const now = randomBytes(SIZE)
  const writer = volume(nodes[0]!.svc, () => without)
  await writer.write(0, now, false)
  await writer.flush()
  const itsObjects = [0, 1, 2, 3].filter(i => placed.holders(objectKey('vol', i), 2).includes(away.id))
  t.true(itsObjects.length > 0, 'the cut-off node holds some objects when all are live')
  for (const i of itsObjects) t.true(same((await away.store.readObject('vol', i))!.data, old.subarray(i * 4 * MiB, (i + 1) * 4 * MiB)), `the cut-off node still has the old copy of object ${i}`)
  // it is back: placement names it again. A reader on it, which would read its own copy first, reads the newest
  t.true(same(await volume(away.svc, () => all).read(0, SIZE), now), 'read on the returned holder')
  t.true(same(await volume(other.svc, () => all).read(0, SIZE), now), 'read on another node')
  t.deepEqual((await new Repairer({ transport: other.svc, holders: (k, r) => new Placement(all.map(id => ({ id, weight: 1 }))).holders(k, r), nodes: () => all }, { volume: 'vol', replicas: 2 }).inventory()).stale,
    new Map(itsObjects.map(i => [i, [away.id]])), 'the inventory says which copies are stale')
  // a write of one byte per object settles it first: the returned holder gets the whole newest object
  const back = volume(other.svc, () => all)
  await back.write(itsObjects[0]! * 4 * MiB, now.subarray(itsObjects[0]! * 4 * MiB, itsObjects[0]! * 4 * MiB + 1), false)
  const o = itsObjects[0]!
  t.true(same((await away.store.readObject('vol', o))!.data, now.subarray(o * 4 * MiB, (o + 1) * 4 * MiB)), 'the write brought the newest copy first')
  // repair brings the rest
  const report = await new Repairer({ transport: other.svc, holders: (k, r) => new Placement(all.map(id => ({ id, weight: 1 }))).holders(k, r), nodes: () => all }, { volume: 'vol', replicas: 2, bytesPerSecond: 0 }).run()
  t.is(report.failed, 0, report.errors.join('; '))
  t.is(report.health, 'healthy')
  for (const i of itsObjects) t.true(same((await away.store.readObject('vol', i))!.data, now.subarray(i * 4 * MiB, (i + 1) * 4 * MiB)), `object ${i} is the newest on the returned node`)
  t.true(same(await volume(away.svc, () => all).read(0, SIZE), now))
})

test('a holder a write failed on, while a later write of the object landed there, is brought back in step', async t => {
  const nodes = await grid(t, 2, 'gvssus')
  const all = nodes.map(n => n.id)
  const base = randomBytes(4 * MiB)
  await volume(nodes[0]!.svc, () => all).write(0, base, false)
  // one request to node 1 is lost: the first write of the range [0, 64 KiB)
  let lost = 0
  const lossy: ReplicaTransport = {
    self: nodes[0]!.svc.self,
    call: async (peer, req, data) => {
      if (peer === nodes[1]!.id && req.op === 'write' && req.offset === 0 && lost++ === 0) throw new GvsError('io', 'lost on the way (test)')
      return await nodes[0]!.svc.call(peer, req, data)
    }
  }
  const writer = volume(lossy, () => all)
  const a = randomBytes(64 * 1024)
  const b = randomBytes(64 * 1024)
  const results = await Promise.allSettled([writer.write(0, a, false), writer.write(1 * MiB, b, false)])
  t.is(results[0].status, 'rejected', 'the write that was lost on a holder fails')
  t.is(results[1].status, 'fulfilled')
  const v0 = await nodes[0]!.store.stat('vol', 0)
  const v1 = await nodes[1]!.store.stat('vol', 0)
  t.deepEqual(v0.version, v1.version, 'the later write gave both the same version, though node 1 missed one')
  // the writer puts node 1 back in step on its own
  const start = Date.now()
  while (Date.now() - start < 10_000 && !same((await nodes[1]!.store.readObject('vol', 0))!.data, (await nodes[0]!.store.readObject('vol', 0))!.data)) await new Promise(resolve => setTimeout(resolve, 50))
  t.true(same((await nodes[1]!.store.readObject('vol', 0))!.data, (await nodes[0]!.store.readObject('vol', 0))!.data), 'both copies alike')
  // and writes go on: both copies take the next one
  await writer.write(0, a, false)
  const want = Buffer.from(base)
  want.set(a, 0)
  want.set(b, 1 * MiB)
  for (const n of nodes) t.true(same((await n.store.readObject('vol', 0))!.data, want), `node ${n.id.slice(-4)} has every write`)
})

test('a holder a write failed on that then stops answering is left plainly behind: a writer with no memory of it, or a reader, never takes its copy', async t => {
  const nodes = await grid(t, 2, 'gvscut')
  const all = nodes.map(n => n.id)
  const base = randomBytes(4 * MiB)
  await volume(nodes[0]!.svc, () => all).write(0, base, false)
  // node 1 misses the first write of [0, 64 KiB), takes the one at 1 MiB, then is cut off
  let lost = 0
  let cut = false
  const lossy: ReplicaTransport = {
    self: nodes[0]!.svc.self,
    call: async (peer, req, data) => {
      if (peer === nodes[1]!.id) {
        if (cut) throw new GvsError('unavailable', 'cut off (test)')
        if (req.op === 'write' && req.offset === 0 && lost++ === 0) throw new GvsError('io', 'lost on the way (test)')
        // the later write lands, then node 1 is cut off
        if (req.op === 'write' && req.offset === 1 * MiB) { const r = await nodes[0]!.svc.call(peer, req, data); cut = true; return r }
      }
      return await nodes[0]!.svc.call(peer, req, data)
    }
  }
  const a = randomBytes(64 * 1024)
  const b = randomBytes(64 * 1024)
  const writer = volume(lossy, () => all)
  // the write at 0 (the lower sequence number) fails on node 1, the one at 1 MiB lands there
  const results = await Promise.allSettled([writer.write(0, a, false), writer.write(1 * MiB, b, false)])
  t.is(results[0].status, 'rejected')
  t.is(results[1].status, 'fulfilled')
  // while node 1 does not answer, the writer marks the copy it still reaches as newer
  const start = Date.now()
  const ahead = async (): Promise<boolean> => (await nodes[0]!.store.stat('vol', 0)).version.seq > (await nodes[1]!.store.stat('vol', 0)).version.seq
  while (Date.now() - start < 10_000 && !(await ahead())) await new Promise(resolve => setTimeout(resolve, 50))
  t.true(await ahead(), 'node 0 is a version ahead of node 1')
  // node 1 answers again; a reader and a writer that know nothing of the failure both go by the versions
  const want = Buffer.from(base)
  want.set(a, 0)
  want.set(b, 1 * MiB)
  t.true(same((await nodes[0]!.store.readObject('vol', 0))!.data, want))
  t.true(same(await volume(nodes[1]!.svc, () => all).read(0, 4 * MiB), want), 'read on node 1 comes from node 0')
  await volume(nodes[1]!.svc, () => all, 2).write(3 * MiB, new Uint8Array(1), false)
  want[3 * MiB] = 0
  for (const n of nodes) t.true(same((await n.store.readObject('vol', 0))!.data, want), `node ${n.id.slice(-4)} has every write`)
})

test('a holder that stops answering while membership still lists it fails writes of its objects as unavailable, never taken as in step; once dropped, writes go to the new holders and its copy stays behind', async t => {
  const nodes = await grid(t, 3, 'gvswin')
  const all = nodes.map(n => n.id)
  const placed = new Placement(all.map(id => ({ id, weight: 1 })))
  const away = nodes.find(n => n !== nodes[0] && placed.holders(objectKey('vol', 0), 2).includes(n.id))!
  let cut = false
  const lossy: ReplicaTransport = {
    self: nodes[0]!.svc.self,
    call: async (peer, req, data) => {
      if (cut && peer === away.id) throw new GvsError('unavailable', 'cut off (test)')
      return await nodes[0]!.svc.call(peer, req, data)
    }
  }
  let live = all
  const writer = volume(lossy, () => live)
  const want = Buffer.from(randomBytes(4 * MiB))
  await writer.write(0, want, false)
  const a = randomBytes(4096)
  const b = randomBytes(4096)
  await writer.write(0, a, false)
  want.set(a, 0)
  // the node is cut off; membership has not noticed yet
  cut = true
  const first = await t.throwsAsync(writer.write(4096, b, false))
  t.regex(first?.message ?? '', /failed the write/)
  const again = await t.throwsAsync(writer.write(4096, b, false), { instanceOf: GvsError })
  t.is(again?.code, 'unavailable', 'the next write does not settle without the silent holder')
  t.regex(again?.message ?? '', /not saying which copy they have: cut off/)
  // membership drops it: the object moves to a new holder, and the write goes there
  live = all.filter(id => id !== away.id)
  await writer.write(4096, b, false)
  want.set(b, 4096)
  await writer.flush()
  for (const id of live) {
    const n = nodes.find(x => x.id === id)!
    t.true(same((await n.store.readObject('vol', 0))!.data, want), `holder ${id.slice(-4)} has every write`)
  }
  // it answers again and is a holder again: its copy is behind, never served, and a write brings it the newest
  cut = false
  live = all
  const keeper = nodes.find(n => n !== away && placed.holders(objectKey('vol', 0), 2).includes(n.id))!
  const newest = (await keeper.store.stat('vol', 0)).version
  t.true((await away.store.stat('vol', 0)).version.seq < newest.seq, 'its copy is plainly behind')
  t.true(same(await volume(away.svc, () => all).read(0, 4 * MiB), want), 'a read on it finds the newest copy')
  await volume(away.svc, () => all, 2).write(8192, new Uint8Array(1), false)
  want[8192] = 0
  for (const id of placed.holders(objectKey('vol', 0), 2)) t.true(same((await nodes.find(x => x.id === id)!.store.readObject('vol', 0))!.data, want), `holder ${id.slice(-4)} has every write`)
})

test('a reader whose holders went away and came back while another node wrote reads the newest copy, not its own old one; the next write does not reuse a version', async t => {
  // issue 15 review: node A wrote while C was away; C came back and wrote through its own
  // export; C went again. A's holders read as before (A and B), but A's copy is the old one
  const nodes = await grid(t, 3, 'gvsgen')
  const [a, b, c] = nodes as [Node, Node, Node]
  const all = [a.id, b.id, c.id]
  const withoutC = [a.id, b.id]
  // an object that C and B hold when all are live (so C's writes skip A)
  const placed = new Placement(all.map(id => ({ id, weight: 1 })))
  const index = [0, 1, 2, 3].find(i => !placed.holders(objectKey('vol', i), 2).includes(a.id))
  if (index == null) { t.pass('every object has A among its holders: nothing to show with this placement'); return }
  const at = index * 4 * MiB
  // A's view of the live nodes, and its placement generation, as the service keeps them
  let live = withoutC
  let generation = 0
  const holders = (key: string, r: number): string[] => new Placement(live.map(id => ({ id, weight: 1 }))).holders(key, r)
  const onA = new ReplicatedVolume({ transport: a.svc, holders, nodes: () => live, generation: () => generation }, { volume: 'vol', size: SIZE, replicas: 2, epoch: 1 })
  const first = randomBytes(4096)
  await onA.write(at, first, false)
  t.true(same(await onA.read(at, 4096), first))
  // C is back (A's membership says so: a new generation), and writes through its own export
  live = all
  generation++
  const second = randomBytes(4096)
  const onC = volume(c.svc, () => all)
  await onC.write(at, second, false)
  await onC.flush()
  // C is gone again: A's holders are A and B as before, and A still has the first data
  live = withoutC
  generation++
  t.true(same((await a.store.readObject('vol', index))!.data.subarray(0, 4096), first), 'A\'s own copy is the old one')
  t.true(same(await onA.read(at, 4096), second), 'A reads the newest copy (on B), not its own')
  // and A's next write comes after C's: every copy the holders keep carries a version above it
  const third = randomBytes(4096)
  await onA.write(at, third, false)
  const versions = await Promise.all([a, b].map(async n => (await n.store.readObject('vol', index))!.version))
  const cVersion = (await c.store.readObject('vol', index))!.version
  for (const v of versions) t.true(v.epoch > cVersion.epoch || (v.epoch === cVersion.epoch && v.seq > cVersion.seq), `A's write is versioned after C's (${JSON.stringify(v)} vs ${JSON.stringify(cVersion)})`)
  t.true(same(await volume(b.svc, () => withoutC).read(at, 4096), third))
})
