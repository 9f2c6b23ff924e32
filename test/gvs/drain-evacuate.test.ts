// A node being drained takes no volume objects: repair copies its objects to their new
// holders and frees its copies, so that its leave or forget takes no copy away (bb23: a
// drained node's leave left every volume on one copy until repair, and nothing said so).
import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { startDvmmGrid, until, vmApi, type DvmmGrid } from '../dvmm/grid.ts'
import { apiOf } from './hosts.ts'
import { gvsOf, socketOf } from './agent-grid.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { activeIntervals } from '../../node/gvs/write-intervals.ts'

// surplus copies freed after 1 s unused, repair right after a change (defaults: 30 s, 5 s)
process.env.VGRID_GVS_RETIRE_QUIET = '1s'
process.env.VGRID_GVS_REPAIR_DELAY = '0s'

const OBJECTS = 8

async function eventually (check: () => Promise<boolean>, limitMs: number, what: string): Promise<void> {
  const t0 = Date.now()
  while (!(await check())) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

test('draining a node moves its volume copies off it; every byte reads back from the others; undrained, it takes objects again', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G' })
  t.teardown(g.stop)
  const [a0, a1, a2] = g.nodes.map(n => n.agent)
  const api = apiOf(gvsOf(a0!))
  t.teardown(async () => { await api.close() })
  const created = await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/p/d', size: OBJECTS * OBJECT_SIZE, replicas: 2 } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', id) != null), 20_000, 'the volume on every agent')
  const data = randomBytes(OBJECTS * OBJECT_SIZE)
  const c = await NbdClient.open(socketOf(a0!), 'p/d')
  await c.write(0, data, true)
  await c.close()
  const copies = async (a: typeof a0): Promise<number> => (await gvsOf(a!).store.list(id)).length
  t.true(await copies(a2) > 0, 'the node to drain holds some objects')

  await a0!.state.write(w => { w.update('roll', a2!.id, { draining: true }) })
  await until(() => g.nodes.every(n => gvsOf(n.agent).evacuation().nodes.includes(a2!.id)), 20_000, 'every node moves objects off it')
  // the drain's progress reads it from the volume list (vgrid node drain --wait)
  const listed = (await api.inject({ method: 'GET', url: '/v1/volumes' })).json<{ evacuation?: { nodes: string[] } }>()
  t.deepEqual(listed.evacuation, { nodes: [a2!.id] })
  await eventually(async () => await copies(a2) === 0, 90_000, 'no copy left on the drained node')
  // nor an empty directory of the layer (bb26), after the drained node's next background pass
  await gvsOf(a2!).reconcile()
  t.false(existsSync(join(gvsOf(a2!).store.dir, 'objects', id)), 'the drained node keeps no empty layer directory')
  t.is(await copies(a0), OBJECTS, 'every object on each of the other two (R=2)')
  t.is(await copies(a1), OBJECTS)
  for (const a of [a0, a1]) {
    const r = await NbdClient.open(socketOf(a!), 'p/d')
    t.true(Buffer.from(await r.read(0, OBJECTS * OBJECT_SIZE)).equals(data), `every byte reads back through ${a!.config.name}`)
    await r.close()
  }

  // undrained: it is a holder again, and repair brings it its objects back
  await a0!.state.write(w => { w.update('roll', a2!.id, { draining: false }) })
  await eventually(async () => await copies(a2) > 0, 90_000, 'objects back on the undrained node')
  t.deepEqual(gvsOf(a0!).evacuation(), { nodes: [] })
})

/**
 * three agents and an R=1 volume at `path` written whole through the first, every agent
 * holding its record; `far` is the index of the other agent holding more of its objects
 * (with 8 objects on 3 nodes, one given node holds none about once in 26 volumes)
 */
async function oneCopyVolume (t: ExecutionContext, path: string): Promise<{ g: DvmmGrid, api: Awaited<ReturnType<typeof apiOf>>, id: string, data: Buffer, far: 1 | 2 }> {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=100G' })
  t.teardown(g.stop)
  const a0 = g.nodes[0]!.agent
  const api = apiOf(gvsOf(a0))
  t.teardown(async () => { await api.close() })
  const created = await api.inject({ method: 'POST', url: '/v1/volumes', payload: { path, size: OBJECTS * OBJECT_SIZE, replicas: 1 } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  await until(() => g.nodes.every(n => n.agent.state.read().get('volumes', id) != null), 20_000, 'the volume on every agent')
  const data = randomBytes(OBJECTS * OBJECT_SIZE)
  const c = await NbdClient.open(socketOf(a0), path.slice(1))
  await c.write(0, data, true)
  await c.close()
  const held = await Promise.all([1, 2].map(async i => (await gvsOf(g.nodes[i]!.agent).store.list(id)).length))
  return { g, api, id, data, far: held[0]! >= held[1]! ? 1 : 2 }
}

test('a drained node that then leaves takes nothing with it: an R=1 volume reads whole through the others (bb28)', async t => {
  const { g, id, data, far } = await oneCopyVolume(t, '/p/one')
  const a0 = g.nodes[0]!.agent
  const a2 = g.nodes[far]!.agent
  t.true((await gvsOf(a2).store.list(id)).length > 0, 'the node to drain holds some objects')
  await a0.state.write(w => { w.update('roll', a2.id, { draining: true }) })
  await eventually(async () => (await gvsOf(a2).store.list(id)).length === 0, 90_000, 'no copy left on the drained node')
  // where the writes went is recorded as the placement the drain moved them to: the
  // drained node at weight 0, so none of its objects waits for it (it was recorded at
  // full weight, and every object it had held read as unavailable once it left)
  const named = (): boolean => Object.values(activeIntervals(a0.state.read().get('volumes', id)?.value)).some(s => s.nodes.some(n => n.id === a2.id && n.weight > 0))
  // (the repair that moved them clears the older records only if they are 5 s older than its start: else the next pass)
  await until(() => !named(), 120_000, 'the records of where the writes went to leave the drained node out')
  await a2.stop({ graceful: true, leave: true })
  await until(() => a0.membership.members.get(a2.id)?.state !== 'alive', 20_000, 'the drained node gone')
  const r = await NbdClient.open(socketOf(a0), 'p/one')
  t.true(Buffer.from(await r.read(0, OBJECTS * OBJECT_SIZE)).equals(data), 'every byte reads back after the drained node left')
  await r.close()
})

test('a node that left without a drain is still waited for by the R=1 objects it took; vgrid node forget gives them up (bb28: not on the roll)', async t => {
  const { g, api, id, far } = await oneCopyVolume(t, '/p/left')
  const a0 = g.nodes[0]!.agent
  const a2 = g.nodes[far]!.agent
  t.true((await gvsOf(a2).store.list(id)).length > 0)
  const a2id = a2.id
  // a graceful leave: its VM manager takes it off the roll, then the agent goes
  await g.nodes[far]!.dvmm.stop({ graceful: true, leave: true })
  await a2.stop({ graceful: true, leave: true })
  await until(() => a0.state.read().get('roll', a2id) == null && a0.membership.members.get(a2id)?.state !== 'alive', 20_000, 'the node left the roll')
  const info = async (): Promise<string> => JSON.stringify((await api.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json())
  await eventually(async () => /unavailable/.test(await info()), 30_000, 'its objects there unavailable')
  const dvmm = vmApi(t, g.nodes[0]!)
  const refused = await dvmm.inject({ method: 'DELETE', url: `/v1/nodes/${a2id}/roll` })
  t.is(refused.statusCode, 409, refused.body)
  t.regex(refused.body, /writes_only_there/)
  const forgot = await dvmm.inject({ method: 'DELETE', url: `/v1/nodes/${a2id}/roll?force=true` })
  t.is(forgot.statusCode, 200, forgot.body)
  t.like(forgot.json<{ writesGivenUp: string[], wasOnRoll: boolean }>(), { writesGivenUp: ['/p/left'], wasOnRoll: false })
  // given up: what it alone held reads as zeros, the rest as written, and nothing waits
  const r = await NbdClient.open(socketOf(a0), 'p/left')
  t.is((await r.read(0, OBJECTS * OBJECT_SIZE)).length, OBJECTS * OBJECT_SIZE)
  await r.close()
  t.is((await dvmm.inject({ method: 'DELETE', url: `/v1/nodes/${a2id}/roll?force=true` })).statusCode, 404, 'forgotten once')
})
