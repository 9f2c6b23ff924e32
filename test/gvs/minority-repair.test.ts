// A node that sees no majority of the roll repairs nothing: it cannot tell which copies
// are the newest (the majority may have written since), and a tester saw the minority
// side of a cut run a repair of its own that failed, reported on the volume.
import test from 'ava'
import { gvsOf, threeAgentsWithVolume } from './agent-grid.ts'
import { until } from '../dvmm/grid.ts'
import type { RepairRuns } from '../../node/gvs/repair-runs.ts'

const lastRepairs = (a: Parameters<typeof gvsOf>[0]): RepairRuns['last'] => (gvsOf(a) as unknown as { repairs: RepairRuns }).repairs.last

test('left alone (1 of 3), a node runs no repair; with a majority in sight it does', async t => {
  const { agents, id } = await threeAgentsWithVolume(t, '/minority/v', 4)
  const [a, b, c] = agents
  // b and c gone: a sees 1 of 3 and coordinates every volume alone
  await b.stop({ graceful: false })
  await c.stop({ graceful: false })
  await until(() => [...a.membership.members.values()].filter(m => m.state === 'alive').length === 1, 30_000, 'a to see itself alone')
  t.truthy(gvsOf(a).noMajority())
  const before = lastRepairs(a).get(id)
  await gvsOf(a).reconcile()
  t.is(lastRepairs(a).get(id), before, 'no repair run, none reported')
  // as a contrast: the same pass with the majority test answered yes repairs
  const records = (gvsOf(a) as unknown as { writeIntervals: { noMajority: () => string | null } }).writeIntervals
  records.noMajority = () => null
  await gvsOf(a).reconcile()
  t.not(lastRepairs(a).get(id), before, 'a pass with a majority runs the repair')
})
