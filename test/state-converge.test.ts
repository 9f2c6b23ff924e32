// Five agents each write 50 objects (node labels) at the same time: all end with the
// same heads and the same content, and every agent shows every label.
import test from 'ava'
import { startGrid, setLabel, waitConverged, nodesOf, metricValue } from './state-grid.ts'

test('5 agents x 50 concurrent writes converge to identical heads and content', async t => {
  const { agents, group } = await startGrid(t, 5)
  const names = agents.map(a => a.opts.name)
  // agent i writes 10 labels on each of the 5 nodes, all requests in flight together
  const writes = agents.flatMap((a, i) => Array.from({ length: 50 }, (_, j) => ({ a, node: names[j % 5]!, key: `w${i}-${j}`, value: `v${i}.${j}` })))
  const t0 = Date.now()
  const statuses = await Promise.all(writes.map(async w => await setLabel(w.a, w.node, w.key, w.value)))
  t.deepEqual([...new Set(statuses)], [200], 'every write was acknowledged')
  const writeMs = Date.now() - t0

  const states = await waitConverged(agents, 30_000).catch(err => { t.log(group.logs()); throw err })
  t.log(`250 writes acknowledged in ${writeMs} ms; converged ${Date.now() - t0} ms after the first write`)
  for (const s of states) {
    t.is(s.counts.nodeLabels, 250)
    t.is(s.counts.invalid, 0)
    t.is(s.history.changes, states[0]!.history.changes)
  }

  // the content, as every agent shows it in its node views
  const expected = new Map<string, Record<string, string>>(names.map(n => [n, {}]))
  for (const w of writes) expected.get(w.node)![w.key] = w.value
  for (const a of agents) {
    const nodes = await nodesOf(a)
    for (const n of names) t.deepEqual(nodes.get(n)?.labels, expected.get(n), `${a.opts.name} shows ${n}'s labels`)
  }
  // the changes travelled over the sync protocol, and nothing was refused
  for (const a of agents) {
    const m = await a.metrics()
    t.true(metricValue(m, 'vgrid_state_changes_total', 'origin="remote"') >= 200, `${a.opts.name} received the others' changes`)
    t.is(metricValue(m, 'vgrid_state_sync_rejected_total', 'reason="schema"'), 0)
  }
})
