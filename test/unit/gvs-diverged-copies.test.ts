// Copies of one object that hold different data under one version: a writer sends writes
// to different parts of an object at once, and one that died with two in flight can
// leave holder A with both and holder B with only the later one, both at that version
// (rv34 low). Neither write was acknowledged, so either copy is a right answer; but a VM
// disk's next writer must read the same bytes wherever it reads them (a journal replay
// would read one copy, a later read the other). Its first look at each object compares
// the copies' digests and makes them alike (versions.ts unifyPlan, settler.ts).
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import type { Diverged } from '../../node/gvs/settler.ts'
import { planSettle, unifyPlan, type CopySeen } from '../../node/gvs/versions.ts'
import { silentLogger } from '../../node/log.ts'
import { GvsError } from '../../node/gvs/errors.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)
const v = (seq: number, epoch = 1): { epoch: number, seq: number } => ({ epoch, seq })

test('unifyPlan: the first source\'s copy stands; a holder of the same version with another digest is replaced while it still has that digest, a non-holder is no source', t => {
  const seen: CopySeen[] = [
    { node: 'A', present: true, version: v(2), digest: 'aaaaaaaa' },
    { node: 'B', present: true, version: v(2), digest: 'bbbbbbbb' },
    { node: 'C', present: true, version: v(2), digest: 'bbbbbbbb' },
    { node: 'D', present: true, version: v(1), digest: 'dddddddd' }
  ]
  const plan = planSettle(['A', 'B', 'D'], seen)
  t.deepEqual(plan.lacking, [{ node: 'D', replace: false }])
  const u = unifyPlan(['A', 'B', 'D'], plan, seen)
  t.deepEqual(u.diverged, ['B', 'C'])
  t.is(u.truth, 'aaaaaaaa')
  t.deepEqual(u.plan.sources, ['A'])
  t.deepEqual(u.plan.lacking, [{ node: 'D', replace: false }, { node: 'B', replace: true, ifDigest: 'bbbbbbbb' }])
  // alike, or no digest to compare (an agent of an earlier release): the plan as it was
  const alike = seen.map(s => ({ ...s, digest: 'aaaaaaaa' }))
  t.deepEqual(unifyPlan(['A', 'B'], planSettle(['A', 'B'], alike), alike).diverged, [])
  const none = seen.map(s => ({ node: s.node, present: s.present, version: s.version }))
  const p2 = planSettle(['A', 'B'], none)
  t.is(unifyPlan(['A', 'B'], p2, none).plan, p2)
})

test('unifyPlan: the copy reads were served from stands (the guest has seen it), if it is of the newest version; a source without a digest is passed over', t => {
  const seen: CopySeen[] = [
    { node: 'A', present: true, version: v(2), digest: 'aaaaaaaa' },
    { node: 'B', present: true, version: v(2), digest: 'bbbbbbbb' },
    { node: 'C', present: true, version: v(2), digest: 'bbbbbbbb' }
  ]
  const plan = planSettle(['A', 'B', 'C'], seen)
  const u = unifyPlan(['A', 'B', 'C'], plan, seen, { version: v(2), digest: 'bbbbbbbb' })
  t.is(u.truth, 'bbbbbbbb')
  t.deepEqual(u.plan.sources, ['B', 'C'])
  t.deepEqual(u.plan.lacking, [{ node: 'A', replace: true, ifDigest: 'aaaaaaaa' }])
  // served at an older version (this writer wrote since): placement order again
  t.is(unifyPlan(['A', 'B', 'C'], plan, seen, { version: v(1), digest: 'bbbbbbbb' }).truth, 'aaaaaaaa')
  // A of an earlier release says no digest: neither the truth nor a source once copies differ (rv37)
  const mixed: CopySeen[] = [{ node: 'A', present: true, version: v(2) }, { node: 'B', present: true, version: v(2), digest: 'bbbbbbbb' }, { node: 'C', present: true, version: v(2), digest: 'cccccccc' }]
  const m = unifyPlan(['A', 'B', 'C'], planSettle(['A', 'B', 'C'], mixed), mixed)
  t.is(m.truth, 'bbbbbbbb')
  t.deepEqual(m.plan.sources, ['B'])
  t.deepEqual(m.plan.lacking, [{ node: 'C', replace: true, ifDigest: 'cccccccc' }])
})

test('a put that makes copies alike lands only over the copy compared (ifDigest): not over one a write changed since', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-ifdigest-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = new ObjectStore({ log: silentLogger }, { dir, writebackMs: 0 })
  t.teardown(async () => { await store.stop().catch(() => {}) })
  await store.start()
  await store.write('v', 0, 0, block(1), { epoch: 1, fua: false, version: v(2) })
  const compared = (await store.stat('v', 0, { digest: true })).digest!
  const copy = { data: new Uint8Array(4 * MiB).fill(9), version: v(2) }
  // a write landed since the comparison, at the same version (another device's, in flight)
  await store.write('v', 0, 4096, block(3), { epoch: 1, fua: false, version: v(2) })
  t.true(await store.put('v', 0, copy, { epoch: 1, replace: true, ifDigest: compared }), 'kept')
  t.deepEqual(await store.read('v', 0, 4096, 4096), block(3))
  // the copy as compared: replaced
  const now = (await store.stat('v', 0, { digest: true })).digest!
  t.false(await store.put('v', 0, copy, { epoch: 1, replace: true, ifDigest: now }))
  t.deepEqual(await store.read('v', 0, 4096, 4096), block(9))
  // a newer version is never replaced
  await store.write('v', 0, 0, block(4), { epoch: 1, fua: false, version: v(3) })
  t.true(await store.put('v', 0, copy, { epoch: 1, replace: true, ifDigest: (await store.stat('v', 0, { digest: true })).digest! }))
})

/** object 0 on A and B at version 1.2: A took writes 1 (block 0 = 7s) and 2 (block 2 = 9s), B only write 2 */
async function diverged (t: ExecutionContext): Promise<{ stores: Record<string, ObjectStore>, transport: ReplicaTransport }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-diverged-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const stores: Record<string, ObjectStore> = {
    A: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'A'), writebackMs: 0 }),
    B: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'B'), writebackMs: 0 })
  }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop().catch(() => {}) })
  for (const s of Object.values(stores)) await s.start()
  await stores.A!.write('v', 0, 0, block(7), { epoch: 1, fua: false, version: v(1) })
  await stores.A!.write('v', 0, 8192, block(9), { epoch: 1, fua: false, version: v(2) })
  await stores.B!.write('v', 0, 8192, block(9), { epoch: 1, fua: false, version: v(2) })
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
  return { stores, transport }
}

const device = (transport: ReplicaTransport, self: string, compareCopies: boolean, onDiverged?: (d: Diverged) => void): ReplicatedVolume =>
  new ReplicatedVolume({ transport: { ...transport, self }, holders: () => ['A', 'B'], nodes: () => ['A', 'B'], onDiverged }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 2, compareCopies })

test('a VM disk\'s next writer reads the same bytes wherever it reads them: its first read makes the copies alike, and says so', async t => {
  const { stores, transport } = await diverged(t)
  t.is((await stores.A!.stat('v', 0)).version.seq, (await stores.B!.stat('v', 0)).version.seq, 'one version')
  t.not((await stores.A!.stat('v', 0, { digest: true })).digest, (await stores.B!.stat('v', 0, { digest: true })).digest, 'different data')
  const said: Diverged[] = []
  // the writer on B reads first (its own copy would be read first)
  const onB = device(transport, 'B', true, d => said.push(d))
  const first = (await onB.read(0, 1))[0]
  t.is(said.length, 1)
  t.is(said[0]!.kept, 'A', 'the first holder\'s copy stands')
  t.deepEqual(said[0]!.replaced, ['B'])
  t.is(first, 7)
  t.deepEqual(await stores.B!.read('v', 0, 0, 4096), block(7), 'B\'s copy made alike')
  t.is((await stores.A!.stat('v', 0, { digest: true })).digest, (await stores.B!.stat('v', 0, { digest: true })).digest)
  // and a later writer on either node reads it so
  for (const self of ['A', 'B']) t.is((await device(transport, self, true).read(0, 1))[0], 7, `read on ${self}`)
  t.is(said.length, 1, 'compared once per object')
})

test('a writer\'s first write of an object makes the copies alike too; a device that does not compare (a plain export) leaves them', async t => {
  const { stores, transport } = await diverged(t)
  // not compared: each node reads its own copy
  t.is((await device(transport, 'A', false).read(0, 1))[0], 7)
  t.is((await device(transport, 'B', false).read(0, 1))[0], 0)
  const w = device(transport, 'B', true)
  await w.write(4096, block(5), false)
  t.deepEqual(await stores.B!.read('v', 0, 0, 4096), block(7))
  t.deepEqual(await stores.A!.read('v', 0, 0, 12288), await stores.B!.read('v', 0, 0, 12288))
})

test('a write that lands on a holder while the copies are being made alike stays there: the copy is not put over it (rv37)', async t => {
  const { stores, transport } = await diverged(t)
  let landed = false
  const racing: ReplicaTransport = {
    self: 'B',
    call: async (peer, req, data) => {
      // another session's write (at this epoch) reaches B between the comparison and the copy
      if (req.op === 'put' && peer === 'B' && 'ifDigest' in req && req.ifDigest != null && !landed) {
        landed = true
        await stores.B!.write('v', 0, 4096, block(3), { epoch: 1, fua: false, version: v(2) })
      }
      return await transport.call(peer, req, data)
    }
  }
  const w = device(racing, 'B', true)
  await w.read(0, 1)
  t.true(landed)
  t.deepEqual(await stores.B!.read('v', 0, 4096, 4096), block(3), 'the write that landed meanwhile is kept')
})

test('a holder silent at the first read comes back with another copy of that version: the copy the guest read stands (rv37)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-diverged3-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const stores: Record<string, ObjectStore> = {}
  for (const n of ['A', 'B', 'C']) {
    stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n), writebackMs: 0 })
    await stores[n].start()
  }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop().catch(() => {}) })
  await stores.A!.write('v', 0, 0, block(7), { epoch: 1, fua: false, version: v(1) })
  for (const n of ['A', 'B', 'C']) await stores[n]!.write('v', 0, 8192, block(9), { epoch: 1, fua: false, version: v(2) })
  let silentA = true
  let gen = 1
  const transport: ReplicaTransport = {
    self: 'B',
    call: async (peer, req, data) => {
      if (peer === 'A' && silentA) throw new GvsError('unavailable', 'A restarting (test)', { transient: true })
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const w = new ReplicatedVolume({ transport, holders: () => ['A', 'B', 'C'], nodes: () => ['A', 'B', 'C'], generation: () => gen }, { volume: 'v', size: 8 * MiB, replicas: 3, minReplicas: 2, epoch: 2, compareCopies: true })
  t.is((await w.read(0, 1))[0], 0, 'read from B and C while A is silent')
  silentA = false
  gen++
  t.is((await w.read(0, 1))[0], 0, 'the same bytes once A answers')
  t.deepEqual(await stores.A!.read('v', 0, 0, 4096), block(0), 'A\'s copy made alike to the one read')
})

test('a snapshot\'s layer under a VM disk is not rewritten by the comparison (it stays as taken)', async t => {
  const { stores, transport } = await diverged(t)
  // the diverged object is in layer "v", now frozen under a new top "top"
  const w = new ReplicatedVolume({ transport: { ...transport, self: 'B' }, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: 'top', under: ['v'], size: 8 * MiB, replicas: 2, epoch: 2, compareCopies: true })
  await w.read(0, 1)
  t.deepEqual(await stores.A!.read('v', 0, 0, 4096), block(7))
  t.deepEqual(await stores.B!.read('v', 0, 0, 4096), block(0))
})
