// An inventory taken while writes run (node/gvs/repair.ts): a write reaches an object's
// holders a moment apart, and under load its copy to the second holder can come after
// the inventory's first look at it. bb23 saw a volume say degraded ("1 object has fewer
// than 2 live copies") for an inventory's 5 s while writes ran; a holder placement wants
// is now looked at again for a while before its copy counts as behind.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { silentLogger } from '../../node/log.ts'

const VOL = 'v'
const write = async (s: ObjectStore, seq: number): Promise<void> => { await s.write(VOL, 0, 0, new Uint8Array(4096).fill(seq), { epoch: 1, version: { epoch: 1, seq } }) }

test('a wanted holder whose copy of a write arrives after the first look counts as current; one that stays behind is stale and short', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-inflight-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  for (const n of ['A', 'B']) await write(stores[n]!, 1)
  await write(stores.A!, 2)
  // the write's copy to B lands 400 ms after the inventory first asks B about the object
  let landing: Promise<void> | undefined
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (peer === 'B' && req.op === 'stat' && landing == null) landing = sleep(400).then(async () => { await write(stores.B!, 2) })
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const repairer = new Repairer({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: VOL, replicas: 2, objects: 1 })
  const late = await repairer.inventory()
  t.deepEqual(late.inventory.get(0)?.sort(), ['A', 'B'], 'B caught up within the looks: two current copies')
  t.deepEqual([...late.stale], [])

  // B never gets seq 3: behind after every look
  await write(stores.A!, 3)
  const t0 = Date.now()
  const behind = await new Repairer({ transport: { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: VOL, replicas: 2, objects: 1 }).inventory()
  t.deepEqual(behind.inventory.get(0), ['A'])
  t.deepEqual(behind.stale.get(0), ['B'])
  t.true(Date.now() - t0 < 3000, 'the looks end within the API\'s inventory wait (3 s)')
})

test('many wanted holders behind (a node back from a restart) are looked at once each, not again: the later looks are for a write in flight', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-inflight-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['A', 'B']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  const N = 100
  const put = async (s: ObjectStore, i: number, seq: number): Promise<void> => { await s.write(VOL, i, 0, new Uint8Array(4096).fill(seq), { epoch: 1, version: { epoch: 1, seq } }) }
  for (let i = 0; i < N; i++) { await put(stores.A!, i, 2); await put(stores.B!, i, 1) }
  let stats = 0
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => { if (req.op === 'stat') stats++; return await execute(stores[peer]!, req, data ?? null) } }
  const inv = await new Repairer({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B'] }, { volume: VOL, replicas: 2, objects: N }).inventory()
  t.is(stats, N, 'one look at each copy behind')
  t.is([...inv.stale.values()].filter(s => s.includes('B')).length, N)
})
