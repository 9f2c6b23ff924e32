// The restart grace (node/dvmm/restart-grace.ts), through real agents in network
// namespaces with the default 5 s fence timeout: SIGTERM (systemctl restart, an
// upgrade) asks every member to wait longer for this node, and once all have the
// record on disk the watchdog's last feed gives the VMs the grace instead of its usual
// 3 s. So:
// - an agent away for 8 s (longer than the usual takeover, 5 s fence + 1.5 s margin,
//   after which its VMs would have been killed and moved) adopts its VMs: same
//   processes, same leases, the watchdog never fired, and the others showed the node
//   `restarting` meanwhile, until the next run saw a majority;
// - an agent that does not come back has its VMs killed by its watchdog at the grace,
//   and they start elsewhere only after the grace's fence (5/3 of it) and margin, never
//   beside the old runs.
import { join } from 'node:path'
import { agentsRunBuild, e2e, Grid, secs, type Host } from '../harness/index.ts'
import { describeRuns, overlaps, recordingCommand, RunLog, until } from '../harness/vm-runs.ts'
import type { NodeView } from '../../node/api/types.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/index.ts'

const CAPACITY = ['--capacity', 'cpu=2,mem=2G,disk=10G']
const GRACE_MS = 15_000
/** the watchdog's timeout in the grace: the grace and the restarted agent's start-up (5 s) */
const GRACE_WATCHDOG_MS = GRACE_MS + 5000
/** what the others wait for a restarting node: 5/3 of its watchdog's timeout */
const GRACE_FENCE_MS = Math.ceil(GRACE_WATCHDOG_MS * 5 / 3)
const MARGIN_MS = 1500
/** away longer than the usual takeover (5 s fence + margin) */
const AWAY_MS = 8000
const build = agentsRunBuild()

const restartingOf = async (observer: Host, name: string): Promise<NodeView['restarting'] | undefined> =>
  (await observer.nodes()).find(n => n.name === name)?.restarting

e2e('SIGTERM under the default fence timeout: a restart slower than the watchdog\'s 3 s adopts its VMs under the restart grace; an agent that stays away has them killed by its watchdog before they run elsewhere', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: [...CAPACITY, '--restart-grace', `${GRACE_MS / 1000}s`] })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const h1 = grid.host('h1')
  for (const name of ['g1', 'g2', 'g3']) await h1.api('/v1/vms', 'POST', { name, driver: 'process', cpu: 0.25, memory: '32M', command: recordingCommand(log.file) })
  const rows = await until('every VM to run', 60_000, async () => {
    const r = (await h1.api<{ vms: VmRow[] }>('/v1/vms')).vms
    return r.every(x => x.state === 'running') && ['g1', 'g2', 'g3'].every(n => log.live(n).length === 1) ? r : undefined
  })
  const victim = grid.host(rows.find(r => r.name === 'g1')!.node!)
  const other = grid.list.find(h => h !== victim)!
  const mine = rows.filter(r => r.node === victim.name).map(r => r.name).sort()
  const before = new Map(mine.map(vm => [vm, log.live(vm)[0]!.pid]))

  // 1. a restart that takes longer than the usual takeover
  const stoppedAt = Date.now()
  t.is(await victim.agent.kill('SIGTERM'), 0, 'the agent exits cleanly')
  t.regex(victim.agent.log, /restart grace confirmed by every member/, 'every member confirmed the grace')
  t.like(await restartingOf(other, victim.name), { fenceMs: GRACE_FENCE_MS }, 'the others show the node restarting')
  await new Promise(resolve => setTimeout(resolve, Math.max(0, stoppedAt + AWAY_MS - Date.now())))
  log.poll()
  for (const vm of mine) t.is(log.live(vm)[0]?.pid, before.get(vm), `${vm} runs on ${secs(AWAY_MS)} after the stop, past the usual takeover`)
  await victim.start()
  const backMs = Date.now() - stoppedAt
  t.log(`${victim.name} ran ${mine.join(', ')}; its agent answered again ${secs(backMs)} after the SIGTERM (${build.ok ? 'from the build in dist/' : build.reason})`)
  await grid.waitAllAlive(30_000)
  await until('the next run to clear the restart record', 30_000, async () => await restartingOf(other, victim.name) === null ? true : undefined)
  // past the time anyone could have taken a lease over, with the grace or without
  await new Promise(resolve => setTimeout(resolve, Math.max(0, stoppedAt + GRACE_FENCE_MS + MARGIN_MS + 2000 - Date.now())))
  log.poll()
  // the watchdog fires only if the next run was not up (adopting) within the grace
  if (victim.watchdogFired() === 0) {
    for (const vm of mine) {
      t.is(log.live(vm)[0]?.pid, before.get(vm), `${vm} adopted: the same process`)
      t.is(log.of(vm).length, 1, `${vm} never started again`)
      t.like(await other.api<VmDetail>(`/v1/vms/${vm}`), { node: victim.name, state: 'running', epoch: 1 })
    }
  } else {
    // a machine too slow to start an agent within the grace: the VMs run again, never twice
    t.log(`back after the grace (the watchdog fired): runs:\n${describeRuns(log.runs, stoppedAt)}`)
  }
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')

  // 2. stopped for a restart that never comes
  const now = (await h1.api<{ vms: VmRow[] }>('/v1/vms')).vms
  const left = now.filter(r => r.node === victim.name).map(r => r.name).sort()
  if (left.length === 0) { t.log(`${victim.name} holds no VM any more: nothing to stop for good`); return }
  const fired = victim.watchdogFired()
  const oldRuns = new Map(left.map(vm => [vm, log.live(vm)[0]!]))
  const stopped2 = Date.now()
  t.is(await victim.agent.kill('SIGTERM'), 0)
  await until('the stopped node\'s VMs to run elsewhere', 90_000, async () => {
    log.poll()
    return left.every(vm => log.live(vm).length === 1 && log.live(vm)[0]!.host !== victim.name) ? true : undefined
  })
  t.log(`runs after the second SIGTERM:\n${describeRuns(log.runs, stopped2)}`)
  t.is(victim.watchdogFired(), fired + 1, 'its watchdog killed them')
  for (const vm of left) {
    const old = oldRuns.get(vm)!
    const next = log.live(vm)[0]!
    t.is(old.how, 'gone', `${vm} was killed (SIGKILL), not stopped`)
    // the watchdog's last feed is no earlier than the stop began: it fires only after the grace
    t.true(old.endedAt! - stopped2 >= GRACE_WATCHDOG_MS - 500, `${vm}: killed ${secs(old.endedAt! - stopped2)} after the stop, under the grace (not the usual 3 s)`)
    t.true(next.startedAt >= old.endedAt!, `${vm}: the new run started after the old one ended`)
    t.true(next.startedAt - stopped2 >= GRACE_FENCE_MS, `${vm}: taken over ${secs(next.startedAt - stopped2)} after the stop, after the grace's fence`)
  }
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')
})
