// ReplicatedVolume flushes (replicated-volume.ts) over real object stores in one process:
// a flush covers every write acknowledged before it began, also one that was still in
// flight when an earlier flush began, and also while another flush is still running.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setImmediate as turn } from 'node:timers/promises'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

/** a gate a request waits at until the test opens it; `reached` resolves when one arrives */
function gate (): { reached: Promise<void>, wait: () => Promise<void>, open: () => void } {
  let arrive!: () => void
  let release!: () => void
  const reached = new Promise<void>(resolve => { arrive = resolve })
  const opened = new Promise<void>(resolve => { release = resolve })
  return { reached, wait: async () => { arrive(); await opened }, open: () => { release() } }
}

/**
 * Object stores named by `names`, reached through a transport that runs each request on
 * the named store; `hook` runs before (and may hold or fail) a request; a request `lose`
 * picks runs, but its answer is lost. `log` records what reached each store, in order.
 */
async function nodes (t: ExecutionContext, names: string[], hook: (peer: string, req: ReplicaRequest) => Promise<void>, lose = (_peer: string, _req: ReplicaRequest): boolean => false): Promise<{ transport: ReplicaTransport, log: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rflush-'))
  const stores = new Map<string, ObjectStore>()
  // a volume may still be bringing a holder back in step in the background: once the
  // test ends its requests fail, instead of writing into the removed directory
  let closed = false
  t.teardown(async () => { closed = true; for (const s of stores.values()) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of names) {
    const s = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) })
    await s.start()
    stores.set(n, s)
  }
  const log: string[] = []
  const transport: ReplicaTransport = {
    self: names[0]!,
    call: async (peer, req, data) => {
      await hook(peer, req)
      if (closed) throw new GvsError('unavailable', 'the test is over')
      const r = await execute(stores.get(peer)!, req, data ?? null)
      log.push(`${req.op}@${peer}`)
      if (lose(peer, req)) throw new GvsError('unavailable', `replica ${peer} unreachable for ${req.op}: stream closed (reset, test)`)
      return r
    }
  }
  return { transport, log }
}

const volume = (transport: ReplicaTransport, holders: string[]): ReplicatedVolume =>
  new ReplicatedVolume({ transport, holders: () => holders, nodes: () => holders }, { volume: 'v', size: 8 * MiB, replicas: holders.length, epoch: 1 })

test('a write in flight when a flush began is flushed by the next flush', async t => {
  const w = gate()
  const { transport, log } = await nodes(t, ['a', 'b'], async (_peer, req) => { if (req.op === 'write') await w.wait() })
  const v = volume(transport, ['a', 'b'])
  const write = v.write(0, new Uint8Array(4096).fill(7), false)
  await w.reached
  // the first flush runs while the write has not landed: it need not cover it
  await v.flush()
  w.open()
  await write
  const landed = log.length
  t.deepEqual(log.filter(l => l.startsWith('write')).sort(), ['write@a', 'write@b'])
  // the write is acknowledged: a flush now must put it on stable storage on both holders
  await v.flush()
  t.deepEqual(log.slice(landed).sort(), ['flush@a', 'flush@b'], 'the second flush flushed both holders after the write landed')
})

test('a write in flight when a flush began that failed on a holder after landing there is flushed there by the next flush', async t => {
  const w = gate()
  let lost = 0
  const { transport, log } = await nodes(t, ['a', 'b'], async (_peer, req) => { if (req.op === 'write') await w.wait() },
    (peer, req) => peer === 'b' && req.op === 'write' && lost++ === 0)
  const v = volume(transport, ['a', 'b'])
  const write = v.write(0, new Uint8Array(4096).fill(7), false)
  await w.reached
  await v.flush()
  w.open()
  await t.throwsAsync(write, { message: /1 of 2 replica\(s\) failed the write/ })
  const landed = log.length
  // the write landed on b though b's answer was lost: not acknowledged, but what b
  // now holds (and serves) is on stable storage after the next flush
  await v.flush()
  t.true(log.slice(landed).includes('flush@b'), 'the next flush flushed the holder the write failed on')
})

test('a flush that overlaps another is answered only after the other\'s replica flushes, and fails when it failed', async t => {
  let g = gate()
  let fail = false
  const { transport, log } = await nodes(t, ['a'], async (_peer, req) => {
    if (req.op !== 'flush') return
    await g.wait()
    if (fail) throw new GvsError('io', 'fsync failed (test)')
  })
  const v = volume(transport, ['a'])
  await v.write(0, new Uint8Array(4096).fill(7), false)
  const done: string[] = []
  const f1 = v.flush().then(() => { done.push('F1') })
  await g.reached
  // the first flush took the write: the second has nothing of its own to flush, but the
  // write is acknowledged and not yet on stable storage
  const f2 = v.flush().then(() => { done.push('F2') })
  for (let i = 0; i < 5; i++) await turn()
  t.deepEqual(done, [], 'no flush answered while the replica flush runs')
  g.open()
  await Promise.all([f1, f2])
  t.deepEqual(log, ['stat@a', 'write@a', 'flush@a'])
  t.deepEqual(done.sort(), ['F1', 'F2'])

  // the same when the replica flush fails: the overlapping flush fails too
  await v.write(0, new Uint8Array(4096).fill(8), false)
  g = gate()
  fail = true
  const f3 = v.flush()
  await g.reached
  const f4 = v.flush()
  g.open()
  await t.throwsAsync(f3, { message: /fsync failed/ })
  await t.throwsAsync(f4, { message: /overlapping flush failed.*fsync failed/ })
  // and a later flush tries again
  fail = false
  g = gate()
  g.open()
  await v.flush()
  t.is(log.at(-1), 'flush@a')
})
