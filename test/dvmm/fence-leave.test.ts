// A graceful stop of the VM manager (the node leaves the grid) leaves nothing running
// that the document no longer accounts for: it waits for starts in flight and stops
// them too (a start that completes after the stop began is killed); a lease is parked
// (placed anew elsewhere, at the next epoch, its history carried on) only once its VM
// is confirmed stopped, and a VM left running keeps its lease and the node's roll entry
// (its watchdog stays armed, NodeRuntime.stop).
import test from 'ava'
import { harness, sleep, until, vmSpec, ME, GiB } from './fence-harness.ts'
import type { VmDriver } from '../../node/dvmm/drivers/types.ts'
import type { FakeDriver } from '../../node/dvmm/drivers/fake.ts'

function proxied (d: FakeDriver, over: Partial<Record<keyof VmDriver, unknown>>): VmDriver {
  return new Proxy(d, {
    get: (target, key) => {
      if (key in over) return over[key as keyof VmDriver]
      const v = Reflect.get(target, key) as unknown
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v
    }
  })
}

test.serial('graceful stop while a VM starts: the VM does not outlive the stop, its lease is parked and the roll entry goes', async t => {
  // start takes 800 ms before the driver has the VM
  const h = await harness({ others: [], wrap: d => proxied(d, { start: async (s: Parameters<VmDriver['start']>[0]) => { await sleep(800); return await d.start(s) } }) })
  t.teardown(h.stop)
  h.replica.change(w => w.put('vms', { id: 'v', name: 'v', app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never))
  h.transition()
  t.true(await until(() => h.dvmm.local.busy.has('v'), 3000), 'the start in flight')
  await h.dvmm.stop({ graceful: true })
  await sleep(1200) // past the driver's start
  const s = h.fake.vms.get('v')?.state
  t.true(s == null || s === 'stopped' || s === 'failed', `the VM is not running (${String(s)})`)
  const r = h.replica.read()
  // the VM is confirmed stopped: its lease is parked, to be placed anew elsewhere at the next epoch with its history
  t.like(r.get('leases', 'v')?.value, { holder: ME, status: 'stopped', parked: true })
  t.regex(r.get('leases', 'v')?.value.reason ?? '', /node leaving/)
  t.is(r.get('roll', ME), undefined, 'the node left the roll')
})

test.serial('graceful stop: a VM the driver cannot stop keeps its lease, and the node its roll entry; the others\' leases are parked', async t => {
  const h = await harness({
    others: [],
    running: [{ id: 'v', command: ['fake:run'] }, { id: 'w', command: ['fake:run'] }],
    wrap: d => proxied(d, { stop: async (id: string, grace: number) => { if (id === 'v') throw new Error('the driver lost its way'); return await d.stop(id, grace) } }),
    seed: w => {
      for (const id of ['v', 'w']) {
        w.put('vms', { id, name: id, app: null, desired: 'running', spec: vmSpec(['fake:run']) } as never)
        w.put('leases', { vm: id, holder: ME, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running' })
      }
    }
  })
  t.teardown(h.stop)
  await sleep(300)
  await h.dvmm.stop({ graceful: true })
  t.is(h.fake.vms.get('v')?.state, 'running')
  t.not(h.fake.vms.get('w')?.state, 'running')
  const r = h.replica.read()
  t.is(r.get('leases', 'v')?.value.holder, ME, 'the VM still running keeps its lease')
  t.like(r.get('leases', 'w')?.value, { status: 'stopped', parked: true }, 'the stopped one\'s lease is parked (placed anew elsewhere)')
  t.truthy(r.get('roll', ME), 'the node stays on the roll while a VM of it runs')
})
