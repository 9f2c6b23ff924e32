// A member that stalls longer than the dead timeout (a paused VM, a swap storm, a long
// GC) is declared dead, and must come back on its own without anyone else being
// doubted on its account.
import test from 'ava'
import { join } from 'node:path'
import { AgentGroup, type AgentProcess, waitFor } from './helpers/agent-process.ts'
import type { StatusView, NodeView } from '../node/api/types.ts'
import { DEFAULT_MEMBERSHIP, deadTimeoutMs } from '../protocol/membership.ts'
import { DEFAULT_TIMING } from '../protocol/membership-service.ts'

const group = new AgentGroup()
test.after.always(async () => { await group.cleanup() })

const statusOf = async (a: AgentProcess): Promise<StatusView> => await a.get<StatusView>('/v1/status')
const states = async (a: AgentProcess): Promise<Record<string, string>> =>
  Object.fromEntries((await a.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.map(n => [n.name, n.state]))

test('a member stalled past the dead timeout is dead meanwhile and rejoins after, and nobody else is doubted', async t => {
  const seed = await group.add({ name: 's0' })
  const keyFile = join(seed.opts.dataDir, 'cluster.key')
  const rest = await Promise.all([1, 2, 3].map(async i => await group.add({ name: `s${i}`, args: ['--key', keyFile, '--join', seed.listen] })))
  const agents = [seed, ...rest]
  await waitFor(async () => (await Promise.all(agents.map(statusOf))).every(s => s.members.alive === 4), 10_000, 'every agent sees 4 alive')
  const stalled = rest[2]!
  const others = agents.filter(a => a !== stalled)

  // watch every healthy agent's view of the others, every 100 ms, through the stall and the return
  const doubted = new Set<string>()
  let watching = true
  const watch = (async () => {
    while (watching) {
      for (const a of others) {
        const s = await states(a).catch(() => ({}))
        for (const [name, state] of Object.entries(s)) if (name !== stalled.opts.name && state !== 'alive') doubted.add(`${a.opts.name} held ${name} ${state}`)
      }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  })()

  process.kill(stalled.proc!.pid!, 'SIGSTOP')
  const stallMs = deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs) + 5000
  try {
    await waitFor(async () => (await Promise.all(others.map(states))).every(s => s[stalled.opts.name] === 'dead'),
      deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs) + 1000, 'the stalled member dead everywhere')
    await new Promise(resolve => setTimeout(resolve, stallMs - deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs)))
  } finally {
    process.kill(stalled.proc!.pid!, 'SIGCONT')
  }
  const back = await waitFor(async () => (await Promise.all(agents.map(statusOf))).every(s => s.members.alive === 4), 15_000, 'every agent sees 4 alive again')
  t.log(`stalled ${stallMs} ms; all 4 alive again ${back} ms after it resumed`)
  await new Promise(resolve => setTimeout(resolve, 3000))
  watching = false
  await watch
  t.deepEqual([...doubted], [], 'no healthy member was suspected')
  // the peers hung up on it while it was stalled: no reason to suspect them when it resumes
  const raised = (await stalled.metrics()).split('\n').find(l => l.startsWith('vgrid_suspicions_total{origin="local"}'))
  t.is(raised == null ? 0 : Number(raised.split(' ').pop()), 0, 'the stalled member suspected nobody')
  t.deepEqual((await statusOf(stalled)).members, { alive: 4, suspect: 0, dead: 0, left: 0 })
})
