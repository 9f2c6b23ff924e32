// A device whose epoch is under a layer's writer floor (a snapshot's, built at the
// document's epoch while it lags; a session a newer writer deposed that only reads)
// copies nothing of the top layer, yet reads what is there: the frozen layers under the
// top settle as ever, and a read of a moved object goes where its newest copy is (rv35:
// zeros were read for data on the former holders, or no holder was found to read).
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute } from '../../node/gvs/replication.ts'
import { ReplicatedVolume, type ReplicatedVolumeInit } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

/** four stores; a device of layers `layers` (top first) held by `holders`, over all four nodes */
async function grid (t: ExecutionContext): Promise<(holders: string[], init: Pick<ReplicatedVolumeInit, 'volume' | 'under' | 'epoch' | 'readOnly'>) => ReplicatedVolume> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-deposed-reads-'))
  const stores: Record<string, ObjectStore> = {}
  for (const n of ['A', 'B', 'C', 'D']) stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) })
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const s of Object.values(stores)) await s.start()
  return (holders, init) => new ReplicatedVolume(
    { transport: { self: 'A', call: async (peer, req, data) => await execute(stores[peer]!, req, data ?? null) }, holders: () => holders, nodes: () => ['A', 'B', 'C', 'D'] },
    { ...init, placementKey: 'v', size: 8 * MiB, replicas: 2 })
}

const firstByte = async (dev: ReplicatedVolume): Promise<string> => await dev.read(0, 1).then(b => String(b[0]), (e: Error) => `error: ${e.message}`)

for (const readOnly of [true, false]) {
  test(`a ${readOnly ? 'read-only (snapshot)' : 'deposed read-write'} layered device under the floor reads data of an under layer that moved, never zeros`, async t => {
    const device = await grid(t)
    // the base layer v written at epoch 5 while C and D held object 0; then a snapshot made v@1 the top (nothing written there yet)
    await device(['C', 'D'], { volume: 'v', epoch: 5 }).write(0, new Uint8Array(4096).fill(7), true)
    // placement moved to A and B; a device at epoch 1 (the document's, lagging; or a session a newer writer deposed) reads
    t.is(await firstByte(device(['A', 'B'], { volume: 'v@1', under: ['v'], epoch: 1, readOnly })), '7', 'the data on the former holders C and D')
  })
}

test('a read-only layered device whose epoch is under the top layer\'s floor reads an object whose newest copy is only on its former holders', async t => {
  const device = await grid(t)
  await device(['C', 'D'], { volume: 'v@1', under: ['v'], epoch: 5 }).write(0, new Uint8Array(4096).fill(7), true)
  t.is(await firstByte(device(['A', 'B'], { volume: 'v@1', under: ['v'], epoch: 1, readOnly: true })), '7')
})
