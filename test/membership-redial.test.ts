// A member the gossip table forgot (down, or across a partition, longer than
// --forget-after) is still dialled while it is on the grid's roll: when it is back,
// with no way of its own to find the others (no join address, no peer book, no mDNS),
// they find it. Before, each side dropped the other's addresses and a long split never
// healed (a tester's 2 + 3 split of six minutes, on mDNS-found members).
import test from 'ava'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentGroup, waitFor } from './helpers/agent-process.ts'
import type { NodesView } from '../node/api/types.ts'

const group = new AgentGroup()
test.after.always(async () => { await group.cleanup() })

test('a member forgotten by the gossip table but on the roll is dialled again, and rejoins', async t => {
  const timing = ['--forget-after', '8s', '--capacity', 'cpu=2,mem=2G,disk=10G']
  const a = await group.add({ name: 'ra', args: timing })
  const key = join(a.opts.dataDir, 'cluster.key')
  const b = await group.add({ name: 'rb', args: ['--key', key, '--join', a.listen, ...timing] })
  const cArgs = ['--key', key, '--join', a.listen, ...timing]
  const c = await group.add({ name: 'rc', args: cArgs })
  const nodes = async (): Promise<NodesView> => await a.get<NodesView>('/v1/nodes')
  await waitFor(async () => (await nodes()).nodes.filter(n => n.state === 'alive').length === 3, 30_000, 'all three alive')
  // on the roll: each records itself once it sees a majority
  await waitFor(async () => (await a.get<{ counts: Record<string, number> }>('/v1/state')).counts.roll === 3, 30_000, 'three on the roll')
  await c.kill('SIGKILL')
  await waitFor(async () => (await nodes()).unseen.some(u => u.name === 'rc'), 40_000, 'rc forgotten by ra\'s table (listed unseen)')
  // back with no way to find the others itself: no join address, no peer book
  await rm(join(c.opts.dataDir, 'peers.json'), { force: true })
  cArgs.splice(cArgs.indexOf('--join'), 2)
  await c.start()
  await waitFor(async () => (await nodes()).nodes.some(n => n.name === 'rc' && n.state === 'alive'), 40_000, 'rc alive again on ra', () => undefined)
  // rb hears of it from ra's gossip or its own dial, a moment later under load
  await waitFor(async () => (await b.get<NodesView>('/v1/nodes')).nodes.some(n => n.name === 'rc' && n.state === 'alive'), 20_000, 'rc alive again on rb', () => undefined)
  t.pass()
})
