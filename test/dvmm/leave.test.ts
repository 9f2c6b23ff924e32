// A node that leaves the grid (a graceful stop: SIGINT) parks the leases of the VMs it
// stopped: they are placed anew at the next epoch (elsewhere, or on the node itself once
// it is back, with a VM manager that never saw them), their history carried on.
// In-process grid, fake driver.
import test from 'ava'
import { Registry } from 'prom-client'
import { startDvmmGrid, fakeVm, until } from './grid.ts'
import { DvmmService } from '../../node/dvmm/index.ts'
import { readLog } from '../../node/dvmm/history.ts'
import { silentLogger } from '../../node/log.ts'

const GiB = 2 ** 30
const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

test.serial('a node leaves and comes back: its VMs run on at the next epoch, elsewhere or (pinned) on it again, with their history', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const h = g.nodes[1]!
  const other = g.nodes[0]!
  await other.agent.state.write(w => { w.setLabel(h.agent.id, 'slot', 'h') })
  await until(() => g.nodes.every(n => n.agent.state.read().labelsOf(h.agent.id).slot === 'h'), 10_000, 'the label everywhere')
  await other.agent.state.write(w => { w.put('vms', fakeVm('pinned', 1, GiB, { constraints: { slot: 'h' } })) })
  await until(() => h.fake.vms.get('pinned')?.state === 'running', 30_000, 'pinned running on its node')
  // one more on the same node, free to move
  await other.agent.state.write(w => { w.put('vms', fakeVm('free', 1, GiB, { constraints: { slot: 'h' } })) })
  await until(() => h.fake.vms.get('free')?.state === 'running' && other.agent.state.read().get('leases', 'free')?.value.status === 'running', 30_000, 'free running on that node')
  await other.agent.state.write(w => { w.update('vms', 'free', { spec: { ...w.reader.get('vms', 'free')!.value.spec, constraints: {} } }) })

  await h.dvmm.stop({ graceful: true })
  const lease = (vm: string) => other.agent.state.read().get('leases', vm)?.value
  await until(() => lease('free')?.epoch === 2 && lease('free')?.status === 'running', 30_000, () => `free placed anew elsewhere (${JSON.stringify(lease('free'))})`)
  t.not(lease('free')?.holder, h.agent.id)
  t.like(lease('pinned'), { holder: h.agent.id, epoch: 1, status: 'stopped', parked: true }, 'pinned waits, its lease parked')

  // the node is back with a VM manager that never saw these VMs
  h.dvmm = new DvmmService({ ...h.dvmm.components, registry: new Registry(), log: silentLogger }, DVMM)
  await h.dvmm.start()
  await until(() => lease('pinned')?.epoch === 2 && lease('pinned')?.status === 'running' && h.fake.vms.get('pinned')?.state === 'running', 30_000, () => `pinned running again on its node (${JSON.stringify(lease('pinned'))})`)
  for (const vm of ['pinned', 'free']) {
    const events = readLog(lease(vm)?.log).events.map(e => e.event)
    t.deepEqual(events.slice(0, 2), ['placed', 'started'], `${vm}: its history from before the leave (${events.join(', ')})`)
    t.true(events.includes('stopped'), `${vm}: the leave's stop`)
  }
})
