// A writer deposed by a newer one (its epoch fenced out) moves no data: rv34 found its
// write, refused by the holders the fence reached and taken by one it missed (a node
// that joined after the fence, or one the fencer could not reach and passed), copied
// onto the refusing holders by its own settle, where the new writer then read it.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

async function twoStores (t: import('ava').ExecutionContext): Promise<{ stores: Record<'A' | 'N', ObjectStore>, transport: ReplicaTransport }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-deposed-'))
  const stores = { A: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'A') }), N: new ObjectStore({ log: silentLogger }, { dir: join(dir, 'N') }) }
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const s of Object.values(stores)) await s.start()
  const transport: ReplicaTransport = { self: 'X', call: async (peer, req, data) => await execute(stores[peer as 'A' | 'N'], req, data ?? null) }
  return { stores, transport }
}

const writer = (transport: ReplicaTransport, epoch: number, self = 'X'): ReplicatedVolume =>
  new ReplicatedVolume({ transport: { ...transport, self }, holders: () => ['A', 'N'], nodes: () => ['A', 'N'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch })

test('a deposed writer that must settle first learns it was deposed from the holders\' epochs, and writes nothing anywhere', async t => {
  const { stores, transport } = await twoStores(t)
  // the new writer fenced A at epoch 6; N joined after the fence (it knows no epoch)
  await execute(stores.A, { op: 'fence', volume: 'v', epoch: 6 }, null)
  const err = await writer(transport, 5).write(0, block(9), false).then(() => null, (e: Error) => e)
  t.regex(String(err), /writer epoch 5 is older than 6, the newest A has seen/)
  await sleep(200)
  t.false((await stores.N.stat('v', 0)).present, 'the node the fence missed took nothing')
  t.false((await stores.A.stat('v', 0)).present)
  t.is((await writer(transport, 6, 'A').read(0, 1))[0], 0, 'the new writer reads what was there')
})

test('a deposed writer\'s write that only a node the fence missed took is not copied onto the holders that refused it', async t => {
  const { stores, transport } = await twoStores(t)
  const w1 = writer(transport, 5)
  await w1.write(0, block(1), true) // settled on both, before the takeover
  await execute(stores.A, { op: 'fence', volume: 'v', epoch: 6 }, null)
  const before = await stores.A.stat('v', 0)
  const err = await w1.write(0, block(9), false).then(() => null, (e: Error) => e)
  t.regex(String(err), /older than|stale/i)
  await sleep(200) // a settle started by the failed write would have run by now
  t.deepEqual(await stores.A.stat('v', 0), before, 'A keeps its copy')
  t.is((await stores.A.read('v', 0, 0, 1))[0], 1)
  // and the deposed writer's next write does not get past its settle
  const again = await w1.write(0, block(8), false).then(() => null, (e: Error) => e)
  t.regex(String(again), /older than|stale/i)
  t.is((await stores.N.read('v', 0, 0, 1))[0], 9, 'the missed node holds only the first refused write')
})
