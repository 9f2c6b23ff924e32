// A VM removed while its holder's agent was away (stopped for a restart, or crashed and
// back within its fence) and made again under the same name with another spec: the
// agent back finds the old guest running under that name, and its lease still its own.
// The old guest is not the new VM: it is stopped, never adopted as it (a tester saw the
// new VM reported running with its new spec and disk while the old guest ran on, on the
// old disk), and the new VM starts afresh with its own spec under a lease of its own.
import test from 'ava'
import { Registry } from 'prom-client'
import { startDvmmGrid, until, fakeVm, type DvmmNode } from './grid.ts'
import { DvmmService } from '../../node/dvmm/index.ts'
import { FakeDriver } from '../../node/dvmm/drivers/fake.ts'
import { silentLogger } from '../../node/log.ts'
import { systemClock } from '../../node/service.ts'
import { createVmIn, removeVmIn } from '../../node/dvmm/vms.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }
const GiB = 2 ** 30

async function up (n: DvmmNode): Promise<void> {
  const driver = new FakeDriver({ clock: systemClock }, { node: n.fake })
  n.driver = driver
  n.dvmm = new DvmmService({ ...n.dvmm.components, registry: new Registry(), log: silentLogger, drivers: { process: driver, qemu: driver } }, DVMM)
  await n.dvmm.start()
}

test('a VM removed and made again while its holder was away: the old guest is stopped when the agent is back, the new spec starts afresh', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=8,mem=16G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const lease = () => n.agent.state.read().get('leases', 'db1')?.value
  await n.agent.state.write(w => { createVmIn(w, fakeVm('db1', 1, GiB)) })
  await until(() => n.fake.vms.get('db1')?.state === 'running' && lease()?.status === 'running', 30_000, 'db1 running')
  const first = lease()!
  const oldRun = n.fake.vms.get('db1')!
  t.is(oldRun.spec.vcpus, 1)

  // the agent goes (its VM runs on); meanwhile the VM is removed and made again, another spec
  await n.dvmm.stop({ graceful: false })
  await n.driver.close()
  await new Promise(resolve => setTimeout(resolve, 20))
  await n.agent.state.write(w => { removeVmIn(w, 'db1') })
  await n.agent.state.write(w => { createVmIn(w, fakeVm('db1', 0.5, GiB / 2)) })
  const made = n.agent.state.read().get('vms', 'db1')!.value.created!
  t.not(made, first.made, 'the new VM is another')
  t.is(lease()!.made, first.made, 'the former VM\'s lease is still there')

  await up(n)
  // the old guest stopped, the new spec running under a new lease made for it
  await until(() => lease()?.made === made && lease()?.status === 'running' && n.fake.vms.get('db1')?.state === 'running', 30_000,
    () => `the new db1 running: lease ${JSON.stringify(lease())}, run ${JSON.stringify(n.fake.vms.get('db1')?.spec)}`)
  t.not(oldRun.state, 'running', 'the old guest no longer runs')
  const now = n.fake.vms.get('db1')!
  t.not(now, oldRun)
  t.is(now.spec.vcpus, 0.5, 'the run is the new spec\'s')
  t.is(lease()!.cpu, 0.5, 'it reserves the new spec')
})
