// Two VMs created through two nodes at the same moment, each naming the same volume as
// its disk: each node checked only its own copy of the document, both creates were
// answered 201, both VMs were placed and wrote the disk at once (a tester). Now the first
// made keeps the disk (node/dvmm/disk-owner.ts): the other's create is answered 409
// volume_in_use and its VM removed, so the document holds one VM with that disk.
import test from 'ava'
import { startDvmmGrid, until, vmApi } from './grid.ts'
import { gvsOf } from '../gvs/agent-grid.ts'
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
