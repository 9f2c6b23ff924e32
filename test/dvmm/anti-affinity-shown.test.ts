// Anti-affinity is a preference: a group's VMs on different nodes where possible. When
// there are more of them than nodes with room, two share a node, and vm ls and vm show
// say so (a tester found it only in vm show's scores).
import test from 'ava'
import { createVmIn, type VmDetail, type VmRow } from '../../node/dvmm/vms.ts'
import { fakeVm, startDvmmGrid, until, vmApi } from './grid.ts'

test('three VMs of one anti-affinity group on two nodes: the two that share a node say so; the one alone says nothing', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  await g.nodes[0]!.agent.state.write(w => { for (const n of ['aa1', 'aa2', 'aa3']) createVmIn(w, fakeVm(n, 0.5, 2 ** 28, { antiAffinity: 'g1' })) })
  const api = vmApi(t, g.nodes[0]!)
  const rows = async (): Promise<VmRow[]> => (await api.inject({ method: 'GET', url: '/v1/vms' })).json<{ vms: VmRow[] }>().vms
  await until(() => g.nodes[0]!.agent.state.read().list('leases').filter(l => l.status === 'running').length === 3, 30_000, 'three VMs running')
  let vms = await rows()
  const t0 = Date.now()
  while (vms.some(v => v.state !== 'running') && Date.now() - t0 < 10_000) vms = await rows()
  const byNode = new Map<string, string[]>()
  for (const v of vms) byNode.set(v.node!, [...byNode.get(v.node!) ?? [], v.name])
  const shared = [...byNode.values()].find(names => names.length === 2)
  t.truthy(shared, `two share a node: ${JSON.stringify([...byNode])}`)
  const alone = vms.find(v => !shared!.includes(v.name))!
  t.is(alone.reason, null)
  for (const name of shared!) {
    const other = shared!.find(x => x !== name)!
    const v = vms.find(x => x.name === name)!
    t.is(v.reason, `shares node ${v.node!} with ${other} of its anti-affinity group g1 (a preference: no node without one of its group could take it when it was placed)`)
    const d = (await api.inject({ method: 'GET', url: `/v1/vms/${name}` })).json<VmDetail>()
    t.is(d.reason, v.reason, 'vm show says it too')
  }
})
