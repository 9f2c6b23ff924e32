// The replicas' side of a snapshot's freeze (node/gvs/frozen-layers.ts, replication.ts
// execute): writes to a frozen layer are refused as `frozen` to writers that follow
// freezes, a restarted store still refuses, a fenced writer is told it is fenced, a
// writer of an earlier release is not refused so, and a settle's version step (a zero
// of no bytes) still lands, so a holder failing at the moment of a snapshot does not
// wedge the writer's volume. Stores on disk, called directly (no network).
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { LiveVolume } from '../../node/gvs/live-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { frozenLayersOf } from '../../node/gvs/volumes.ts'
import type { Volume } from '../../crdt/index.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)

async function stores (t: ExecutionContext, names: string[]): Promise<{ dir: string, s: Record<string, ObjectStore> }> {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-freeze-'))
  const s: Record<string, ObjectStore> = {}
  for (const n of names) { s[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await s[n].start() }
  t.teardown(async () => { for (const x of Object.values(s)) await x.stop().catch(() => {}); await rm(dir, { recursive: true, force: true }) })
  return { dir, s }
}

const write = (volume: string, epoch: number, followsFreeze = true) =>
  ({ op: 'write' as const, volume, index: 0, offset: 0, epoch, seq: 1, fua: false, ...(followsFreeze ? { followsFreeze: true as const } : {}) })

test('a frozen layer refuses writes that follow freezes, also after a restart; a fenced writer is told it is fenced; an earlier release\'s writer is not refused so', async t => {
  const { dir, s } = await stores(t, ['A'])
  await execute(s.A!, write('v', 2), block(1))
  await s.A!.freeze(['v'])
  await t.throwsAsync(execute(s.A!, write('v', 2), block(2)), { instanceOf: GvsError, message: /frozen by a snapshot/ })
  await t.throwsAsync(execute(s.A!, { ...write('v', 2), op: 'zero', length: 4096 }, null), { message: /frozen by a snapshot/ }, 'write-zeroes too')
  await t.throwsAsync(execute(s.A!, write('v', 1), block(2)), { message: /writer epoch 1 is older than 2/ }, 'fenced first')
  await t.notThrowsAsync(execute(s.A!, write('v', 2, false), block(3)), 'a writer of an earlier release would take "frozen" for an I/O error')
  await s.A!.stop()
  const again = new ObjectStore({ log: silentLogger }, { dir: join(dir, 'A') })
  await again.start()
  s.A = again
  await t.throwsAsync(execute(again, write('v', 2), block(2)), { message: /frozen by a snapshot/ }, 'kept on disk')
  await again.removeVolume('v')
  t.deepEqual(again.frozen.list(), [], 'the freeze goes with the layer')
})

test('a holder that fails while a write meets the freeze does not wedge the writer: its settle\'s version step lands on the frozen layer', async t => {
  const { s } = await stores(t, ['A', 'B', 'C'])
  let live = ['A', 'B', 'C']
  let gen = 0
  let cDown = false
  const transport: ReplicaTransport = {
    self: 'A',
    call: async (peer, req, data) => {
      if (peer === 'C' && cDown) throw new GvsError('unavailable', 'replica C unreachable (test)', { transient: true })
      return await execute(s[peer]!, req, data ?? null)
    }
  }
  const comps = { transport, holders: () => live, nodes: () => live, generation: () => gen }
  const before = new ReplicatedVolume(comps, { volume: 'v', size: 8 * MiB, replicas: 3, minReplicas: 2, epoch: 1 })
  const after = new ReplicatedVolume(comps, { volume: 'v@1', under: ['v'], size: 8 * MiB, replicas: 3, minReplicas: 2, epoch: 1 })
  let current = before
  const lv = new LiveVolume(() => current, 'v', { frozenWaitMs: 5000 })
  await lv.write(0, block(1), false)
  await s.A!.freeze(['v'])
  await s.B!.freeze(['v'])
  cDown = true
  const w = lv.write(4096, block(2), false)
  await new Promise(resolve => setTimeout(resolve, 200))
  // membership drops C; the document shows the snapshot
  live = ['A', 'B']
  gen++
  current = after
  await t.notThrowsAsync(w, 'the write refused as frozen lands on the new top')
  await t.notThrowsAsync(lv.write(8192, block(3), false))
  t.deepEqual(await lv.read(4096, 4096), block(2))
  await t.notThrowsAsync(lv.flush())
  const snap = new ReplicatedVolume(comps, { volume: 'v', size: 8 * MiB, replicas: 3, minReplicas: 2, epoch: 1, readOnly: true })
  t.deepEqual(await snap.read(4096, 4096), new Uint8Array(4096), 'the snapshot does not have the later write')
})

test('frozenLayersOf: layers under a top and a snapshot\'s, never a top (a clone\'s either), merged ones left out', t => {
  const vol = (v: Partial<Volume> & { id: string }): Volume => ({ path: `/p/${v.id}`, sizeBytes: MiB, replicas: 2, thin: true, state: 'ready', parent: null, snapshots: {}, ...v }) as Volume
  const a = vol({ id: 'a', layers: ['a@3', 'a@2', 'a@1', 'a'], merged: { 'a@1': 'a@2' }, snapshots: { s1: { name: 's1', createdAt: 1, layers: ['a@1', 'a'] } as Volume['snapshots'][string], s2: { name: 's2', createdAt: 2, layers: ['a@2', 'a@1', 'a'] } as Volume['snapshots'][string] } })
  const c = vol({ id: 'c', layers: ['c', 'a@2', 'a'], parent: 'a' })
  const old = vol({ id: 'o', snapshots: { s: { name: 's', createdAt: 1 } as Volume['snapshots'][string] } })
  t.deepEqual([...frozenLayersOf([a, c, old])].sort(), ['a', 'a@2'])
  t.deepEqual([...frozenLayersOf([vol({ id: 'x' })])], [], 'a volume without snapshots freezes nothing')
})
