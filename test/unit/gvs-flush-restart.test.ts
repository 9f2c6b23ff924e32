// A holder written to since the last flush whose server restarted (power lost) and came
// back before the flush: its unsynced writes are gone, and a flush that only asked it to
// sync would be acknowledged with one copy of them on disk (rv34 high). Writes of an
// earlier placement generation are settled onto the holders first, then flushed.
import test from 'ava'
import { mkdtemp, open, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

test('a flush after a holder\'s server restarted brings it the writes it lost first: they survive the loss of the other holder', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'rv34-flush-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const stores: Record<string, ObjectStore> = {
    A: new ObjectStore({ log: silentLogger, bootId: async () => 'A-boot-1' }, { dir: join(dir, 'A'), writebackMs: 0 }),
    B: new ObjectStore({ log: silentLogger, bootId: async () => 'B-boot-1' }, { dir: join(dir, 'B'), writebackMs: 0 }),
    C: new ObjectStore({ log: silentLogger, bootId: async () => 'C-boot-1' }, { dir: join(dir, 'C'), writebackMs: 0 })
  }
  for (const s of Object.values(stores)) await s.start()
  let live = ['A', 'B', 'C']
  let gen = 1
  let holders = ['A', 'B']
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
  const v = new ReplicatedVolume({ transport, holders: () => holders, nodes: () => live, generation: () => gen }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })

  // 1s written and flushed on A and B
  await v.write(0, block(1), false)
  await v.flush()
  // wait until B's intent log has been emptied (at most once a second), so the next write names object 0 again
  for (let i = 0; i < 50 && (await readFile(join(dir, 'B', 'intents'), 'utf8')).trim() !== 'boot B-boot-1'; i++) await sleep(100)
  // 2s written and acknowledged on A and B, not flushed yet
  await v.write(0, block(2), false)
  // B's server loses power: the data of the unsynced write never reached its disk
  const f = await open(join(dir, 'B', 'objects', 'v', '00000000'), 'r+')
  await f.write(block(1), 0, 4096, 0)
  await f.close()
  // B is down a while (membership: dead), then back after its reboot. The writer's
  // unflushed map still says "B" and B is live again
  live = ['A', 'C']; gen++
  live = ['A', 'B', 'C']; gen++
  const before = stores.B!
  t.teardown(async () => { await before.stop().catch(() => {}) })
  stores.B = new ObjectStore({ log: silentLogger, bootId: async () => 'B-boot-2' }, { dir: join(dir, 'B'), writebackMs: 0 })
  await stores.B.start()
  // the client's flush: acknowledged
  await v.flush()
  t.is((await stores.B.read('v', 0, 0, 1))[0], 2, 'B was brought the write it lost')
  // A is lost now (R-1 holders): the flushed write is on B
  holders = ['B', 'C']
  live = ['B', 'C']; gen++
  const w2 = new ReplicatedVolume({ transport: { ...transport, self: 'B' }, holders: () => holders, nodes: () => live, generation: () => gen }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 2 })
  const got = await w2.read(0, 1)
  t.is(got[0], 2, 'a flushed write survives the loss of R-1 holders')
  for (const s of Object.values(stores)) await s.stop().catch(() => {})
})
