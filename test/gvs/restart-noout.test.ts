// A member away for a restart under a confirmed grace keeps its copies: repair does not
// make them anew on the others while the grace runs (as Ceph's noout), and does once it
// has ended with the member not back (bb32: every restart of an agent copied its node's
// data away, and some of it back).
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { startDvmmGrid, until } from '../dvmm/grid.ts'
import { apiOf } from './hosts.ts'
import { gvsOf, socketOf } from './agent-grid.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { watchdogTimeoutFor } from '../../node/dvmm/timing.ts'

process.env.VGRID_GVS_REPAIR_DELAY = '0s'

const OBJECTS = 8

test('copies on a member away for a restart are waited for while its grace runs, and made anew once it ended', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G' })
  t.teardown(g.stop)
  const [a0, a1, a2] = g.nodes.map(n => n.agent)
  const api = apiOf(gvsOf(a0!))
  t.teardown(async () => { await api.close() })
  const created = await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/p/r', size: OBJECTS * OBJECT_SIZE, replicas: 2 } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', id) != null), 20_000, 'the volume on every agent')
  const c = await NbdClient.open(socketOf(a0!), 'p/r')
  await c.write(0, randomBytes(OBJECTS * OBJECT_SIZE), true)
  await c.close()
  const copies = async (a: typeof a0): Promise<number> => (await gvsOf(a!).store.list(id)).length
  const before = (await copies(a0)) + (await copies(a1))
  t.true(await copies(a2) > 0, 'the node to restart holds some objects')
  // its stop for a restart, with a grace every member holds (as the VM manager records it)
  const fenceMs = 40_000
  const graceEnds = Date.now() + watchdogTimeoutFor(fenceMs)
  await a0!.state.write(w => { w.update('roll', a2!.id, { restart: { fenceMs, since: Date.now(), confirmed: true } }) })
  await until(() => g.nodes.every(n => n.agent.state.read().get('roll', a2!.id)?.value.restart != null), 20_000, 'the record on every agent')
  await g.nodes[2]!.dvmm.stop({ graceful: true, leave: false })
  await a2!.stop({ graceful: true, leave: false })
  await until(() => a0!.membership.members.get(a2!.id)?.state !== 'alive' && a1!.membership.members.get(a2!.id)?.state !== 'alive', 20_000, 'the restarting node away')
  // passes run meanwhile (the live set changed): none copies
  for (const a of [a0, a1]) await gvsOf(a!).reconcile()
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.is((await copies(a0)) + (await copies(a1)), before, 'no copy made anew while the grace runs')
  // the volume's state says why, once its inventory finds the copies missing (taken again every few seconds)
  let reasons: string[] = []
  for (let i = 0; i < 40 && !reasons.some(r => /away for a restart: copies there are waited for, not made anew elsewhere, until /.test(r)); i++) {
    reasons = (await api.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<{ health: { reasons: string[] } }>().health.reasons
    if (!reasons.some(r => /away for a restart/.test(r))) await new Promise(resolve => setTimeout(resolve, 250))
  }
  t.true(reasons.some(r => /away for a restart: copies there are waited for, not made anew elsewhere, until /.test(r)), JSON.stringify(reasons))
  t.is((await copies(a0)) + (await copies(a1)), before, 'still none')
  // vol repair is refused for this volume, whose writes went to the member; not for one written nowhere (rv40: every volume was refused)
  const repair = async (vid: string): Promise<{ statusCode: number, body: string }> => await api.inject({ method: 'POST', url: `/v1/volumes/${vid}/repair`, payload: {} })
  const refused = await repair(id)
  t.is(refused.statusCode, 409, refused.body)
  t.regex(refused.body, /member_restarting/)
  const unwritten = (await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/p/unwritten', size: OBJECT_SIZE, replicas: 2 } })).json<{ id: string }>().id
  const fresh = await repair(unwritten)
  t.is(fresh.statusCode, 200, fresh.body)
  t.true(Date.now() < graceEnds, 'all of that within the grace')
  // the grace ends, the member not back: repair makes the copies on the two left
  const t0 = Date.now()
  for (;;) {
    if ((await copies(a0)) === OBJECTS && (await copies(a1)) === OBJECTS) break
    if (Date.now() - t0 > 90_000) { t.fail(`copies not made after the grace: ${await copies(a0)} + ${await copies(a1)}`); return }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  t.true(Date.now() >= graceEnds, 'made once the grace had ended')
})
