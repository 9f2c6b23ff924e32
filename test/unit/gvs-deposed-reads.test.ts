// A device whose epoch is under a layer's writer floor (a snapshot's, built at the
// document's epoch while it lags; a session a newer writer deposed that only reads)
// copies nothing of the top layer, yet reads what is there: the frozen layers under the
// top settle as ever, and a read of a moved object goes where its newest copy is (rv35:
// zeros were read for data on the former holders).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

for (const readOnly of [true, false]) {
  test(`a ${readOnly ? 'read-only (snapshot)' : 'deposed read-write'} layered device under the floor never reads zeros for data in an under layer that moved`, async t => {
    const dir = await mkdtemp(join(tmpdir(), 'rv35-zeros-'))
    const stores: Record<string, ObjectStore> = {}
    for (const n of ['A', 'B', 'C', 'D']) stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) })
    t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
    for (const s of Object.values(stores)) await s.start()
    const transport: ReplicaTransport = { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }
    const nodes = (): string[] => ['A', 'B', 'C', 'D']
    // the base layer v written at epoch 5 while C and D held object 0; then a snapshot made v@1 the top (nothing written there yet)
    const w = new ReplicatedVolume({ transport, holders: () => ['C', 'D'], nodes }, { volume: 'v', placementKey: 'v', size: 8 * MiB, replicas: 2, epoch: 5 })
    await w.write(0, new Uint8Array(4096).fill(7), true)
    // placement moved to A and B; a device at epoch 1 (the document's, lagging; or a session a newer writer deposed) reads
    const dev = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes }, { volume: 'v@1', under: ['v'], placementKey: 'v', size: 8 * MiB, replicas: 2, epoch: 1, readOnly })
    const got = await dev.read(0, 1).then(b => String(b[0]), (e: Error) => `error: ${e.message}`)
    t.log('read:', got)
    t.is(got, '7', 'the data on the former holders C and D, never zeros')
  })
}
