// The lease a stopped VM keeps (with the node that last ran it, `stopped`, for its
// console) never holds a VM up: a VM removed and made again under its name runs, whether
// the new one is made before that node released the old lease or after that node died.
// In-process grid, fake driver; no moment with the VM running on two nodes.
import test, { type ExecutionContext } from 'ava'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { startDvmmGrid, until, type DvmmGrid, type DvmmNode, vmApi } from './grid.ts'
import { DvmmService } from '../../node/dvmm/index.ts'
import { silentLogger } from '../../node/log.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

const api = vmApi

async function call (app: FastifyInstance, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<{ status: number, body: unknown }> {
  const r = await app.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }) })
  return { status: r.statusCode, body: r.json() }
}

const vmBody = (name: string, cpu = 1): Record<string, unknown> => ({ name, cpu, memory: '1G', driver: 'process', command: ['fake:run'] })
/** the nodes whose driver runs the VM now */
const runners = (g: DvmmGrid, vm: string): DvmmNode[] => g.nodes.filter(n => n.fake.vms.get(vm)?.state === 'running')
const leaseOf = (n: DvmmNode, vm: string) => n.agent.state.read().get('leases', vm)?.value

/** each node's driver state and lease of the VM, for a timeout's message */
const seen = (g: DvmmGrid, vm: string): string => g.nodes.map(n => `${n.agent.config.name}: ${n.fake.vms.get(vm)?.state ?? 'none'}, lease ${JSON.stringify(leaseOf(n, vm))}`).join('; ')

/** fails the test if the VM is ever running on two nodes at once (driver events, every node) */
function neverTwice (t: { fail: (m: string) => void }, g: DvmmGrid, vm: string): void {
  for (const n of g.nodes) {
    n.driver.on('state', e => {
      if (e.id === vm && e.state === 'running' && runners(g, vm).length > 1) t.fail(`${vm} runs on ${runners(g, vm).map(r => r.agent.config.name).join(' and ')}`)
    })
  }
}

/** runs the VM and stops it from another node: its lease stays with the node that ran it, `stopped`, everywhere */
async function runThenStop (g: DvmmGrid, app: FastifyInstance, vm: string): Promise<DvmmNode> {
  await until(() => runners(g, vm).length === 1 && g.nodes.every(n => leaseOf(n, vm)?.status === 'running'), 30_000, () => `${vm} running (${seen(g, vm)})`)
  const h = runners(g, vm)[0]!
  if ((await call(app, 'POST', `/v1/vms/${vm}/stop`)).status !== 200) throw new Error(`${vm} not stopped`)
  await until(() => h.fake.vms.get(vm)?.state === 'stopped' && g.nodes.every(n => leaseOf(n, vm)?.status === 'stopped' && leaseOf(n, vm)?.holder === h.agent.id), 20_000, `${vm} stopped, its lease kept by its node everywhere`)
  return h
}

/** three nodes, web and db created through the first (each checked never to run on two at once) */
async function webAndDb (t: ExecutionContext): Promise<{ g: DvmmGrid, app0: FastifyInstance }> {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  neverTwice(t, g, 'web')
  neverTwice(t, g, 'db')
  const app0 = api(t, g.nodes[0]!)
  for (const vm of ['web', 'db']) t.is((await call(app0, 'POST', '/v1/vms', vmBody(vm))).status, 201)
  return { g, app0 }
}

test.serial('a VM removed and made again under its name runs: made before the node that ran it released the stopped lease, or after that node died', async t => {
  const { g, app0 } = await webAndDb(t)

  // A: removed and made again back to back, from another node, while the node that ran
  // it does not act (its VM manager is down; its agent still syncs the document)
  const h = await runThenStop(g, app0, 'web')
  const x = g.nodes.find(n => n !== h)!
  const appX = api(t, x)
  await h.dvmm.stop({ graceful: false })
  t.is((await call(appX, 'DELETE', '/v1/vms/web')).status, 200)
  t.is((await call(appX, 'POST', '/v1/vms', vmBody('web', 2))).status, 201)
  await until(() => h.agent.state.read().get('vms', 'web')?.value.spec.cpu === 2, 10_000, 'the new web to reach the node that ran the old one')
  h.dvmm = new DvmmService({ ...h.dvmm.components, registry: new Registry(), log: silentLogger }, DVMM)
  await h.dvmm.start()
  await until(() => runners(g, 'web').some(n => n.fake.vms.get('web')?.spec.vcpus === 2), 20_000, 'the new web running')
  t.is(runners(g, 'web').length, 1)
  await until(() => g.nodes.every(n => leaseOf(n, 'web')?.status === 'running'), 10_000, 'its lease running everywhere')
  t.is(leaseOf(x, 'web')?.epoch, 1, 'placed anew, not over the old lease')

  // B: the node that ran it dies after the stop (it will never release the lease); removed, and made again later
  const dh = await runThenStop(g, app0, 'db')
  const y = g.nodes.find(n => n !== dh)!
  const appY = api(t, y)
  await dh.dvmm.stop({ graceful: false })
  await dh.agent.stop({ graceful: false })
  t.is((await call(appY, 'DELETE', '/v1/vms/db')).status, 200)
  t.is(leaseOf(y, 'db'), undefined, 'its stopped lease went with it')
  t.is((await call(appY, 'POST', '/v1/vms', vmBody('db', 2))).status, 201)
  await until(() => runners(g, 'db').some(n => n.fake.vms.get('db')?.spec.vcpus === 2), 20_000, 'the new db running')
  t.not(runners(g, 'db')[0], dh)
})

test.serial('a VM started again by a writer that saw its lease still running while the node that ran it parked it (desired running over a parked lease) runs again, once; also when that node is dead', async t => {
  const { g, app0 } = await webAndDb(t)

  // the outcome of the race, as both writes merge: vm start on X (seeing the lease still
  // running, it only sets desired running) and the holder's park, which X had not seen
  const h = await runThenStop(g, app0, 'web')
  t.true(g.nodes.every(n => leaseOf(n, 'web')?.parked === true), 'parked (a VM stopped on request), everywhere')
  const x = g.nodes.find(n => n !== h)!
  await x.agent.state.write(w => { w.update('vms', 'web', { desired: 'running' }) })
  await until(() => runners(g, 'web').length === 1 && g.nodes.every(n => leaseOf(n, 'web')?.status === 'running'), 20_000, 'web running again')
  t.like(leaseOf(x, 'web'), { epoch: 2, status: 'running' })
  t.is(leaseOf(x, 'web')?.from, undefined, 'placed anew over the parked lease, not taken over')

  // the same with the node that ran it dead (gone before it could see the start): nothing
  // runs under a parked lease, so no fence is waited for, and it is not left for good
  const dh = await runThenStop(g, app0, 'db')
  const y = g.nodes.find(n => n !== dh)!
  await dh.dvmm.stop({ graceful: false })
  await dh.agent.stop({ graceful: false })
  await y.agent.state.write(w => { w.update('vms', 'db', { desired: 'running' }) })
  await until(() => runners(g, 'db').filter(n => n !== dh).length === 1, 20_000, 'db running again')
  t.like(leaseOf(y, 'db'), { epoch: 2 })
})

test.serial('a VM whose stop was under way when its VM manager went down is stopped by the one back (killed past the grace time) before its lease is parked: a parked lease never has a live run', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { ...DVMM, stopGraceMs: 300 } })
  t.teardown(g.stop)
  neverTwice(t, g, 'web')
  const app0 = api(t, g.nodes[0]!)
  // a guest that ignores a graceful stop: only the kill past the grace time ends it
  t.is((await call(app0, 'POST', '/v1/vms', { ...vmBody('web'), command: ['fake:ignore-stop'] })).status, 201)
  await until(() => runners(g, 'web').length === 1 && g.nodes.every(n => leaseOf(n, 'web')?.status === 'running'), 30_000, 'web running')
  const h = runners(g, 'web')[0]!
  // its node's VM manager goes down within a stop's grace time: the driver has it stopping, the guest still runs
  await h.dvmm.stop({ graceful: false })
  h.fake.vms.get('web')!.state = 'stopping'
  const x = g.nodes.find(n => n !== h)!
  t.is((await call(api(t, x), 'POST', '/v1/vms/web/stop')).status, 200)
  await until(() => h.agent.state.read().get('vms', 'web')?.value.desired === 'stopped', 10_000, 'the stop to reach its node')
  // whenever its node's document says parked, its guest has ended there
  const live = (): boolean => ['starting', 'running', 'stopping'].includes(h.fake.vms.get('web')?.state ?? '')
  let parkedWhileLive = false
  h.agent.state.on('changed', () => { if (leaseOf(h, 'web')?.parked === true && live()) parkedWhileLive = true })
  h.dvmm = new DvmmService({ ...h.dvmm.components, registry: new Registry(), log: silentLogger }, { ...DVMM, stopGraceMs: 300 })
  await h.dvmm.start()
  await until(() => g.nodes.every(n => leaseOf(n, 'web')?.parked === true), 10_000, 'web parked everywhere')
  t.false(parkedWhileLive, 'parked only once the guest ended')
  t.is(h.fake.vms.get('web')?.state, 'stopped', 'killed past the grace time, kept for its console')
  // started again by a writer that saw the lease running: placed anew, once
  await x.agent.state.write(w => { w.update('vms', 'web', { desired: 'running' }) })
  await until(() => runners(g, 'web').length === 1 && g.nodes.every(n => leaseOf(n, 'web')?.status === 'running'), 20_000, 'web running again')
})

test.serial('a graceful stop that ended in a kill (the guest ignored it) says so in the VM\'s history, not a plain "stopped"', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { ...DVMM, stopGraceMs: 300 } })
  t.teardown(g.stop)
  const app0 = api(t, g.nodes[0]!)
  t.is((await call(app0, 'POST', '/v1/vms', { ...vmBody('deaf'), command: ['fake:ignore-stop'] })).status, 201)
  t.is((await call(app0, 'POST', '/v1/vms', vmBody('meek'))).status, 201)
  await until(() => runners(g, 'deaf').length === 1 && runners(g, 'meek').length === 1, 30_000, 'both running')
  for (const vm of ['deaf', 'meek']) t.is((await call(app0, 'POST', `/v1/vms/${vm}/stop`)).status, 200)
  await until(() => ['deaf', 'meek'].every(vm => leaseOf(g.nodes[0]!, vm)?.status === 'stopped'), 10_000, 'both stopped')
  // vm show's reason, and the stop in the lease's log
  const shown = async (vm: string): Promise<string> => ((await call(app0, 'GET', `/v1/vms/${vm}`)).body as { reason: string | null }).reason ?? ''
  t.regex(await shown('deaf'), /^stopped on a0: desired stopped \(killed after the 300 ms grace time: the guest did not stop on the request\)$/)
  t.regex(JSON.stringify(leaseOf(g.nodes[0]!, 'deaf')?.log), /"detail":"[^"]*killed after the 300 ms grace time[^"]*","event":"stopped"/)
  t.is(await shown('meek'), 'stopped on a0: desired stopped')
})
