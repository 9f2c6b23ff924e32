// Two VMs created through two nodes at the same moment, each naming the same volume as
// its disk: each node checked only its own copy of the document, both creates were
// answered 201, both VMs were placed and wrote the disk at once (a tester). Now the first
// made keeps the disk (node/dvmm/disk-owner.ts): the other's create is answered 409
// volume_in_use and its VM removed, so the document holds one VM with that disk.
import test from 'ava'
import { startDvmmGrid, until, vmApi } from './grid.ts'
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
