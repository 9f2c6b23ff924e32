// A write or flush waits out a replica that is out of reach for a moment instead of
// failing the client (replicated-volume.ts retrying, as every agent's exports use it):
// a holder whose agent stops while membership still lists it (the write goes through
// once membership drops it and the object settles on its new holders), and one whose
// replica service is back after a restart (the write goes through to it). Without the
// retry, each failed at once with EIO and a guest's filesystem went read-only.
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { replicaNodes, type ReplicaNode } from './hosts.ts'

const OBJ = 256 * 1024

type Node = ReplicaNode & { listed: boolean }

async function grid (t: ExecutionContext, n: number): Promise<Node[]> {
  return (await replicaNodes(t, n, { objectSize: OBJ, timeoutMs: 10_000 })).map(x => ({ ...x, listed: true }))
}

test('a holder that stops while membership still lists it: the write waits, and goes through once membership drops it', async t => {
  const nodes = await grid(t, 3)
  const holders = (key: string, r: number): string[] => new Placement(nodes.filter(n => n.listed).map(n => ({ id: n.id, weight: 1 }))).holders(key, r)
  const live = (): string[] => nodes.filter(n => n.listed).map(n => n.id)
  const writer = nodes[0]!
  let generation = 0
  const volume = (retryMs: number): ReplicatedVolume => new ReplicatedVolume({ transport: writer.svc, holders, nodes: live, generation: () => generation }, { volume: 'v', size: 4 * OBJ, replicas: 2, epoch: 1, objectSize: OBJ, retryMs })
  const vol = volume(15_000)
  const data = randomBytes(4 * OBJ)
  await vol.write(0, data, true)
  // a holder of object 1 other than the writer stops its replica service (its agent shutting down)
  const victim = nodes.find(n => n !== writer && holders(objectKey('v', 1), 2).includes(n.id))!
  await victim.svc.stop()
  // without a retry: an error at once
  await t.throwsAsync(volume(0).write(OBJ, randomBytes(4096), true), { instanceOf: GvsError })
  const again = randomBytes(OBJ)
  const started = Date.now()
  const pending = vol.write(OBJ, again, true)
  // membership drops it a second later: placement moves, the write settles and lands on the new holders
  setTimeout(() => { victim.listed = false; generation++ }, 1000)
  await pending
  t.true(Date.now() - started >= 900, 'it waited for membership')
  again.copy(data, OBJ)
  await vol.flush()
  t.true(Buffer.from(await vol.read(0, 4 * OBJ)).equals(data), 'every byte reads back from the holders left')
  await victim.svc.start()
})

test('a holder whose replica service is back after a restart: the write and the flush wait for it, then go through', async t => {
  const nodes = await grid(t, 2)
  const ids = nodes.map(n => n.id)
  const vol = new ReplicatedVolume({ transport: nodes[0]!.svc, holders: () => ids, nodes: () => ids }, { volume: 'v', size: 2 * OBJ, replicas: 2, epoch: 1, objectSize: OBJ, retryMs: 15_000 })
  const data = randomBytes(2 * OBJ)
  await vol.write(0, data.subarray(0, OBJ), false)
  const other = nodes[1]!
  await other.svc.stop()
  setTimeout(() => { void other.svc.start() }, 1000)
  await vol.write(OBJ, data.subarray(OBJ), false)
  await vol.flush()
  t.true(Buffer.from(await other.store.read('v', 1, 0, OBJ)).equals(data.subarray(OBJ)), 'the restarted holder has the write')
  t.true(Buffer.from(await vol.read(0, 2 * OBJ)).equals(data))
})

test('a failure that is not a moment\'s (here a fenced writer) is not waited out', async t => {
  const nodes = await grid(t, 2)
  const ids = nodes.map(n => n.id)
  const vol = (epoch: number): ReplicatedVolume => new ReplicatedVolume({ transport: nodes[0]!.svc, holders: () => ids, nodes: () => ids }, { volume: 'v', size: 2 * OBJ, replicas: 2, epoch, objectSize: OBJ, retryMs: 15_000 })
  await vol(5).write(0, randomBytes(4096), true)
  const started = Date.now()
  await t.throwsAsync(vol(4).write(0, randomBytes(4096), true), { instanceOf: GvsError, message: /epoch/ })
  t.true(Date.now() - started < 5000, 'a stale writer fails at once')
})
