// `vol repair` through a node that does not coordinate the volume: right after it says
// "repaired", `vol info` through that node says what that repair found, not the
// coordinator's view from before it (bb24 read "degraded: the last repair could not make
// 1 copy" for a few seconds after "repaired; copied 1").
import test from 'ava'
import { threeAgentsWithVolume, gvsOf } from './agent-grid.ts'
import { coordinatorOf } from '../../node/gvs/health.ts'

interface Health { state: string, reasons: string[], lastRepair: { node: string, at: number } | null }

test('after a repair through a node that does not coordinate the volume, that node shows its own view until the coordinator\'s next pass', async t => {
  const { agents, ids, api, id } = await threeAgentsWithVolume(t, '/r/data', 4)
  const coord = coordinatorOf(id, ids)!
  const other = ids.findIndex(n => n !== coord)
  // the coordinator's last pass could not make a copy (as when a holder was away)
  const c = gvsOf(agents[ids.indexOf(coord)]!)
  c.lastRepairs.set(id, { node: coord, at: Date.now() - 1000, copied: 0, failed: 1, bytes: 0, lost: 0, errors: ['copy of object 1 failed (test)'], lostObjects: [] })
  const health = async (): Promise<Health> => (await api[other]!.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<{ health: Health }>().health
  const before = await health()
  t.is(before.state, 'degraded', JSON.stringify(before))
  t.true(before.reasons.some(r => /the last repair could not make 1 object copy/.test(r)), JSON.stringify(before.reasons))
  const repaired = await api[other]!.inject({ method: 'POST', url: `/v1/volumes/${id}/repair`, payload: {} })
  t.is(repaired.statusCode, 200, repaired.body)
  t.is(repaired.json<{ health: string }>().health, 'healthy')
  const after = await health()
  t.is(after.state, 'healthy', JSON.stringify(after))
  t.is(after.lastRepair?.node, ids[other], 'the repair just run is the last')
})
