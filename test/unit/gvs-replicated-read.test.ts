// Reading an object that is not settled yet (replicated-volume.ts) over real object
// stores in one process: when no node that answered has a copy and some node did not
// answer, the read fails as unavailable instead of returning the zeros a holder without
// a copy would give; once that node answers, the data comes back. Nor does it answer an
// older copy while as many nodes did not answer as an acknowledged write reaches.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

/** object stores named by node, in one process, and a transport from `self` to them that fails calls to the nodes in `silent` */
async function grid (t: ExecutionContext, names: string[], self: string): Promise<{ stores: Record<string, ObjectStore>, transport: ReplicaTransport, silent: Set<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rread-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of names) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  const silent = new Set<string>()
  const transport: ReplicaTransport = {
    self,
    call: async (peer, req, data) => {
      if (silent.has(peer)) throw new GvsError('unavailable', `replica ${peer} unreachable: stream closed (reset, test)`)
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  return { stores, transport, silent }
}

const silence = (silent: Set<string>, nodes: string[]): void => { silent.clear(); for (const n of nodes) silent.add(n) }

test('a read never answers zeros for an object whose only copies are on nodes that did not answer', async t => {
  const { stores, transport, silent } = await grid(t, ['A', 'B', 'C'], 'C')
  // object 0 was written on A and B; placement has since moved it to C and A
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(7), { epoch: 1, version: { epoch: 1, seq: 1 } })
  silence(silent, ['A', 'B'])
  const v = new ReplicatedVolume({ transport, holders: () => ['C', 'A'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await t.throwsAsync(v.read(0, 4096), { instanceOf: GvsError, message: /no node that answered has a copy, and A, B did not answer/ })
  silence(silent, [])
  t.deepEqual([...(await v.read(0, 4096))].slice(0, 2), [7, 7], 'once they answer, the written data')
  // a thin object written nowhere, every node answering: zeros
  t.deepEqual([...(await v.read(4 * MiB, 4096))].slice(0, 2), [0, 0])
})

test('a read never answers an older copy while as many nodes as an acknowledged write reaches did not answer', async t => {
  const { stores, transport, silent } = await grid(t, ['A', 'B', 'C', 'D'], 'D')
  // C keeps an old copy (version 1.1) from when it held object 0; A and B, its holders
  // since, took a newer write (1.2) that was acknowledged on both
  await stores.C!.write('v', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1, version: { epoch: 1, seq: 2 } })
  silence(silent, ['A', 'B'])
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C', 'D'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await t.throwsAsync(v.read(0, 4096), { instanceOf: GvsError, message: /A, B did not answer .* may hold a newer copy than C/ })
  // nodes by name where the volume store knows them (they were peer ids)
  const named = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C', 'D'], nameOf: n => `host-${n.toLowerCase()}` }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await t.throwsAsync(named.read(0, 4096), { instanceOf: GvsError, message: /host-a, host-b did not answer .* may hold a newer copy than host-c/ })
  // one of the two silent: the other answers with the newest copy
  silence(silent, ['A'])
  t.deepEqual([...(await v.read(0, 4096))].slice(0, 2), [2, 2], 'the acknowledged write, from B')
  // a volume that acknowledges writes on one node: one silent node is already too many
  const one = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C', 'D'] }, { volume: 'v', size: 8 * MiB, replicas: 2, minReplicas: 1, epoch: 1 })
  await t.throwsAsync(one.read(0, 4096), { instanceOf: GvsError, message: /A did not answer/ })
  silence(silent, [])
  t.deepEqual([...(await one.read(0, 4096))].slice(0, 2), [2, 2])
})

test('nor while the nodes that did not answer are former holders: the current ones agreeing is not enough', async t => {
  const { stores, transport, silent } = await grid(t, ['A', 'B', 'C', 'D'], 'A')
  // A and B, holders now, have an old copy; C and D took the newest write when they held it
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  for (const n of ['C', 'D']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1, version: { epoch: 1, seq: 2 } })
  silence(silent, ['C', 'D'])
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C', 'D'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await t.throwsAsync(v.read(0, 4096), { instanceOf: GvsError, message: /C, D did not answer/ })
  silence(silent, [])
  t.deepEqual([...(await v.read(0, 4096))].slice(0, 2), [2, 2])
})

test('the first flush of a volume reaches every live node: writes an earlier run of this agent took were never its to track', async t => {
  const { stores, transport } = await grid(t, ['A', 'B', 'C'], 'C')
  // an earlier run of C's agent wrote object 0 on A and B, and was killed before flushing
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(5), { epoch: 1, version: { epoch: 1, seq: 1 } })
  const flushed: string[] = []
  const counting: ReplicaTransport = { self: 'C', call: async (peer, req, data) => { if (req.op === 'flush') flushed.push(peer); return await transport.call(peer, req, data) } }
  const v = new ReplicatedVolume({ transport: counting, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await v.flush()
  t.deepEqual(flushed.sort(), ['A', 'B', 'C'], 'the client\'s first flush after it reconnected')
  flushed.length = 0
  await v.flush()
  t.deepEqual(flushed, [], 'later flushes only where this run wrote')
})

test('a read goes to the holders its look checked, not to ones placement moved to while it looked', async t => {
  const { stores, transport } = await grid(t, ['A', 'B', 'C'], 'B')
  for (const n of ['A', 'B']) await stores[n]!.write('v', 0, 0, new Uint8Array(4096).fill(7), { epoch: 1, version: { epoch: 1, seq: 1 } })
  // placement flips from A, B to C, B while the look's stats are in flight; C has no copy
  let holders = ['A', 'B']
  const flipping: ReplicaTransport = {
    self: 'B',
    call: async (peer, req, data) => {
      if (req.op === 'stat') holders = ['C', 'B']
      return await transport.call(peer, req, data)
    }
  }
  const v = new ReplicatedVolume({ transport: flipping, holders: () => holders, nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  t.deepEqual([...(await v.read(0, 4096))].slice(0, 2), [7, 7], 'the written data, not the zeros of a holder never checked')
})

test('an object written nowhere reads as zeros while fewer nodes than an acknowledged write reaches did not answer (a holder cut off from this node)', async t => {
  const { transport, silent } = await grid(t, ['A', 'B', 'C'], 'A')
  silence(silent, ['B'])
  // R = 2, acknowledged on both: a write B took is on A too, and A has none
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  t.deepEqual([...(await v.read(0, 4096))].slice(0, 2), [0, 0])
  // acknowledged on one node: B alone may hold it
  const one = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, minReplicas: 1, epoch: 1 })
  await t.throwsAsync(one.read(0, 4096), { instanceOf: GvsError, message: /no node that answered has a copy, and B did not answer/ })
})

test('the first flush of a session passes a live node cut from this one alone when R >= 2 (every flush through such a host failed after 20 s); with R = 1 it does not', async t => {
  const { stores, transport, silent } = await grid(t, ['A', 'B', 'C'], 'A')
  silence(silent, ['C'])
  const unreached = (n: string): boolean => n === 'C'
  const v = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C'], unreached }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await v.write(0, new Uint8Array(4096).fill(3), false)
  await v.flush()
  t.deepEqual([...await stores.B!.read('v', 0, 0, 2)], [3, 3], 'written to both holders')
  // not known to be out of reach: the sweep waits for it, and fails
  const blind = new ReplicatedVolume({ transport, holders: () => ['A', 'B'], nodes: () => ['A', 'B', 'C'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1 })
  await t.throwsAsync(blind.flush(), { instanceOf: GvsError, message: /flush failed: C: replica C unreachable/ })
  // R = 1: its objects may be C's alone
  const single = new ReplicatedVolume({ transport, holders: () => ['A'], nodes: () => ['A', 'B', 'C'], unreached }, { volume: 'w', size: 8 * MiB, replicas: 1, epoch: 1 })
  await t.throwsAsync(single.flush(), { instanceOf: GvsError, message: /flush failed: C:/ })
})
