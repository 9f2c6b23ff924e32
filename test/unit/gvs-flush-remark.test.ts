// Writes of an earlier placement generation whose settle failed at a flush keep that
// generation when marked again, also when a write came meanwhile: the next flush settles
// them first (rv35: it only asked the restarted holder to sync, and was acknowledged with
// one copy of the write on disk).
import test from 'ava'
import { mkdtemp, open, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

test('an earlier generation\'s writes whose settle failed once are settled at the next flush, also when a write came meanwhile', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'rv35-remark-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const stores: Record<string, ObjectStore> = {
    A: new ObjectStore({ log: silentLogger, bootId: async () => 'A-boot-1' }, { dir: join(dir, 'A'), writebackMs: 0 }),
    B: new ObjectStore({ log: silentLogger, bootId: async () => 'B-boot-1' }, { dir: join(dir, 'B'), writebackMs: 0 }),
    C: new ObjectStore({ log: silentLogger, bootId: async () => 'C-boot-1' }, { dir: join(dir, 'C'), writebackMs: 0 })
  }
  for (const s of Object.values(stores)) await s.start()
  let live = ['A', 'B', 'C']
  let gen = 1
  const holders = ['A', 'B']
  // B's stat of object 0 fails once (its volume service not answering yet), after a gate
  let gate: Promise<void> | null = null
  let failStat0 = false
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (failStat0 && peer === 'B' && req.op === 'stat' && 'index' in req && req.index === 0) {
        failStat0 = false
        await gate
        throw new GvsError('unavailable', 'B not answering yet (test)', { transient: true })
      }
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => holders, nodes: () => live, generation: () => gen }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })

  await v.write(0, block(1), false)
  await v.flush()
  for (let i = 0; i < 50 && (await readFile(join(dir, 'B', 'intents'), 'utf8')).trim() !== 'boot B-boot-1'; i++) await sleep(100)
  await v.write(0, block(2), false) // unflushed on A and B
  // B loses power: the unsynced data never reached its disk; it is away, then back
  const f = await open(join(dir, 'B', 'objects', 'v', '00000000'), 'r+')
  await f.write(block(1), 0, 4096, 0)
  await f.close()
  live = ['A', 'C']; gen++
  live = ['A', 'B', 'C']; gen++
  const before = stores.B!
  t.teardown(async () => { await before.stop().catch(() => {}) })
  stores.B = new ObjectStore({ log: silentLogger, bootId: async () => 'B-boot-2' }, { dir: join(dir, 'B'), writebackMs: 0 })
  await stores.B.start()

  // the client's flush: its settle of object 0 fails once; meanwhile a write to object 1
  let open1!: () => void
  gate = new Promise(resolve => { open1 = resolve })
  failStat0 = true
  const flush1 = v.flush().then(() => 'ok', (e: Error) => e.message)
  await sleep(20)
  await v.write(4 * MiB, block(5), false) // object 1, on A and B, in the current generation
  open1()
  t.log('first flush:', await flush1)
  // the client flushes again: acknowledged
  const second = await v.flush().then(() => 'ok', (e: Error) => e.message)
  t.log('second flush:', second)
  if (second !== 'ok') { t.pass('second flush failed: not acknowledged'); return }
  t.is((await stores.B.read('v', 0, 0, 1))[0], 2, 'B was brought the write it lost before the flush was acknowledged')
  for (const s of Object.values(stores)) await s.stop().catch(() => {})
})
