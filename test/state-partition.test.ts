// Two groups (2 and 3 agents) are cut apart, both write to the same keys and to
// different keys, and are joined again: all agents converge, and each contested key
// holds the value of the later write (the latest-write rule), whichever side made it.
//
// How the cut is made: every agent is told, through its test hook (VGRID_TEST_HOOKS=1,
// PUT /v1/state/test/blocked-peers), to refuse state sync with the other group: sync
// sessions are closed and refused and the other group's heads announcements are
// ignored. libp2p connections and membership gossip stay up, so this partitions the
// replication of the document, not the network.
import test from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { startGrid, setLabel, waitConverged, nodesOf, stateOf, call } from './state-grid.ts'
import { waitFor, type AgentProcess } from './helpers/agent-process.ts'

async function block (agents: AgentProcess[], peers: string[]): Promise<void> {
  for (const a of agents) {
    const r = await call(a, 'PUT', '/v1/state/test/blocked-peers', { peers })
    if (r.status !== 200) throw new Error(`block on ${a.opts.name}: ${r.status} ${JSON.stringify(r.body)}`)
  }
}

test('a 2+3 partition writes on both sides, heals, and contested keys resolve by latest-write', async t => {
  const { agents, ids, group } = await startGrid(t, 5, { env: { VGRID_TEST_HOOKS: '1' } })
  const [a0, a1, b0, b1, b2] = agents as [AgentProcess, AgentProcess, AgentProcess, AgentProcess, AgentProcess]
  const sideA = [a0, a1]
  const sideB = [b0, b1, b2]
  await block(sideA, ids.slice(2))
  await block(sideB, ids.slice(0, 2))
  const acrossCut = async (a: AgentProcess, i: number): Promise<number> =>
    (await stateOf(a)).peers.filter(p => p.session && (ids.indexOf(p.id) < 2) !== (i < 2)).length
  await waitFor(async () => (await Promise.all(agents.map(acrossCut))).every(n => n === 0), 10_000, 'sessions across the cut close')
  const ok = (status: number): void => { t.is(status, 200) }
  // same keys: A writes first then B on "zone"; B first then A on "tier"
  ok(await setLabel(a0, 'n0', 'zone', 'a-first'))
  await sleep(50)
  ok(await setLabel(b0, 'n0', 'zone', 'b-later'))
  ok(await setLabel(b1, 'n3', 'tier', 'b-first'))
  await sleep(50)
  ok(await setLabel(a1, 'n3', 'tier', 'a-later'))
  // different keys, and a burst on each side at the same time
  ok(await setLabel(a1, 'n1', 'only-a', '1'))
  ok(await setLabel(b2, 'n4', 'only-b', '1'))
  await Promise.all([
    ...Array.from({ length: 10 }, async (_, i) => ok(await setLabel(sideA[i % 2]!, 'n2', `a${i}`, 'x'))),
    ...Array.from({ length: 10 }, async (_, i) => ok(await setLabel(sideB[i % 3]!, 'n2', `b${i}`, 'y')))
  ])

  // each side agrees with itself and not with the other
  const dumpLogs = (err: unknown): never => { t.log(group.logs()); throw err }
  const [stA] = await waitConverged(sideA, 30_000, 'side A converges').catch(dumpLogs)
  const [stB] = await waitConverged(sideB, 30_000, 'side B converges').catch(dumpLogs)
  t.not(stA!.digest, stB!.digest)
  t.is((await nodesOf(a1)).get('n0')?.labels.zone, 'a-first')
  t.is((await nodesOf(b2)).get('n0')?.labels.zone, 'b-later')
  t.is((await nodesOf(a0)).get('n2')?.labels.b0, undefined, 'nothing crossed the cut')
  t.deepEqual(await Promise.all(agents.map(acrossCut)), [0, 0, 0, 0, 0], 'no session across the cut')

  // heal
  await block(agents, [])
  const states = await waitConverged(agents, 30_000, 'all five converge after the heal').catch(dumpLogs)
  for (const s of states) {
    t.is(s.counts.nodeLabels, 24)
    t.is(s.counts.contested, 2, 'zone and tier were written on both sides')
  }
  for (const a of agents) {
    const nodes = await nodesOf(a)
    t.is(nodes.get('n0')?.labels.zone, 'b-later', `${a.opts.name}: zone has the later write`)
    t.is(nodes.get('n3')?.labels.tier, 'a-later', `${a.opts.name}: tier has the later write`)
    t.is(nodes.get('n1')?.labels['only-a'], '1')
    t.is(nodes.get('n4')?.labels['only-b'], '1')
    t.is(Object.keys(nodes.get('n2')?.labels ?? {}).length, 20)
  }
  // a write after the heal settles a contest everywhere
  ok(await setLabel(b2, 'n0', 'zone', 'settled'))
  const after = await waitConverged(agents, 20_000, 'the settling write spreads')
  for (const s of after) t.is(s.counts.contested, 1)
})
