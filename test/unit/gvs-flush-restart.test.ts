// A holder written to since the last flush whose server restarted (power lost) and came
// back before the flush: its unsynced writes are gone, and a flush that only asked it to
// sync would be acknowledged with one copy of them on disk (rv34 high). Writes of an
// earlier placement generation are settled onto the holders first, then flushed; one
// whose settle failed at a flush keeps that generation when marked again, also when a
// write came meanwhile (rv35: the next flush then only asked the holder to sync).
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, open, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

interface Grid { stores: Record<string, ObjectStore>, transport: ReplicaTransport, v: ReplicatedVolume, live: () => string[], setLive: (nodes: string[]) => void, gen: () => number }

/**
 * Object 0 written (1s) and flushed on A and B, then written again (2s), unflushed; B's
 * server loses power (its copy has the 1s again) and is away a while, then back: the
 * writer's generation moved on twice. `intercept` may answer a call first.
 */
async function restartedHolder (t: ExecutionContext, intercept?: (peer: string, req: ReplicaRequest) => Promise<void>): Promise<Grid> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-flush-restart-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = (n: string, boot: number): ObjectStore => new ObjectStore({ log: silentLogger, bootId: async () => `${n}-boot-${boot}` }, { dir: join(dir, n), writebackMs: 0 })
  const stores: Record<string, ObjectStore> = { A: store('A', 1), B: store('B', 1), C: store('C', 1) }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop().catch(() => {}) })
  for (const s of Object.values(stores)) await s.start()
  let live = ['A', 'B', 'C']
  let gen = 1
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => { await intercept?.(peer, req); return await execute(stores[peer]!, req, data ?? null) } }
  const v = new ReplicatedVolume({ transport, holders: () => live.includes('A') ? ['A', 'B'] : ['B', 'C'], nodes: () => live, generation: () => gen }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await v.write(0, block(1), false)
  await v.flush()
  // B's intent log emptied (at most once a second), so the next write names object 0 again
  for (let i = 0; i < 50 && (await readFile(join(dir, 'B', 'intents'), 'utf8')).trim() !== 'boot B-boot-1'; i++) await sleep(100)
  await v.write(0, block(2), false)
  // the power loss: the unsynced write never reached B's disk
  const f = await open(join(dir, 'B', 'objects', 'v', '00000000'), 'r+')
  await f.write(block(1), 0, 4096, 0)
  await f.close()
  live = ['A', 'C']; gen++
  live = ['A', 'B', 'C']; gen++
  const before = stores.B!
  t.teardown(async () => { await before.stop().catch(() => {}) })
  stores.B = store('B', 2)
  await stores.B.start()
  return { stores, transport, v, live: () => live, setLive: nodes => { live = nodes; gen++ }, gen: () => gen }
}

test('a flush after a holder\'s server restarted brings it the writes it lost first: they survive the loss of the other holder', async t => {
  const g = await restartedHolder(t)
  await g.v.flush()
  t.is((await g.stores.B!.read('v', 0, 0, 1))[0], 2, 'B was brought the write it lost')
  // A is lost now (R-1 holders): the flushed write is on B
  g.setLive(['B', 'C'])
  const w2 = new ReplicatedVolume({ transport: { ...g.transport, self: 'B' }, holders: () => ['B', 'C'], nodes: g.live, generation: g.gen }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 2 })
  t.is((await w2.read(0, 1))[0], 2, 'a flushed write survives the loss of R-1 holders')
})

test('an earlier generation\'s writes whose settle failed once are settled at the next flush, also when a write came meanwhile (rv35)', async t => {
  // B's stat of object 0 fails once (its volume service not answering yet), after a gate
  let gate: Promise<void> | null = null
  let failStat0 = false
  const g = await restartedHolder(t, async (peer, req) => {
    if (!failStat0 || peer !== 'B' || req.op !== 'stat' || !('index' in req) || req.index !== 0) return
    failStat0 = false
    await gate
    throw new GvsError('unavailable', 'B not answering yet (test)', { transient: true })
  })
  let open1!: () => void
  gate = new Promise(resolve => { open1 = resolve })
  failStat0 = true
  const flush1 = g.v.flush().then(() => 'ok', (e: Error) => e.message)
  await sleep(20)
  await g.v.write(4 * MiB, block(5), false) // object 1, on A and B, in the current generation
  open1()
  t.regex(await flush1, /B not answering yet/, 'the first flush fails')
  await g.v.flush()
  t.is((await g.stores.B!.read('v', 0, 0, 1))[0], 2, 'B was brought the write it lost before the second flush was acknowledged')
})
