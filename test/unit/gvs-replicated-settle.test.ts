// Settling an object (replicated-volume.ts) over real object stores in one process: a
// holder that does not say which copy it has is never taken as up to date. A write
// then fails as unavailable, and the next one, once the holder answers, first brings it
// the newest copy.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

/** stores A and B: both took 1.1 (block 0 = 1s); A then took 1.2 (block 1 = 2s) while B was cut off */
async function bMissedOne (t: ExecutionContext): Promise<Record<string, ObjectStore>> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rsettle-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, block(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  await stores.A!.write('v', 0, 4096, block(2), { epoch: 1, version: { epoch: 1, seq: 2 } })
  return stores
}

test('a holder that did not answer stat is not written to as if it had the newest copy', async t => {
  const stores = await bMissedOne(t)
  // B is back, but its answer to the next stat is lost (a stream reset)
  let lose = 1
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (peer === 'B' && req.op === 'stat' && lose-- > 0) throw new GvsError('unavailable', 'replica B unreachable for stat: stream closed (reset, test)')
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  // a new writer (epoch 2): its first write fails, B's copy untouched
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 2 })
  await t.throwsAsync(v.write(8192, block(3), false), { instanceOf: GvsError, message: /1 of 2 replica\(s\) failed the write, not saying which copy they have: replica B unreachable/ })
  t.deepEqual((await stores.B!.stat('v', 0)).version, { epoch: 1, seq: 1 }, 'B still says its old version')
  t.is((await stores.B!.read('v', 0, 4096, 1))[0], 0)
  t.is((await stores.B!.read('v', 0, 8192, 1))[0], 0, 'the failed write did not reach B')
  // B answers now: the write brings it A's copy first, then lands on both alike
  await v.write(8192, block(3), false)
  const a = await stores.A!.readObject('v', 0)
  const b = await stores.B!.readObject('v', 0)
  t.deepEqual(a!.version, b!.version)
  t.true(Buffer.from(a!.data).equals(b!.data), 'both copies alike')
  t.deepEqual([...(await stores.B!.read('v', 0, 0, 3 * 4096)).filter((_, i) => i % 4096 === 0)], [1, 2, 3])
})

test('a settle copy that fails for a moment is retried with the write, and one that finds no room says so (ENOSPC, not EIO)', async t => {
  // B missed 1.2 and restarts: its next put is refused, then it is back
  const stores = await bMissedOne(t)
  let failPuts = 1
  let full = false
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (peer === 'B' && req.op === 'put' && full) throw new GvsError('no-space', 'replica B: disk full (ENOSPC, test)')
      if (peer === 'B' && req.op === 'put' && failPuts-- > 0) throw new GvsError('unavailable', 'replica B unreachable for put: connection error: connect ECONNREFUSED (test)', { transient: true })
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1, retryMs: 5000 })
  await v.write(8192, block(3), false)
  t.deepEqual([...(await stores.B!.read('v', 0, 0, 3 * 4096)).filter((_, i) => i % 4096 === 0)], [1, 2, 3], 'B got the newest copy on the second try, then the write')
  // B missed another write and has no room for the copy: a new writer's client hears ENOSPC
  await stores.A!.write('v', 0, 12288, block(4), { epoch: 1, version: { epoch: 1, seq: 9 } })
  full = true
  const w2 = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 2, retryMs: 5000 })
  const err = await w2.write(16384, block(5), false).then(() => null, (e: unknown) => e)
  t.true(err instanceof GvsError && err.code === 'no-space', String(err))
  t.regex((err as Error).message, /lack its newest copy .*disk full/)
})

test('a layered read goes to the holders with the newest copy when it cannot be brought to a full one, and never to that one', async t => {
  // a snapshot's volume: `v` under, `v@1` on top. All three took `v` (1s); A and B took
  // the top's copy (2s) and C, its disk full, did not
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rsettle-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B', 'C']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  for (const n of ['A', 'B', 'C']) await stores[n]!.write('v', 0, 0, block(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  for (const n of ['A', 'B']) await stores[n]!.write('v@1', 0, 0, block(2), { epoch: 2, version: { epoch: 2, seq: 1 } })
  const puts: string[] = []
  const transport: ReplicaTransport = {
    self: 'C', // its own copy would come first, and resolves to the old layer's 1s
    call: async (peer, req, data) => {
      if (req.op === 'put') puts.push(peer)
      if (peer === 'C' && req.op === 'put') throw new GvsError('no-space', 'replica C: disk full (0 MiB free, test)')
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B', 'C'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 3, epoch: 2, retryMs: 2000 })
  t.deepEqual([...await v.read(0, 4)], [2, 2, 2, 2], 'the newest copy, from A or B')
  t.deepEqual(puts, ['C'], 'the copy to C was tried once')
  t.deepEqual([...await v.read(4096, 4)], [0, 0, 0, 0])
  t.deepEqual(puts, ['C'], 'and not again by every read: the next settle after a while tries it')
  t.false(await stores.C!.has('v@1', 0), 'C still lacks it')
  // a write needs every holder: it still fails, saying why
  const err = await v.write(8192, block(3), false).then(() => null, (e: unknown) => e)
  t.true(err instanceof GvsError && err.code === 'no-space', String(err))
  t.regex((err as Error).message, /C lack its newest copy .*disk full/)
  t.deepEqual([...await v.read(0, 4)], [2, 2, 2, 2], 'reads still succeed after the failed write')
})

test('a layered volume whose write failed on a full holder reads the write back from the others, and that holder is left plainly behind', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rsettle-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B', 'C']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  for (const n of ['A', 'B', 'C']) await stores[n]!.write('v', 0, 0, block(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  let full = false
  const transport: ReplicaTransport = {
    self: 'C',
    call: async (peer, req, data) => {
      if (peer === 'C' && full && (req.op === 'put' || req.op === 'write')) throw new GvsError('no-space', 'replica C: disk full (0 MiB free, test)')
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B', 'C'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 3, epoch: 2, retryMs: 2000 })
  await v.write(0, block(2), false)
  full = true
  const err = await v.write(4096, block(3), false).then(() => null, (e: unknown) => e)
  t.true(err instanceof GvsError && err.code === 'no-space', String(err))
  // the write landed on A and B (the client was told it failed: either answer is right), never served from C
  const got = [...await v.read(0, 8192)].filter((_, i) => i % 4096 === 0)
  t.deepEqual(got, [2, 3], 'read from A or B')
  const [a, c] = [await stores.A!.stat('v@1', 0), await stores.C!.stat('v@1', 0)]
  t.true(a.version.seq > c.version.seq, `C's copy (${c.version.seq}) is behind A's (${a.version.seq}) for any other reader`)
})

test('a layered read with as many holders silent as an acknowledged write reaches fails (the newest copy may be only theirs), never serves the older copy that answered', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rsettle-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B', 'C']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  // every holder took 2.1 (2s); a write acknowledged on A and B only (minReplicas 2) took 2.2 (3s): C missed it
  for (const n of ['A', 'B', 'C']) await stores[n]!.write('v@1', 0, 0, block(2), { epoch: 2, version: { epoch: 2, seq: 1 } })
  for (const n of ['A', 'B']) await stores[n]!.write('v@1', 0, 0, block(3), { epoch: 2, version: { epoch: 2, seq: 2 } })
  let silent = true
  const transport: ReplicaTransport = {
    self: 'C',
    call: async (peer, req, data) => {
      if (silent && peer !== 'C') throw new GvsError('unavailable', `replica ${peer} unreachable (test)`)
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B', 'C'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 3, minReplicas: 2, epoch: 3, retryMs: 0 })
  const err = await v.read(0, 4).then(r => [...r], (e: unknown) => e)
  t.true(err instanceof GvsError && err.code === 'unavailable', `not C's older copy: ${String(err)}`)
  t.regex((err as Error).message, /may hold a newer copy/)
  silent = false
  t.deepEqual([...await v.read(0, 4)], [3, 3, 3, 3], 'once they answer: the acknowledged write')
})
