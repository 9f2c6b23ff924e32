// A write over two objects is answered only once both pieces ended (replicated-volume.ts
// allPieces): when one piece fails for good (a full disk) while the other is retrying a
// moment's failure, the other starts no new attempt, so it cannot land later over a
// newer write the client was told succeeded. Two stores in one process, the failures
// injected into the transport.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024

test('a write whose one piece fails for good is answered after its other piece stopped: a later write is not overwritten', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-pieces-'))
  const stores: Record<string, ObjectStore> = {}
  t.teardown(async () => { for (const s of Object.values(stores)) await s.stop(); await rm(dir, { recursive: true, force: true }) })
  for (const n of ['a', 'b']) { stores[n] = new ObjectStore({ log: silentLogger }, { dir: join(dir, n) }); await stores[n].start() }
  let inject = true
  let transientLeft = 1
  const transport: ReplicaTransport = {
    self: 'a',
    call: async (peer, req, data) => {
      if (inject && peer === 'b' && req.op === 'write' && req.index === 0) throw new GvsError('no-space', 'replica b: disk full')
      if (inject && peer === 'b' && req.op === 'write' && req.index === 1 && transientLeft > 0) {
        transientLeft--
        await new Promise(resolve => setTimeout(resolve, 20))
        throw new GvsError('unavailable', 'replica b unreachable for write: stream closed (test)', { transient: true })
      }
      return await execute(stores[peer]!, req, data ?? null)
    }
  }
  const v = new ReplicatedVolume({ transport, holders: () => ['a', 'b'], nodes: () => ['a', 'b'] }, { volume: 'v', size: 8 * MiB, replicas: 2, epoch: 1, retryMs: 20_000 })
  // W1 (0x11) over the end of object 0 and the start of object 1
  await t.throwsAsync(v.write(4 * MiB - 4096, Buffer.alloc(8192, 0x11), false), { instanceOf: GvsError, message: /disk full/ })
  inject = false
  // W2 (0x22) at the start of object 1, acknowledged
  await v.write(4 * MiB, Buffer.alloc(4096, 0x22), false)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.is((await v.read(4 * MiB, 1))[0], 0x22, 'the acknowledged write stays')
  for (const n of ['a', 'b']) t.is((await stores[n]!.read('v', 1, 0, 1))[0], 0x22, `and on ${n}`)
})
