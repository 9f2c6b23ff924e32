// A read-only layered device whose epoch is under the layer's floor reads an object whose
// newest copy is only on its former holders (rv35: the read found no holder to read).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

test('a read-only layered device whose epoch is under the layer\'s floor reads an object that moved', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'rv35-ro-'))
  const stores: Record<string, ObjectStore> = {}
  for (const n of ['A', 'B', 'C', 'D']) stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) })
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const s of Object.values(stores)) await s.start()
  const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
  const nodes = (): string[] => ['A', 'B', 'C', 'D']
  // written at epoch 5 while C and D held the object (top layer v@1 over v)
  const w = new ReplicatedVolume({ transport, holders: () => ['C', 'D'], nodes }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 2, epoch: 5 })
  await w.write(0, new Uint8Array(4096).fill(7), true)
  // placement moved (C and D no longer the holders: A and B are); a snapshot device reads at the document's epoch 1
  const ro = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 2, epoch: 1, readOnly: true })
  const got = await ro.read(0, 1).then(b => String(b[0]), (e: Error) => e.message)
  t.is(got, '7')
})
