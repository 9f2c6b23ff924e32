// A VM's history (vm show) is the same on every node that holds the same document, with
// the times the events happened on the node that made them, also on a node that saw
// none of the changes as they came (its VM manager was down: restarted, or cut off).
// In-process grid, fake driver.
import test from 'ava'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { startDvmmGrid, fakeVm, until, sleep, vmApi } from './grid.ts'
import { DvmmService, type VmDetail } from '../../node/dvmm/index.ts'
import { createVmIn } from '../../node/dvmm/vms.ts'
import { silentLogger } from '../../node/log.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

const api = vmApi

const historyOf = async (app: FastifyInstance, vm: string): Promise<VmDetail['history']> => (await app.inject({ method: 'GET', url: `/v1/vms/${vm}` })).json<VmDetail>().history

test.serial('vm show: a node that saw the changes late shows the same history as those that saw them live, at the times they happened', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  // the late node's VM manager is down while everything happens (its agent still syncs the document)
  const late = g.nodes[2]!
  await late.dvmm.stop({ graceful: false })
  // a guest that exits with code 1 after 300 ms: started, crashed and restarted, and stopped by the crash rule at the third crash
  const starts: number[] = []
  for (const n of g.nodes) n.driver.on('state', e => { if (e.id === 'crashy' && e.state === 'running') starts.push(Date.now()) })
  await g.nodes[0]!.agent.state.write(w => { w.put('vms', fakeVm('crashy', 1, 2 ** 30, { command: ['fake:exit', '1', '300'] })) })
  await until(() => g.nodes.every(n => n.agent.state.read().get('leases', 'crashy')?.value.status === 'stopped'), 30_000, 'the crash rule to stop crashy')
  const holder = g.nodes.find(n => n.fake.vms.has('crashy'))!
  const other = g.nodes.find(n => n !== holder && n !== late)!
  t.not(holder, late)
  await sleep(500)
  // back, with nothing of it seen
  const lateFrom = Date.now()
  late.dvmm = new DvmmService({ ...late.dvmm.components, registry: new Registry(), log: silentLogger }, DVMM)
  await late.dvmm.start()
  await until(() => late.dvmm.history.of('crashy').length > 0, 10_000, 'the late node to read the history')

  const h = await historyOf(api(t, holder), 'crashy')
  const o = await historyOf(api(t, other), 'crashy')
  const l = await historyOf(api(t, late), 'crashy')
  const shared = (x: VmDetail['history']): VmDetail['history'] => x.filter(e => e.local !== true)
  t.deepEqual(shared(l), shared(h), 'the late node: the same history as the holder')
  t.deepEqual(shared(o), shared(h), 'another node that saw it live: the same')
  const name = holder.agent.config.name
  t.deepEqual(shared(h).map(e => [e.event, e.node]), [
    ['placed', name], ['started', name], ['crashed', name], ['started', name], ['crashed', name], ['started', name], ['crashed', name], ['stopped', name]
  ])
  // the times: when it happened on the holder, not when the late node read it
  const at = shared(l).map(e => Date.parse(e.at))
  t.true(at.every(x => x < lateFrom), 'every event before the late node came back')
  const started = shared(l).filter(e => e.event === 'started').map(e => Date.parse(e.at))
  t.is(started.length, starts.length)
  started.forEach((x, i) => { t.true(x >= starts[i]! - 5 && x - starts[i]! < 1000, `start ${i} logged at ${x}, the driver started it at ${starts[i]!}`) })
  t.true(at.every((x, i) => i === 0 || x >= at[i - 1]!), 'in order')
})

test.serial('vm show: a VM made again under a removed VM\'s name, whose lease a dead node held, shows only its own history once it takes the lease over', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  // the former "web" ran on a node that is gone: its lease (and history) stayed when it was removed
  const ghost = '12D3KooWGhostNodeThatDiedLongAgo'
  const old = [{ at: 1000, event: 'placed', node: ghost, epoch: 1 }, { at: 2000, event: 'started', node: ghost, epoch: 1 }]
  await g.nodes[0]!.agent.state.write(w => { w.put('leases', { vm: 'web', holder: ghost, epoch: 1, cpu: 1, memoryBytes: 2 ** 30, status: 'running', log: old, made: 500 }) })
  // every node has the left lease before the new VM is made: one that placed the VM before
  // it arrived claimed afresh (placed, with no lease to take over), which this test is not about
  await until(() => g.nodes.every(n => n.agent.state.read().get('leases', 'web')?.value.holder === ghost), 10_000, 'the left lease on every node')
  const made = Date.now()
  await g.nodes[1]!.agent.state.write(w => { createVmIn(w, fakeVm('web', 1, 2 ** 30)) })
  await until(() => g.nodes.every(n => n.agent.state.read().get('leases', 'web')?.value.status === 'running'), 30_000, 'the new web to take the lease over and run')
  await until(() => g.nodes.every(n => n.dvmm.history.of('web').some(e => e.event === 'started' && e.at >= made)), 10_000, 'every node to read its start')
  for (const n of g.nodes) {
    const h = (await historyOf(api(t, n), 'web')).filter(e => e.local !== true)
    // placed over the lease the former VM left, not failed over: it never ran anywhere else
    t.deepEqual(h.map(e => e.event), ['placed', 'started'], `${n.agent.config.name}: ${JSON.stringify(h)}`)
    t.regex(h[0]?.detail ?? '', /former VM of this name left on 12D3KooWGhost/)
    t.true(h.every(e => Date.parse(e.at) >= made - 5))
  }
})

test.serial('a VM whose guest its driver finds paused (QEMU after a disk error) says why in its lease, and says it runs again when it goes on', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  await n.agent.state.write(w => { w.put('vms', fakeVm('guest', 1, 2 ** 30)) })
  const lease = (): { status?: string, reason?: string } | undefined => n.agent.state.read().get('leases', 'guest')?.value
  await until(() => lease()?.status === 'running', 10_000, 'guest to run')
  const why = 'QEMU paused the guest after a disk error (volume v1 found no space left (ENOSPC)): it is told to go on every 10 s, and runs again once the disk takes the write'
  n.driver.emit('paused', { id: 'guest', why, at: Date.now() })
  await until(() => lease()?.reason === why, 10_000, () => `the paused reason, not ${JSON.stringify(lease())}`)
  t.is(lease()?.status, 'running', 'its process runs on: the lease stays running')
  const row = async (): Promise<{ state: string, reason: string | null } | undefined> => (await api(t, n).inject({ method: 'GET', url: '/v1/vms' })).json<{ vms: Array<{ id: string, state: string, reason: string | null }> }>().vms.find(v => v.id === 'guest')
  t.like(await row(), { state: 'paused', reason: why }, 'vm ls shows it paused, and why')
  t.true(n.dvmm.problems().some(p => p.cause === 'vms-paused' && p.message.includes(why)), 'and health')
  n.driver.emit('paused', { id: 'guest', why: null, at: Date.now() })
  await until(() => lease()?.reason?.startsWith('runs again') === true, 10_000, () => `the reason taken back, not ${JSON.stringify(lease())}`)
  t.is((await row())?.state, 'running', 'and running again')
})
