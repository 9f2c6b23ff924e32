// The console of a stopped VM (issue 14): after `vm stop` its lease stays, `stopped`,
// with the node that last ran it, which keeps the ended run and so its console: any
// node answers it; once that node is gone, a 409 names it. In-process grid, fake driver.
import test from 'ava'
import type { FastifyInstance } from 'fastify'
import { startDvmmGrid, until, type DvmmGrid, type DvmmNode, vmApi } from './grid.ts'
import type { VmRow } from '../../node/dvmm/index.ts'
import { readLog } from '../../node/dvmm/history.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

const api = vmApi

async function call<T> (app: FastifyInstance, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<{ status: number, body: T }> {
  const r = await app.inject({ method, url, ...(body === undefined ? {} : { payload: body as object }) })
  return { status: r.statusCode, body: r.json() }
}

const vmBody = (name: string): Record<string, unknown> => ({ name, cpu: 1, memory: '1G', driver: 'process', command: ['fake:run'] })
const holderOf = (g: DvmmGrid, vm: string): DvmmNode | undefined => g.nodes.find(n => n.fake.vms.get(vm)?.state === 'running')
const leaseOf = (n: DvmmNode, vm: string) => n.agent.state.read().get('leases', vm)

interface Console { vm: string, node: string, console: string }
interface ApiError { error: { code: string, message: string } }

test.serial('a stopped VM\'s console is still read from the node that ran it, from any node; once that node is gone, a 409 names it', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const app0 = api(t, g.nodes[0]!)
  for (const vm of ['web', 'db']) t.is((await call(app0, 'POST', '/v1/vms', vmBody(vm))).status, 201)
  await until(() => ['web', 'db'].every(vm => holderOf(g, vm) != null && g.nodes.every(n => leaseOf(n, vm)?.value.status === 'running')), 30_000, 'web and db running')

  // stopped, asked from a node that did not run it: its lease stays with the node that ran it
  const h = holderOf(g, 'web')!
  const asker = g.nodes.find(n => n !== h)!
  const app = api(t, asker)
  t.is((await call(app, 'POST', '/v1/vms/web/stop')).status, 200)
  await until(() => h.fake.vms.get('web')?.state === 'stopped' && g.nodes.every(n => leaseOf(n, 'web')?.value.status === 'stopped'), 20_000, 'web stopped, its lease stopped everywhere')
  t.is(leaseOf(asker, 'web')?.value.holder, h.agent.id, 'the lease names the node that ran it')
  t.regex(leaseOf(asker, 'web')?.value.reason ?? '', new RegExp(`^stopped on ${h.agent.config.name}: desired stopped`))
  const row = (await call<{ vms: VmRow[] }>(app, 'GET', '/v1/vms')).body.vms.find(v => v.name === 'web')!
  t.like(row, { state: 'stopped', node: h.agent.config.name })
  for (const n of [asker, h]) {
    const c = await call<Console>(api(t, n), 'GET', '/v1/vms/web/console')
    t.is(c.status, 200, JSON.stringify(c.body))
    t.regex(c.body.console, /fake guest ready web/, 'the last console output')
    t.is(c.body.node, h.agent.config.name, 'from the node that ran it')
  }
  // started again it is placed anew and runs; stopped and removed, the node that ran it drops the ended run
  t.is((await call(app, 'POST', '/v1/vms/web/start')).status, 200)
  await until(() => holderOf(g, 'web') != null && g.nodes.every(n => leaseOf(n, 'web')?.value.status === 'running'), 20_000, 'web running again')
  const h2 = holderOf(g, 'web')!
  t.is((await call(app, 'POST', '/v1/vms/web/stop')).status, 200)
  await until(() => g.nodes.every(n => leaseOf(n, 'web')?.value.status === 'stopped'), 20_000, 'web stopped again')
  t.is(h2.fake.vms.get('web')?.state, 'stopped', 'its ended run is kept')
  t.is((await call(app, 'DELETE', '/v1/vms/web')).status, 200)
  await until(() => g.nodes.every(n => !n.fake.vms.has('web')), 10_000, 'the ended run removed with the VM')

  // db stopped, then the node that ran it goes: the console names that node in a 409
  const dh = holderOf(g, 'db')!
  const other = g.nodes.find(n => n !== dh)!
  const oapp = api(t, other)
  t.is((await call(oapp, 'POST', '/v1/vms/db/stop')).status, 200)
  await until(() => g.nodes.every(n => leaseOf(n, 'db')?.value.status === 'stopped'), 20_000, 'db stopped everywhere')
  t.is((await call<Console>(oapp, 'GET', '/v1/vms/db/console')).status, 200)
  await dh.dvmm.stop({ graceful: false })
  await dh.agent.stop({ graceful: false })
  // about 3 s on a quiet machine; a loaded one (CI: the other test files run alongside)
  // stalls the agents' shared loop, and a node back from a stall doubts nobody for a while
  await until(() => { const s = other.agent.membership.members.get(dh.agent.id)?.state; return s !== 'alive' && s !== 'suspect' }, 90_000, 'the node that ran db declared dead')
  const gone = await call<ApiError>(oapp, 'GET', '/v1/vms/db/console')
  t.is(gone.status, 409, JSON.stringify(gone.body))
  t.is(gone.body.error.code, 'holder_gone')
  t.regex(gone.body.error.message, new RegExp(`^VM db is stopped; its last console is on node ${dh.agent.config.name} \\(which last ran it\\), which is dead`))
})

test.serial('a VM the crash rule restarts shows the crashed run\'s console, then a line saying how it ended, then the new run\'s (bb34: the crash\'s output went with the restart)', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const app = api(t, n)
  t.is((await call(app, 'POST', '/v1/vms', { ...vmBody('crashy'), command: ['fake:exit', '1', '300'] })).status, 201)
  await until(() => n.fake.starts >= 2 && n.fake.vms.get('crashy')?.state === 'running', 30_000, 'started again after its crash')
  const c = (await call<Console>(app, 'GET', '/v1/vms/crashy/console')).body.console
  t.regex(c, /^fake guest ready crashy\n\[vgrid: the run before ended \(crashed, status 1\); a new run starts at \d{4}-\d\d-\d\dT[\d:.]+Z\]\nfake guest ready crashy\n/, c)
})

test.serial('vm stop of a VM whose holder\'s agent is away says it still runs there until that agent is back or its watchdog ends it (bb36: "now stopped")', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { ...DVMM, fenceTimeoutMs: 30_000 } })
  t.teardown(g.stop)
  const app0 = api(t, g.nodes[0]!)
  t.is((await call(app0, 'POST', '/v1/vms', vmBody('away'))).status, 201)
  await until(() => holderOf(g, 'away') != null && g.nodes.every(n => leaseOf(n, 'away')?.value.status === 'running'), 30_000, 'away running')
  const h = holderOf(g, 'away')!
  const other = g.nodes.find(n => n !== h)!
  await h.dvmm.stop({ graceful: false })
  await h.agent.stop({ graceful: false })
  await until(() => other.agent.membership.members.get(h.agent.id)?.state !== 'alive', 90_000, 'the holder not alive')
  const r = await call<VmRow & { stillRuns?: { name: string, why: string } }>(api(t, other), 'POST', '/v1/vms/away/stop')
  t.is(r.status, 200)
  t.deepEqual(r.body.stillRuns, { node: h.agent.id, name: h.agent.config.name, why: 'its agent is away: the VM runs there until that agent is back and stops it, or its watchdog ends it' })
  // its history says the stop was asked then, on every node (bb36: nothing until the VM was started again)
  const stop = `asked through ${other.agent.config.name} while the agent of ${h.agent.config.name} was away: its run there ends once that agent is back and stops it, or its watchdog ends it`
  for (const n of g.nodes.filter(x => x !== h)) {
    await until(() => readLog(leaseOf(n, 'away')?.value.log).events.some(e => e.event === 'stopped' && e.detail === stop), 20_000, `the stop in the history on ${n.agent.config.name}`)
  }
  const shown = (await call<{ history: Array<{ event: string, node?: string, detail?: string }> }>(api(t, other), 'GET', '/v1/vms/away')).body.history
  t.like(shown.at(-1), { event: 'stopped', node: h.agent.config.name, detail: stop })
  // asked again: not logged twice
  await call(api(t, other), 'POST', '/v1/vms/away/stop')
  t.is(readLog(leaseOf(other, 'away')?.value.log).events.filter(e => e.event === 'stopped').length, 1)
})
