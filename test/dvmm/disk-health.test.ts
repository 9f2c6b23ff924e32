// A VM whose disk is not healthy says so in vm ls and vm show: a tester killed the one
// node that held an R=1 volume's copies, and the VM using it showed plain "running"
// while every read of its disk failed.
import test from 'ava'
import { createVmIn } from '../../node/dvmm/vms.ts'
import { fakeVm, startDvmmGrid, until, vmApi } from './grid.ts'
import { gvsOf } from '../gvs/agent-grid.ts'
import { apiOf } from '../gvs/hosts.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/vms.ts'

test('a running VM whose disk is degraded says so in vm ls and vm show, with the volume\'s reason', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: { settleMs: 300, tickMs: 100 }, volumeStore: true })
  t.teardown(g.stop)
  const gvs = apiOf(gvsOf(g.nodes[0]!.agent))
  t.teardown(async () => { await gvs.close() })
  const made = await gvs.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/t/db', size: '8M', replicas: 3 } })
  t.is(made.statusCode, 201, made.body)
  const vol = made.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', vol) != null), 20_000, 'the volume on every node')
  // the fake driver opens no disk; its holder still fences the volume and takes its URI
  await g.nodes[0]!.agent.state.write(w => { createVmIn(w, fakeVm('db', 1, 2 ** 30, { volumes: [vol] })) })
  const holderOf = (): string | undefined => g.nodes[0]!.agent.state.read().get('leases', 'db')?.value.holder
  await until(() => g.nodes[0]!.agent.state.read().get('leases', 'db')?.value.status === 'running', 30_000, 'db to run')
  const holder = g.nodes.findIndex(n => n.agent.id === holderOf())
  const asker = g.nodes.find((_, i) => i !== holder)!
  const api = vmApi(t, asker)
  const shown = async (): Promise<VmDetail> => (await api.inject({ method: 'GET', url: '/v1/vms/db' })).json<VmDetail>()
  // the asker sees it run once the lease's update reaches it, and a volume just made has
  // no inventory of its copies yet (degraded until its first repair pass): wait for both
  let healthy = await shown()
  const t1 = Date.now()
  while ((healthy.state !== 'running' || healthy.disks[0]?.state !== 'healthy') && Date.now() - t1 < 40_000) { await new Promise(resolve => setTimeout(resolve, 200)); healthy = await shown() }
  t.is(healthy.state, 'running')
  t.is(healthy.reason, null, 'a healthy disk adds nothing')
  t.like(healthy.disks[0], { path: '/t/db', state: 'healthy' })

  // a node that is neither the holder nor the one asked dies: the disk has fewer than R copies
  const victim = g.nodes.find((n, i) => i !== holder && n !== asker)!
  await victim.dvmm.stop({ graceful: false })
  await victim.agent.stop({ graceful: false })
  await until(() => asker.agent.membership.members.get(victim.agent.id)?.state === 'dead', 30_000, 'the victim dead')
  let d = await shown()
  const t0 = Date.now()
  while (d.disks[0]?.state === 'healthy' && Date.now() - t0 < 20_000) { await new Promise(resolve => setTimeout(resolve, 200)); d = await shown() }
  t.log(`vm show: ${d.state} (${d.reason ?? ''})`)
  t.is(d.state, 'running', 'the VM runs on')
  t.like(d.disks[0], { path: '/t/db', state: 'degraded' })
  t.regex(d.reason ?? '', /^its disk \/t\/db is degraded: .+ \(vgrid vol info\)$/)
  const row = (await api.inject({ method: 'GET', url: '/v1/vms' })).json<{ vms: VmRow[] }>().vms.find(v => v.name === 'db')
  t.regex(row?.reason ?? '', /^its disk \/t\/db is degraded: /, 'vm ls says it too')
})
