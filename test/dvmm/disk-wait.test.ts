// A VM failed over from the dead node that held its R=1 volume's only copies of some
// objects is not started on a disk it cannot read (a tester's qemu guest booted with
// "I/O error, dev vda, sector 0", and nothing said to restart it once that node was
// back): its new holder waits, its lease saying why in vm ls and vm show, and starts it
// once the disk reads again (here: the dead node forgotten, its writes given up).
import test from 'ava'
import { createVmIn } from '../../node/dvmm/vms.ts'
import { fakeVm, startDvmmGrid, until, vmApi, type DvmmNode } from './grid.ts'
import { gvsOf, socketOf } from '../gvs/agent-grid.ts'
import { apiOf } from '../gvs/hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { activeIntervals, holdersIn } from '../../node/gvs/write-intervals.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/vms.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

test('a failed-over VM waits while its disk has objects only the dead node held, saying so, and starts once the disk reads', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: DVMM, volumeStore: true })
  t.teardown(g.stop)
  const gvs = apiOf(gvsOf(g.nodes[0]!.agent))
  t.teardown(async () => { await gvs.close() })
  // 16 objects of R=1 over three nodes: each node holds some of them alone
  const made = await gvs.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/t/r1', size: '64M', replicas: 1 } })
  t.is(made.statusCode, 201, made.body)
  const vol = made.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', vol) != null), 20_000, 'the volume on every node')
  // a write records where the volume's writes go (its write interval): every object's holder there took them
  const client = await NbdClient.open(socketOf(g.nodes[0]!.agent), 't/r1')
  await client.write(0, Buffer.alloc(4096, 7))
  await client.flush()
  await client.close()
  await until(() => g.nodes.every(n => Object.keys(activeIntervals(n.agent.state.read().get('volumes', vol)?.value)).length > 0), 20_000, 'the write interval on every node')

  await g.nodes[0]!.agent.state.write(w => { createVmIn(w, fakeVm('q1', 0.5, 2 ** 28, { driver: 'qemu', volumes: [vol] })) })
  let seen = g.nodes[0]!
  const lease = () => seen.agent.state.read().get('leases', 'q1')?.value
  await until(() => lease()?.status === 'running', 30_000, 'q1 to run')
  const victim = g.nodes.find(n => n.agent.id === lease()!.holder)!
  const others = g.nodes.filter(n => n !== victim) as [DvmmNode, DvmmNode]
  // the lease as a node that lives on sees it
  seen = others[0]
  const v = g.nodes[0]!.agent.state.read().get('volumes', vol)!.value
  const onVictim = Object.values(activeIntervals(v)).flatMap(s => Array.from({ length: 16 }, (_, i) => holdersIn(s, v.placementKey ?? v.id, i, 1))).filter(h => h.includes(victim.agent.id)).length
  t.true(onVictim > 0, 'the holder holds some objects alone')

  await victim.dvmm.stop({ graceful: false })
  await victim.agent.stop({ graceful: false })
  await until(() => others.every(n => n.agent.membership.members.get(victim.agent.id)?.state === 'dead'), 30_000, 'the victim dead')
  // taken over by one of the others, which waits for the disk instead of starting it
  await until(() => lease()?.holder !== victim.agent.id && lease()?.status === 'starting' && /^waiting for its disk/.test(lease()?.reason ?? ''), 60_000, () => `the new holder to wait for the disk: ${JSON.stringify(lease())}`)
  const holder = others.find(n => n.agent.id === lease()!.holder)!
  const api = vmApi(t, others.find(n => n !== holder)!)
  // a few more looks at the disk: still waiting, never started
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.not(holder.fake.vms.get('q1')?.state, 'running', 'not started on a disk it cannot read')
  t.is(lease()?.status, 'starting')
  const shown = (await api.inject({ method: 'GET', url: '/v1/vms/q1' })).json<VmDetail>()
  t.log(`vm show: ${shown.state} on ${shown.node ?? '-'}: ${shown.reason ?? ''}`)
  t.is(shown.state, 'starting')
  t.regex(shown.reason ?? '', new RegExp(`^waiting for its disk /t/r1: \\d+ objects? (is|are) unavailable \\(their newest copies are on ${victim.agent.config.name}, down\\); it starts once`))
  const row = (await api.inject({ method: 'GET', url: '/v1/vms' })).json<{ vms: VmRow[] }>().vms.find(x => x.name === 'q1')
  t.is(row?.reason, shown.reason, 'vm ls says it too')

  // the victim gone for good: forgotten, its writes given up, the disk reads (its objects as zeros) and the VM starts
  const forgot = await api.inject({ method: 'DELETE', url: `/v1/nodes/${victim.agent.config.name}/roll?force=true` })
  t.is(forgot.statusCode, 200, forgot.body)
  await until(() => lease()?.status === 'running' && holder.fake.vms.get('q1')?.state === 'running', 60_000, () => `q1 to start once its disk reads: ${JSON.stringify(lease())}`)
  t.regex(lease()?.reason ?? '', /^started by /)
})
