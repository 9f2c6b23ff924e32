// VMs whose guests ended while their agent was down: the restarted service puts each
// exit through the restart rule once, as a live exit (left-behind.ts, LocalVms.start),
// instead of starting them again from a lease that still says running.
import test from 'ava'
import Fastify, { type FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { startDvmmGrid, until, sleep, type DvmmNode } from './grid.ts'
import { DvmmService } from '../../node/dvmm/index.ts'
import { FakeDriver } from '../../node/dvmm/drivers/fake.ts'
import { silentLogger } from '../../node/log.ts'
import { readLog } from '../../node/dvmm/history.ts'
import { systemClock } from '../../node/service.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

function api (n: DvmmNode): FastifyInstance {
  const app = Fastify()
  n.dvmm.routes(app)
  return app
}

/** the service on `n` stopped as by a crash (its driver sees nothing more), and what then happens to its VMs */
async function down (n: DvmmNode): Promise<FakeDriver> {
  await n.dvmm.stop({ graceful: false })
  await n.driver.close()
  return n.driver
}

async function up (n: DvmmNode): Promise<void> {
  const driver = new FakeDriver({ clock: systemClock }, { node: n.fake })
  n.driver = driver
  n.dvmm = new DvmmService({ ...n.dvmm.components, registry: new Registry(), log: silentLogger, drivers: { process: driver, qemu: driver } }, DVMM)
  await n.dvmm.start()
}

test.serial('agent restart: a guest that ended while the agent was down follows its restart policy, counted once; a watchdog kill is no crash', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=8,mem=16G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const app = api(n)
  t.teardown(async () => { await app.close() })
  const policy = { nev: 'never', onf: 'on-failure', alw: 'always', wd: 'never' }
  for (const [name, restart] of Object.entries(policy)) {
    const r = await app.inject({ method: 'POST', url: '/v1/vms', payload: { name, cpu: 1, memory: '1G', driver: 'process', command: ['fake:run'], restart } })
    t.is(r.statusCode, 201, r.body)
  }
  const lease = (vm: string) => n.agent.state.read().get('leases', vm)?.value
  const runs = (vm: string): boolean => n.fake.vms.get(vm)?.state === 'running' && lease(vm)?.status === 'running'
  await until(() => Object.keys(policy).every(runs), 30_000, 'VMs running')
  // alw crashed twice today already: a third crash is its last
  const now = Date.now()
  await n.agent.state.write(w => { w.update('leases', 'alw', { crashes: [now - 60_000, now - 30_000] }) })
  const starts = n.fake.starts

  const old = await down(n)
  n.fake.vms.get('nev')!.onExit!(0, null) // the guest powered off
  n.fake.vms.get('onf')!.onExit!(1, null) // crashed
  n.fake.vms.get('alw')!.onExit!(1, null) // crashed, the third time
  await old.kill('wd') // as the fencing watchdog kills the VMs of a dead agent
  await up(n)

  await until(() => runs('onf') && runs('wd'), 30_000, 'the crashed on-failure VM and the one the watchdog killed started again')
  await sleep(1000)
  t.is(lease('nev')?.status, 'stopped', 'policy never: left stopped')
  t.regex(lease('nev')?.reason ?? '', /^exited \(code 0\); restart policy is never/)
  t.is(n.fake.vms.get('nev')?.state, 'stopped')
  t.is(lease('alw')?.status, 'stopped', 'the crash limit holds')
  t.regex(lease('alw')?.reason ?? '', /3 crashes within 24 h/)
  t.is(lease('alw')?.crashes?.length, 3)
  t.is(lease('onf')?.crashes?.length, 1, 'the crash counted')
  t.is(lease('wd')?.crashes?.length ?? 0, 0, 'a watchdog kill is no crash')
  t.is(n.fake.starts, starts + 2, 'only onf and wd started again')

  // once: a second restart finds the exits written and counts nothing again
  const written = { nev: lease('nev'), alw: lease('alw') }
  await down(n)
  await up(n)
  await sleep(DVMM.fenceTimeoutMs + DVMM.takeoverMarginMs + 1000)
  t.deepEqual({ nev: lease('nev'), alw: lease('alw') }, written, 'the leases of the VMs left stopped are as they were')
  t.is(lease('onf')?.crashes?.length, 1)
  t.true(runs('onf') && runs('wd'), 'the running ones were adopted')
  t.is(n.fake.starts, starts + 2, 'nothing started again')
})

test.serial('agent restart: a VM the driver started whose lease the agent went down before writing running (claimed) is adopted and its lease written running, not started again', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=8,mem=16G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const app = api(n)
  t.teardown(async () => { await app.close() })
  const lease = (vm: string) => n.agent.state.read().get('leases', vm)?.value
  // the agent goes down the moment the driver has started the guest: before the start's `running` is written
  let went: Promise<FakeDriver> | undefined
  n.driver.on('state', e => { if (e.id === 'db' && e.state === 'running' && went == null) went = down(n) })
  t.is((await app.inject({ method: 'POST', url: '/v1/vms', payload: { name: 'db', cpu: 1, memory: '1G', driver: 'process', command: ['fake:run'] } })).statusCode, 201)
  await until(() => went != null, 30_000, 'db started by the driver')
  await went
  await sleep(500)
  t.is(lease('db')?.status, 'claimed', 'the write of its start went with the agent')
  const starts = n.fake.starts
  // down a while: the start its history shows is the guest's, not the adoption's (bb36)
  await sleep(1500)
  const startedAt = n.fake.vms.get('db')!.startedAt
  await up(n)
  await until(() => lease('db')?.status === 'running', 10_000, () => `db's lease running (it is ${JSON.stringify(lease('db'))})`)
  t.regex(lease('db')?.reason ?? '', /found running when the agent came back/)
  t.is(n.fake.vms.get('db')?.state, 'running')
  t.is(n.fake.starts, starts, 'adopted, not started again')
  const started = readLog(lease('db')?.log).events.filter(e => e.event === 'started')
  t.is(started.length, 1)
  t.true(Math.abs(started[0]!.at - startedAt) < 500, `started at ${started[0]!.at}, the guest at ${startedAt}`)
})

test.serial('agent restart: VMs the watchdog killed while the agent was down keep that kill in their history, also one stopped meanwhile (its stop, written in the same change, does not drop it)', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=8,mem=16G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const app = api(n)
  t.teardown(async () => { await app.close() })
  for (const name of ['keep', 'halt']) t.is((await app.inject({ method: 'POST', url: '/v1/vms', payload: { name, cpu: 1, memory: '1G', driver: 'process', command: ['fake:run'] } })).statusCode, 201)
  const lease = (vm: string) => n.agent.state.read().get('leases', vm)?.value
  await until(() => ['keep', 'halt'].every(vm => n.fake.vms.get(vm)?.state === 'running' && lease(vm)?.status === 'running'), 30_000, 'VMs running')
  const old = await down(n)
  const killedAt = Date.now()
  old.killByWatchdog(killedAt)
  // stopped while its agent was down (the document says so; nothing ran it meanwhile)
  await n.agent.state.write(w => { w.update('vms', 'halt', { desired: 'stopped' }) })
  await up(n)
  await until(() => n.fake.vms.get('keep')?.state === 'running' && lease('keep')?.status === 'running' && lease('halt')?.status === 'stopped', 30_000, () => `keep running again, halt stopped (${JSON.stringify([lease('keep'), lease('halt')])})`)
  for (const vm of ['keep', 'halt']) {
    const events = readLog(lease(vm)?.log).events
    t.true(events.some(e => e.event === 'killed' && e.at === killedAt), `${vm}: ${JSON.stringify(events)}`)
  }
  t.true(readLog(lease('halt')?.log).events.some(e => e.event === 'stopped'), 'and the stop after it')
})
