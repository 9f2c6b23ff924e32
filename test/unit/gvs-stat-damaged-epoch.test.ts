// A damaged epoch file refuses writes on its node, not reads: `stat` answers without the
// writer floor then, as an older agent does (rv35: every stat of the line failed there,
// and the node counted as silent, failing reads of an R=1 volume).
import test from 'ava'
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

test('a damaged epoch file on a node that holds nothing of the object fails reads of an R=1 volume', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'rv35-damaged-'))
  // A's epoch file of v is damaged before its store starts
  await mkdir(join(dir, 'A', 'epochs'), { recursive: true })
  await writeFile(join(dir, 'A', 'epochs', 'v'), '')
  const stores: Record<string, ObjectStore> = { A: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'A') }), B: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'B') }) }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const s of Object.values(stores)) await s.start()
  const transport: ReplicaTransport = { self: 'B', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
  // object 0 lives on B alone (R=1); A is another live node
  const w = new ReplicatedVolume({ transport, holders: () => ['B'], nodes: () => ['A', 'B'] }, { volume: 'v', size: 8 * MiB, replicas: 1, epoch: 1 })
  await w.write(0, new Uint8Array(4096).fill(7), true)
  const direct = await execute(stores.A!, { op: 'stat', volume: 'v', index: 0 }, null).then(() => 'ok', (e: Error) => e.message)
  t.log('stat on A:', direct)
  const r = new ReplicatedVolume({ transport, holders: () => ['B'], nodes: () => ['A', 'B'] }, { volume: 'v', size: 8 * MiB, replicas: 1, epoch: 1 })
  const got = await r.read(0, 1).then(b => String(b[0]), (e: Error) => e.message)
  t.is(got, '7', 'B holds the only copy and answers: the read should succeed')
})
