// A qemu VM that boots from its first volume, with nothing to boot there, fails its start
// at once saying why (bb46: a guest on an empty volume "ran" for ever in the firmware,
// saying nothing): not a crash, not tried again; written and started again, it runs.
import test from 'ava'
import { startDvmmGrid, until, vmApi } from './grid.ts'
import { gvsOf, socketOf } from '../gvs/agent-grid.ts'
import { apiOf } from '../gvs/hosts.ts'
import { writeBootSector } from './boot-sector.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

test('a VM booting from an empty volume fails at once with why; with a boot sector written, vm start runs it', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: DVMM, volumeStore: true })
  t.teardown(g.stop)
  const node = g.nodes[0]!
  const gvs = apiOf(gvsOf(node.agent))
  t.teardown(async () => { await gvs.close() })
  const made = await gvs.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/os/root', size: '4M', replicas: 1 } })
  t.is(made.statusCode, 201, made.body)
  const api = vmApi(t, node)
  const created = await api.inject({ method: 'POST', url: '/v1/vms', payload: { name: 'bv', driver: 'qemu', cpu: 0.5, memory: '64M', volumes: ['/os/root'] } })
  t.is(created.statusCode, 201, created.body)
  const lease = () => node.agent.state.read().get('leases', (created.json<{ id: string }>()).id)?.value
  await until(() => lease()?.status === 'failed', 30_000, () => `bv to fail: ${JSON.stringify(lease())}`)
  const shown = (await api.inject({ method: 'GET', url: '/v1/vms/bv' })).json<VmDetail>()
  t.is(shown.state, 'failed')
  t.regex(shown.reason ?? '', /^its boot volume \/os\/root has nothing to boot: its first sector is all zeros \(nothing was written there\); stop the VM \(vgrid vm stop\), write a bootable disk image into the volume \(vgrid vol import FILE \/os\/root\)/)
  t.is(node.fake.vms.get(shown.id), undefined, 'the driver was never asked to run it')
  t.deepEqual(lease()?.crashes ?? [], [], 'not counted as a crash')
  // it stays failed: not tried again
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.is(lease()?.status, 'failed')

  // as the reason says: stopped, a disk with a boot sector written, started again
  t.is((await api.inject({ method: 'POST', url: '/v1/vms/bv/stop' })).statusCode, 200)
  await writeBootSector(socketOf(node.agent), 'os/root')
  // once the agent has seen the NBD session end (a start refuses while a client writes the disk)
  let started = await api.inject({ method: 'POST', url: '/v1/vms/bv/start' })
  for (const t0 = Date.now(); started.statusCode === 409 && Date.now() - t0 < 10_000;) {
    await new Promise(resolve => setTimeout(resolve, 200))
    started = await api.inject({ method: 'POST', url: '/v1/vms/bv/start' })
  }
  t.is(started.statusCode, 200, started.body)
  await until(() => lease()?.status === 'running' && node.fake.vms.get(shown.id)?.state === 'running', 30_000, () => `bv to run: ${JSON.stringify(lease())}`)
  t.pass()
})
