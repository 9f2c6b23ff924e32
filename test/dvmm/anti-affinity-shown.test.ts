// Anti-affinity is a preference: a group's VMs on different nodes where possible. When
// there are more of them than nodes with room, two share a node, and vm ls and vm show
// say so (a tester found it only in vm show's scores); once a node that could take one
// of them appears (an undrain after a maintenance), they and vgrid ha say which (bb47).
import test from 'ava'
import { createVmIn, type VmDetail, type VmRow } from '../../node/dvmm/vms.ts'
import { fakeVm, startDvmmGrid, until, vmApi } from './grid.ts'

test('three VMs of one anti-affinity group on two nodes: the two that share a node say so; the one alone says nothing; a node undrained could take one, and they and ha say so', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  // the third node away for a maintenance
  const third = g.nodes[2]!
  await g.nodes[0]!.agent.state.write(w => { w.update('roll', third.agent.id, { draining: true }) })
  await until(() => g.nodes.every(n => n.agent.state.read().get('roll', third.agent.id)?.value.draining === true), 10_000, 'the drain seen everywhere')
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
    t.is(v.reason, `shares node ${v.node!} with ${other} of its anti-affinity group g1 (a preference: no node without one of its group can take it now)`)
    const d = (await api.inject({ method: 'GET', url: `/v1/vms/${name}` })).json<VmDetail>()
    t.is(d.reason, v.reason, 'vm show says it too')
  }
  t.is((await api.inject({ method: 'GET', url: '/v1/ha' })).json<{ crowded?: unknown }>().crowded, undefined)
  // undrained: nothing moves by itself (a move restarts the VM), and each says the node that could take it
  await g.nodes[0]!.agent.state.write(w => { w.update('roll', third.agent.id, { draining: false }) })
  const name3 = third.agent.config.name
  await until(() => g.nodes[0]!.agent.state.read().get('roll', third.agent.id)?.value.draining === false, 10_000, 'the undrain')
  vms = await rows()
  for (const name of shared!) {
    const v = vms.find(x => x.name === name)!
    t.is(v.reason, `shares node ${v.node!} with ${shared!.find(x => x !== name)!} of its anti-affinity group g1; ${name3} could take it now with none of its group: vgrid vm stop ${name}, then vgrid vm start ${name}, places it anew (it restarts)`)
  }
  const ha = (await api.inject({ method: 'GET', url: '/v1/ha' })).json<{ ok: boolean, crowded?: unknown }>()
  t.true(ha.ok)
  t.deepEqual(ha.crowded, [{ group: 'g1', node: vms.find(x => x.name === shared![0])!.node, vms: [...shared!].sort(), could: [name3] }])
  // as the reason says: stopped and started, it goes there
  const mover = shared![0]!
  t.is((await api.inject({ method: 'POST', url: `/v1/vms/${mover}/stop` })).statusCode, 200)
  await until(() => g.nodes[0]!.agent.state.read().get('leases', mover)?.value.status === 'stopped', 20_000, `${mover} stopped`)
  t.is((await api.inject({ method: 'POST', url: `/v1/vms/${mover}/start` })).statusCode, 200)
  await until(() => { const l = g.nodes[0]!.agent.state.read().get('leases', mover)?.value; return l?.status === 'running' && l.holder === third.agent.id }, 30_000, `${mover} running on ${name3}`)
  t.true((await rows()).every(v => v.reason == null), 'the group spread again: nothing to say')
})
