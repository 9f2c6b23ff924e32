// Queued document updates (a VM's exit, its status, a contest's rewrite) survive a
// failed write: a step whose write fails queues them again, with its claims or not,
// and what waits on them (the VM kept busy until its exit is recorded) ends only once
// they are written.
import test from 'ava'
import { Replica } from '../../crdt/replica.ts'
import { harness, sleep, until, vmSpec, ME, GiB } from './fence-harness.ts'

test.serial('an exit recorded while writes fail, in a step that also claims, is written once they work again', async t => {
  const h = await harness({ others: [], seed: w => { w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(['fake:run'], { restart: 'never' }) } as never) } })
  t.teardown(h.stop)
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.status === 'running', 3000), 'v running')
  h.setWrites('refuse')
  await h.driver.kill('v') // not asked by DVMM: an exit; restart never: left stopped
  // a new VM this node claims in the same steps
  h.replica.change(w => w.put('vms', { id: 'w', name: 'w', app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never))
  h.transition()
  await sleep(300)
  t.true(h.dvmm.local.busy.has('v'), 'busy while its exit is not written')
  h.setWrites('ok')
  t.true(await until(() => h.replica.read().get('leases', 'v')?.value.status === 'stopped', 3000), `v's exit written (lease ${h.replica.read().get('leases', 'v')?.value.status})`)
  t.true(await until(() => !h.dvmm.local.busy.has('v'), 1000), 'no longer busy')
  t.is(h.fake.vms.get('v')?.state, 'stopped', 'not restarted')
  t.true(await until(() => h.replica.read().get('leases', 'w')?.value.status === 'running', 3000), 'the claim went through afterwards')
  t.is(h.replica.read().get('leases', 'v')?.value.holder, ME)
})

test.serial('a contest\'s rewrite queued while writes fail, in a step that also claims, is written once they work again', async t => {
  const h = await harness({
    others: [],
    running: [{ id: 'v', command: ['fake:run'] }],
    seed: w => { w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never) }
  })
  t.teardown(h.stop)
  // two concurrent claims on v: this node's (epoch 2, running: the winner) and Nb's
  const other = Replica.create({ clusterId: 'c1', nodeId: 'Nb' })
  other.loadIncremental(h.replica.save())
  other.change(w => w.put('leases', { vm: 'v', holder: 'Nb', epoch: 1, cpu: 1, memoryBytes: GiB, status: 'claimed' }))
  h.setWrites('refuse')
  h.replica.change(w => w.put('leases', { vm: 'v', holder: ME, epoch: 2, cpu: 1, memoryBytes: GiB, status: 'running' }))
  h.replica.loadIncremental(other.save())
  t.true(h.replica.read().get('leases', 'v')?.contested)
  // and a new VM this node claims in the same steps
  h.replica.change(w => w.put('vms', { id: 'w', name: 'w', app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never))
  h.transition()
  await sleep(300)
  h.setWrites('ok')
  h.transition()
  t.true(await until(() => h.replica.read().get('leases', 'v')?.contested === false, 3000), 'the contest was settled by the rewrite')
  t.is(h.replica.read().get('leases', 'v')?.value.holder, ME)
})
