// Two VMs created through two nodes at the same moment, each naming the same volume as
// its disk: each node checked only its own copy of the document, both creates were
// answered 201, both VMs were placed and wrote the disk at once (a tester). Now the first
// made keeps the disk (node/dvmm/disk-owner.ts): the other's create is answered 409
// volume_in_use and its VM removed, so the document holds one VM with that disk.
import test from 'ava'
import { fakeVm, startDvmmGrid, until, vmApi } from './grid.ts'
import { gvsOf, socketOf } from '../gvs/agent-grid.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { apiOf } from '../gvs/hosts.ts'

test('two creates through two nodes at once naming one volume: one 201, one 409 volume_in_use, one VM left with the disk', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  const gvs = apiOf(gvsOf(g.nodes[0]!.agent))
  t.teardown(async () => { await gvs.close() })
  const made = await gvs.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/t/race', size: '8M' } })
  t.is(made.statusCode, 201, made.body)
  const vol = made.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', vol) != null), 20_000, 'the volume on both nodes')
  const apis = g.nodes.map(n => vmApi(t, n))
  const create = async (i: number, name: string): Promise<{ status: number, body: string }> => {
    const r = await apis[i]!.inject({ method: 'POST', url: '/v1/vms', payload: { name, driver: 'qemu', cpu: 1, memory: '64M', kernel: process.execPath, volumes: ['/t/race'], desired: 'stopped' } })
    return { status: r.statusCode, body: r.body }
  }
  const [a, b] = await Promise.all([create(0, 'r5'), create(1, 'r6')])
  t.log(`r5: ${a.status}, r6: ${b.status} ${b.status === 409 ? b.body : a.body}`)
  t.deepEqual([a.status, b.status].sort(), [201, 409])
  const lost = a.status === 409 ? a : b
  const e = (JSON.parse(lost.body) as { error: { code: string, message: string } }).error
  t.is(e.code, 'volume_in_use')
  t.regex(e.message, /^volumes: \/t\/race was made a disk of VM "r[56]" at the same moment through another node; that one keeps it \(made first\), and this VM was removed$/)
  await until(() => g.nodes.every(n => n.agent.state.read().list('vms').filter(v => v.spec.volumes.includes(vol)).length === 1), 20_000, 'one VM with the disk on both nodes')
})

test('a VM created through one node while its disk is removed through another: never both (bb35: both answered, the VM crashed on a disk that was gone)', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  const gvs = g.nodes.map(n => apiOf(gvsOf(n.agent)))
  t.teardown(async () => { for (const a of gvs) await a.close() })
  const apis = g.nodes.map(n => vmApi(t, n))
  for (let round = 0; round < 3; round++) {
    const made = await gvs[0]!.inject({ method: 'POST', url: '/v1/volumes', payload: { path: `/t/gone${round}`, size: '8M' } })
    t.is(made.statusCode, 201, made.body)
    const vol = made.json<{ id: string }>().id
    await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', vol) != null), 20_000, 'the volume on both nodes')
    const [c, r] = await Promise.all([
      apis[0]!.inject({ method: 'POST', url: '/v1/vms', payload: { name: `g${round}`, driver: 'qemu', cpu: 1, memory: '64M', kernel: process.execPath, volumes: [`/t/gone${round}`], desired: 'stopped' } }),
      gvs[1]!.inject({ method: 'DELETE', url: `/v1/volumes/${vol}` })
    ])
    t.log(`round ${round}: create ${c.statusCode} ${c.body.slice(0, 300)}, rm ${r.statusCode}`)
    t.not(c.statusCode === 201 && r.statusCode === 200, true, `both answered: ${c.body} ${r.body}`)
    if (c.statusCode === 409) t.regex(c.json<{ error: { message: string } }>().error.message, new RegExp(`^volumes: /t/gone${round} was removed through another node at the same moment; this VM, whose disk it was to be, was removed$`))
    await until(() => g.nodes.every(n => {
      const r = n.agent.state.read()
      return (r.get('vms', `g${round}`) != null) === (r.get('volumes', vol) != null)
    }), 20_000, 'a VM with its disk, or neither, on both nodes')
  }
  // a VM whose disk is gone (made so before the fix, or by an earlier release): not started, said why
  await g.nodes[0]!.agent.state.write(w => { w.put('vms', { ...fakeVm('orphan', 1, 2 ** 30, { volumes: ['vol-00000000dead'] }), desired: 'stopped' }) })
  const start = await apis[0]!.inject({ method: 'POST', url: '/v1/vms/orphan/start' })
  t.is(start.statusCode, 409, start.body)
  t.deepEqual(start.json(), { error: { code: 'volume_removed', message: 'its disk vol-00000000dead was removed: VM "orphan" cannot run without it; remove the VM (vgrid vm rm orphan) and create it again with a volume that exists' } })
})

test('a VM is not started, nor created running, while an NBD client writes its disk (an import): 409 naming the session; once it ends, it starts', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: { settleMs: 300, tickMs: 100 }, volumeWriters: true })
  t.teardown(g.stop)
  const gvsApi = apiOf(gvsOf(g.nodes[0]!.agent))
  t.teardown(async () => { await gvsApi.close() })
  const made = await gvsApi.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/t/imp', size: '8M' } })
  t.is(made.statusCode, 201, made.body)
  const vol = made.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', vol) != null), 20_000, 'the volume on both nodes')
  const api = vmApi(t, g.nodes[0]!)
  const vm = { name: 'v1', driver: 'qemu', cpu: 1, memory: '64M', kernel: process.execPath, volumes: ['/t/imp'] }
  t.is((await api.inject({ method: 'POST', url: '/v1/vms', payload: { ...vm, desired: 'stopped' } })).statusCode, 201)
  // an import's client on node 1: a plain NBD session that writes (it claims the volume)
  const client = await NbdClient.open(socketOf(g.nodes[1]!.agent), 't/imp')
  t.teardown(async () => { await client.close().catch(() => {}) })
  await client.write(0, Buffer.alloc(4096, 1))
  const start = await api.inject({ method: 'POST', url: '/v1/vms/v1/start' })
  t.is(start.statusCode, 409, start.body)
  const e = (JSON.parse(start.body) as { error: { code: string, message: string } }).error
  t.is(e.code, 'volume_in_use')
  t.regex(e.message, /^its disk \/t\/imp is being written over NBD \(1 session on a1: an import/)
  const running = await api.inject({ method: 'POST', url: '/v1/vms', payload: { ...vm, name: 'v2', volumes: ['/t/imp'] } })
  t.is(running.statusCode, 409, 'created running: refused too (it is v1\'s disk as well, or being written)')
  await client.close()
  // its session gone (a writer counts until it closes, or has been idle for the writer idle time)
  const t0 = Date.now()
  let after = await api.inject({ method: 'POST', url: '/v1/vms/v1/start' })
  while (after.statusCode === 409 && Date.now() - t0 < 40_000) {
    await new Promise(resolve => setTimeout(resolve, 250))
    after = await api.inject({ method: 'POST', url: '/v1/vms/v1/start' })
  }
  t.log(`started ${Date.now() - t0} ms after the client closed`)
  t.is(after.statusCode, 200, after.body)
})
