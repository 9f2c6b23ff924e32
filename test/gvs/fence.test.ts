// Invariant 3 for volumes: when a new writer (a VM's new holder) raises a volume's
// writer epoch and fences it, a previous writer whose NBD session is still open on
// another agent is refused on every object, including objects the new writer has not
// written yet; sessions opened after the change write with the new epoch.
import test from 'ava'
import { join } from 'node:path'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { volumeEpoch } from '../../crdt/placement/index.ts'


test('a raised and fenced epoch refuses the previous writer on every object, and new sessions write with it', async t => {
  const { dir, hosts, svcs } = await memoryHosts(t, 3, 'gvsfence')
  const { state, members } = sharedDocument(hosts)
  await startServices({ dir, hosts, svcs }, { state, members })
  const app = apiOf(svcs[0]!)
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/app/disk', size: 4 * OBJECT_SIZE } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  const block = (byte: number): Buffer => Buffer.alloc(4096, byte)

  // the previous writer: a session on agent 1 at epoch 1, which has written object 0
  const old = await NbdClient.open(join(dir, 'a1', 'nbd.sock'), 'app/disk')
  t.teardown(async () => { await old.close().catch(() => {}) })
  await old.write(0, block(1))
  await old.flush()

  // the new writer, a VM on agent 2, raises the epoch past the old session's claim and
  // fences it, as DVMM does before the VM starts
  const vm = hosts[2]!.peerId.toString()
  const next = volumeEpoch(state.read().get('volumes', id)!.value.epoch ?? 1, 1, vm)
  await state.write(w => {
    w.put('vms', { id: 'db', name: 'db', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: 64 * 2 ** 20, volumes: [id], constraints: {}, kernel: '/k' } })
    w.put('leases', { vm: 'db', holder: vm, epoch: 1, cpu: 1, memoryBytes: 64 * 2 ** 20, status: 'running' })
    w.update('volumes', id, { epoch: next })
  }, 'test: a new holder takes the volume')
  await svcs[2]!.fence(id, next)

  // the old session is refused on object 3, which the new writer never wrote, and on object 0
  await t.throwsAsync(async () => { await old.write(3 * OBJECT_SIZE, block(9)) }, undefined, 'a write of the fenced writer to an untouched object is refused')
  await t.throwsAsync(async () => { await old.write(0, block(9)) }, undefined, 'and to an object it wrote before')

  // the VM is gone: a session opened now (on the same agent as the old one) claims the
  // volume at an epoch past the VM's
  await state.write(w => { w.remove('vms', 'db'); w.remove('leases', 'db') }, 'test: the VM is removed')
  const fresh = await NbdClient.open(join(dir, 'a1', 'nbd.sock'), 'app/disk')
  t.teardown(async () => { await fresh.close().catch(() => {}) })
  await fresh.write(OBJECT_SIZE, block(2))
  await fresh.flush()
  t.true((await fresh.read(3 * OBJECT_SIZE, 4096)).equals(block(0)), 'the refused write left nothing behind')
  t.true((await fresh.read(0, 4096)).equals(block(1)), 'what the old writer wrote before the fence stays')
  t.true((await fresh.read(OBJECT_SIZE, 4096)).equals(block(2)))

  // fencing a volume that does not exist is a clear error
  await t.throwsAsync(async () => { await svcs[0]!.fence('no-such-volume', next + 1) }, { message: /does not exist/ })
})
