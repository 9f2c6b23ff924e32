// Nodes set with different fence timeouts (`--fence-timeout`), through real agents in
// network namespaces: h1 is set to 20 s, h2 and h3 keep the default 5 s. h1 holds a
// process VM; its agent gets SIGKILL while the server runs on.
// - h1 runs with 5 s all the same (activeFenceMs: h2 and h3 would take over after
//   their own 5 s + margin whatever h1 says): its fence record, its watchdog feed (3 s)
//   and the watchdog's kill, within about 3 s of the SIGKILL, say so;
// - h2 and h3 wait for the longest fence any node advertises (h1's 20 s) before they
//   start the VM: the new run starts 20 s + margin after h1 was last heard of, after
//   the old one ended, never overlapping.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { e2e, Grid, secs } from '../harness/index.ts'
import { simpleRuns, until } from '../harness/vm-runs.ts'
import type { VmRow } from '../../node/dvmm/index.ts'
import type { NodeView } from '../../node/api/types.ts'

const LONG_S = 20

const runsIn = simpleRuns

e2e('a node set longer than the others runs their fence timeout; the others wait for its longer one before they take its VM over', async t => {
  const grid = await Grid.start(t, {
    hosts: [{ name: 'h1', args: ['--fence-timeout', `${LONG_S}s`] }, 'h2', 'h3'],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  await grid.waitAllAlive(20_000)
  const [h1, h2, h3] = [grid.host('h1'), grid.host('h2'), grid.host('h3')]
  const nodes = new Map((await h2.api<{ nodes: NodeView[] }>('/v1/nodes')).nodes.map(n => [n.name, n.fenceTimeoutMs]))
  t.deepEqual(Object.fromEntries(nodes), { h1: LONG_S * 1000, h2: 5000, h3: 5000 }, 'each node advertises its setting')

  // the VM on h1: the other two drained while it is placed, then undrained
  // (a node's roll entry reaches h1 a moment after it is alive there: under CI's load the drain came first once)
  for (const h of [h2, h3]) await until(`${h.name} on h1's roll, drained`, 20_000, async () => await h1.api(`/v1/nodes/${h.name}/drain`, 'POST').then(() => true, async (e: Error) => /is not on the member roll/.test(e.message) ? undefined : await Promise.reject(e)))
  const runs = join(grid.dir, 'runs.log')
  await h1.api('/v1/vms', 'POST', { name: 'web', driver: 'process', cpu: 0.25, memory: '32M', command: ['/bin/sh', '-c', `echo "$$ $(date +%s%3N)" >> ${runs}; exec sleep 100000`] })
  const first = await until('the VM to run', 60_000, () => runsIn(runs)[0])
  t.is((await h1.api<VmRow>('/v1/vms/web')).node, 'h1')
  for (const h of [h2, h3]) await h1.api(`/v1/nodes/${h.name}/undrain`, 'POST')
  // and the others know it before h1 goes: a node still draining in their copy of the
  // document takes nothing over (under CI's load the SIGKILL came before the sync once)
  await until('the undrains to reach h2 and h3', 20_000, async () => {
    for (const h of [h2, h3]) if ((await h.api<{ nodes: NodeView[] }>('/v1/nodes')).nodes.some(n => n.name !== 'h1' && n.draining)) return undefined
    return true
  })

  // h1 runs 5 s: its record and its watchdog's feed
  const fenceFile = join(h1.dataDir, 'dvmm/fence.json')
  await until('h1\'s fence record', 20_000, () => existsSync(fenceFile) ? true : undefined)
  t.deepEqual(JSON.parse(readFileSync(fenceFile, 'utf8')), { activeMs: 5000 })
  const feed = JSON.parse(readFileSync(join(h1.dataDir, 'dvmm/watchdog/feed.json'), 'utf8')) as { timeoutMs: number, fenceMs: number }
  t.like(feed, { timeoutMs: 3000, fenceMs: 5000 })

  let endedAt: number | undefined
  const watch = setInterval(() => { if (endedAt == null && !existsSync(`/proc/${first.pid}`)) endedAt = Date.now() }, 20)
  t.teardown(() => clearInterval(watch))
  const killedAt = Date.now()
  await h1.kill()
  const second = await until('the VM to run on another host', 90_000, () => runsIn(runs)[1])
  clearInterval(watch)
  const moved = await h2.api<VmRow>('/v1/vms/web')
  t.log(`killed h1's agent: its VM ended after ${secs((endedAt ?? NaN) - killedAt)} (watchdog), web ran again on ${moved.node} after ${secs(second.startedAt - killedAt)}`)
  t.not(endedAt, undefined)
  // its 5 s fence's watchdog (3 s, from a feed up to 1 s before the SIGKILL), well before
  // the others' own 5 s + margin, not the setting's 12 s
  t.true(endedAt! - killedAt < 5000 + 1500, `h1's watchdog fired at its 5 s fence's 3 s (${endedAt! - killedAt} ms)`)
  t.true(second.startedAt - killedAt >= LONG_S * 1000, `the others waited for h1's ${LONG_S} s (${second.startedAt - killedAt} ms)`)
  t.true(second.startedAt > endedAt!, 'no overlap')
  t.not(moved.node, 'h1')
  t.is(moved.epoch, 2)
  t.is(runsIn(runs).length, 2)
})
