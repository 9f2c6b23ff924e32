// An agent restarted while its VMs run, through real agents in network namespaces:
// - killed (SIGKILL) and started again at once, before its fence timeout ends and long
//   before anyone may take its leases over, it finds its VMs through the driver and
//   adopts them: each VM process keeps its PID and start time, no run is added, the
//   leases keep their holder and epoch, and the watchdog never fired. The restarted
//   `vgrid agent` feeds its previous run's watchdog from its first moment, until that
//   run's last feed + (fence - watchdog timeout) (node/dvmm/watchdog/bridge.ts), so a
//   restart has the fence timeout, not just the watchdog's. This grid runs with
//   `--fence-timeout 20s` (watchdog 12 s), so adoption does not hang on how fast this
//   machine restarts an agent (from the build in dist/ 0.5-2 s here, from the
//   TypeScript sources 3-11 s: over the default 5 s fence at times; vm-volume-adopt
//   adopts with the default, retrying the restart until one is in time). An agent back too
//   late all the same finds its VMs killed by the watchdog: they run again, each once,
//   on its host or taken over by another, never overlapping (the second test waits
//   past the default watchdog on purpose);
// - a VM whose lease moved while the agent was down (its watchdog was gone too, and it
//   had no guard, as a VM an older release started, so it outlived them) is killed when
//   the agent comes back, not adopted; the run on the new holder is left alone.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { agentsRunBuild, e2e, Grid, secs } from '../harness/index.ts'
import { describeRuns, overlaps, recordingCommand, RunLog, startTicks, until } from '../harness/vm-runs.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/index.ts'

const CAPACITY = ['--capacity', 'cpu=2,mem=2G,disk=10G']
const build = agentsRunBuild()
/** the first test's fence timeout (its watchdog fires after 3/5 of it: 12 s) */
const FENCE_S = 20
/**
 * An agent whose API answers this soon after the SIGKILL (right after a feed) kept its
 * watchdog fed and found a majority within the fence timeout: it must adopt. Later,
 * the watchdog or its own fence may have killed the VMs first, and they must run again
 * without overlap.
 */
const ADOPT_WITHIN_MS = (FENCE_S - 4) * 1000
/** the first test's fence timeout and DVMM's takeover margin */
const TAKEOVER_MS = FENCE_S * 1000 + 1500

/** Creates `names` through h1's API and waits until each runs; the hosts that hold them. */
async function createVms (grid: Grid, log: RunLog, names: string[]): Promise<Map<string, string>> {
  const h1 = grid.host('h1')
  for (const name of names) {
    await h1.api('/v1/vms', 'POST', { name, driver: 'process', cpu: 0.25, memory: '32M', command: recordingCommand(log.file) })
  }
  await until('every VM to run', 60_000, async () => {
    const rows = (await h1.api<{ vms: VmRow[] }>('/v1/vms')).vms
    return rows.every(r => r.state === 'running') && names.every(n => log.live(n).length === 1) ? true : undefined
  })
  const rows = (await h1.api<{ vms: VmRow[] }>('/v1/vms')).vms
  return new Map(rows.map(r => [r.name, r.node!]))
}

e2e('an agent restarted within its fence timeout adopts its VMs (same PIDs, start times and leases); one back too late for its watchdog runs them again, never twice', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: [...CAPACITY, '--fence-timeout', `${FENCE_S}s`] })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  // spread placement puts some of 4 VMs on one host: that host is restarted
  const holders = await createVms(grid, log, ['a1', 'a2', 'a3', 'a4'])
  const counts = new Map<string, number>()
  for (const h of holders.values()) counts.set(h, (counts.get(h) ?? 0) + 1)
  const victim = grid.host([...counts].sort((a, b) => b[1] - a[1])[0]![0])
  const mine = [...holders].filter(([, h]) => h === victim.name).map(([vm]) => vm).sort()
  const before = new Map(mine.map(vm => { const r = log.live(vm)[0]!; return [vm, { pid: r.pid, ticks: startTicks(r.pid) }] }))
  const leasesBefore = new Map(await Promise.all(mine.map(async vm => [vm, (await victim.api<VmDetail>(`/v1/vms/${vm}`)).lease] as const)))
  t.log(`${victim.name} runs ${mine.join(', ')}; killing its agent and starting it again`)

  // killed right after it fed its watchdog: the restart gets the whole watchdog timeout
  const killedAt = await victim.killAfterFeed()
  // the API starts after the VM manager, which fed the watchdog as it found its VMs
  const upMs = Date.now() - killedAt
  const inTime = upMs <= ADOPT_WITHIN_MS
  t.log(`${victim.name}'s agent answered again ${secs(upMs)} after the SIGKILL (${build.ok ? 'from the build in dist/' : build.reason})`)
  await grid.waitAllAlive(30_000)

  if (!inTime) {
    // too late for its fence: the VMs were killed; they run again, each once,
    // on this host (its leases are still its own) or, taken over, on another
    const fired = victim.watchdogFired()
    await until('every VM of the restarted host to run again, once', 60_000, async () => {
      log.poll()
      const rows = await grid.host('h1').api<{ vms: VmRow[] }>('/v1/vms')
      return mine.every(vm => log.live(vm).length === 1 && rows.vms.find(r => r.name === vm)?.state === 'running' &&
        rows.vms.find(r => r.name === vm)?.node === log.live(vm)[0]!.host) ? true : undefined
    })
    await new Promise(resolve => setTimeout(resolve, 3000))
    log.poll()
    const kept = mine.filter(vm => log.live(vm)[0]?.pid === before.get(vm)!.pid)
    t.log(`back after the ${secs(ADOPT_WITHIN_MS)} bound: the watchdog fired ${fired} time(s), ${kept.length} of ${mine.length} VMs adopted anyway; runs:\n${describeRuns(log.runs, killedAt)}`)
    for (const vm of mine) t.is(log.live(vm).length, 1, `${vm} runs once`)
    t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')
    return
  }
  // past the time anyone could have taken a lease over, and any fence would have struck
  await new Promise(resolve => setTimeout(resolve, Math.max(0, killedAt + TAKEOVER_MS + 3000 - Date.now())))
  log.poll()
  t.is(victim.watchdogFired(), 0, 'the watchdog did not fire: the new agent fed it in time')
  for (const vm of mine) {
    const live = log.live(vm)
    t.is(live.length, 1, `${vm} runs once`)
    t.is(live[0]?.pid, before.get(vm)!.pid, `${vm} keeps its PID`)
    t.is(startTicks(live[0]!.pid), before.get(vm)!.ticks, `${vm} keeps its start time`)
    t.is(log.of(vm).length, 1, `${vm} was never started again`)
    const now = await grid.host('h1').api<VmDetail>(`/v1/vms/${vm}`)
    t.is(now.node, victim.name)
    t.is(now.epoch, leasesBefore.get(vm)!.epoch)
    t.is(now.state, 'running')
  }
  t.is(log.runs.length, 4, `no run was added anywhere:\n${describeRuns(log.runs, killedAt)}`)
  t.true(log.runs.every(r => r.endedAt == null))
  // the restarted agent knows them as its own: it stops one when asked
  await victim.api(`/v1/vms/${mine[0]!}/stop`, 'POST')
  await until(`${mine[0]!} to stop`, 30_000, () => { log.poll(); return log.live(mine[0]!).length === 0 ? true : undefined })
  t.is(log.of(mine[0]!)[0]!.how, 'term', 'stopped gracefully by the adopting agent')
})

e2e('an agent restarted after its watchdog fired finds its VMs gone: they run again, each once, never overlapping', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: CAPACITY })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const holders = await createVms(grid, log, ['w1', 'w2', 'w3'])
  const counts = new Map<string, number>()
  for (const h of holders.values()) counts.set(h, (counts.get(h) ?? 0) + 1)
  const victim = grid.host([...counts].sort((a, b) => b[1] - a[1])[0]![0])
  const mine = [...holders].filter(([, h]) => h === victim.name).map(([vm]) => vm).sort()
  const killedAt = Date.now()
  await victim.kill()
  // the server runs on without its agent until the watchdog has killed the VMs
  await until('the watchdog to kill the VMs', 30_000, () => { log.poll(); return victim.watchdogFired() > 0 && mine.every(vm => log.live(vm).length === 0) ? true : undefined })
  const firedAfter = Date.now() - killedAt
  await victim.start()
  t.log(`${victim.name} ran ${mine.join(', ')}; its watchdog killed them within ${secs(firedAfter)} of the SIGKILL; agent back after ${secs(Date.now() - killedAt)}`)
  await grid.waitAllAlive(30_000)
  await until('every VM to run again, once, where its lease says', 60_000, async () => {
    log.poll()
    const rows = (await grid.host('h1').api<{ vms: VmRow[] }>('/v1/vms')).vms
    return mine.every(vm => log.live(vm).length === 1 && rows.find(r => r.name === vm)?.state === 'running' &&
      rows.find(r => r.name === vm)?.node === log.live(vm)[0]!.host) ? true : undefined
  })
  await new Promise(resolve => setTimeout(resolve, 3000))
  log.poll()
  t.log(`runs:\n${describeRuns(log.runs, killedAt)}`)
  const rows = (await victim.api<{ vms: VmRow[] }>('/v1/vms')).vms
  for (const vm of mine) {
    const [old, next, ...more] = log.of(vm)
    t.is(more.length, 0, `${vm} ran twice in all: before and after`)
    t.true(old!.endedAt! < next!.startedAt, `${vm}: the new run started after the watchdog ended the old one`)
    t.is(next!.endedAt, undefined)
    const r = rows.find(x => x.name === vm)!
    // back on its own host with the same lease, or taken over by another with epoch 2
    t.is(r.epoch, r.node === victim.name ? 1 : 2, `${vm} on ${r.node ?? '-'} has the epoch of how it got there`)
  }
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')
})

/** the pid of the guard in the session of the VM process `pid` (drivers/host-base.ts), if any */
function guardOf (pid: number): number | undefined {
  const session = (p: number): string | undefined => { try { return readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[3] } catch { return undefined } }
  const sid = session(pid)
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      if (session(Number(e)) === sid && readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes('vgrid-guard')) return Number(e)
    } catch {}
  }
  return undefined
}

e2e('a VM whose lease moved while its agent was down is killed when the agent restarts, not adopted', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: CAPACITY })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const holders = await createVms(grid, log, ['m1'])
  const victim = grid.host(holders.get('m1')!)
  const other = grid.list.find(h => h !== victim)!
  const first = log.live('m1')[0]!

  // the server runs on but its agent and its watchdog are gone (a watchdog that died
  // or was never fed back), and the VM has no guard (started by an older release):
  // nothing on it kills the VM, so it outlives the lease
  const guard = guardOf(first.pid)
  t.truthy(guard, 'the VM has its guard')
  process.kill(guard!, 'SIGKILL')
  const wd = JSON.parse(readFileSync(join(victim.dataDir, 'dvmm/watchdog/pid.json'), 'utf8')) as { pid: number, startTicks: number }
  t.is(startTicks(wd.pid), wd.startTicks, 'the supervisor the agent recorded runs')
  const killedAt = Date.now()
  await victim.kill()
  if (startTicks(wd.pid) === wd.startTicks) process.kill(wd.pid, 'SIGKILL')
  const moved = await until('m1 to run on another host (epoch 2)', 60_000, async () => {
    const r = await other.api<VmRow>('/v1/vms/m1')
    return r.epoch === 2 && r.state === 'running' && log.live('m1').some(x => x.host !== victim.name) ? r : undefined
  })
  const second = log.live('m1').find(x => x.host !== victim.name)!
  t.log(`m1 moved from ${victim.name} to ${moved.node} ${secs(second.startedAt - killedAt)} after the SIGKILL; the old run (pid ${first.pid}) still runs`)
  t.not(moved.node, victim.name)
  t.is(first.endedAt, undefined, 'without agent, watchdog and guard the old run lives on (what the restart must clean up)')

  const restartAt = Date.now()
  await victim.start()
  await until('the restarted agent to kill the VM whose lease moved', 30_000, () => { log.poll(); return first.endedAt })
  t.log(`the restarted agent killed the old run ${secs(first.endedAt! - restartAt)} after it was started`)
  await grid.waitAllAlive(30_000)
  await new Promise(resolve => setTimeout(resolve, 3000))
  log.poll()
  t.is(first.how, 'gone')
  t.is(second.endedAt, undefined, 'the run on the new holder is left alone')
  t.is(log.runs.length, 2, `no third run:\n${describeRuns(log.runs, killedAt)}`)
  const row = await victim.api<VmDetail>('/v1/vms/m1')
  t.is(row.node, moved.node)
  t.is(row.epoch, 2)
  t.true(row.history.some(e => e.event === 'killed' && e.node === victim.name && /lease is/.test(e.detail ?? '')),
    `the restarted agent says why it killed it: ${JSON.stringify(row.history)}`)
})

e2e('SIGTERM (systemctl restart, an upgrade) stops the agent but not its VMs: the next run adopts them; SIGINT makes the node leave, its VMs stop and run elsewhere', async t => {
  const grid = await Grid.start(t, { hosts: 3, args: [...CAPACITY, '--fence-timeout', `${FENCE_S}s`] })
  await grid.waitAllAlive(30_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const holders = await createVms(grid, log, ['t1', 't2', 't3'])
  const victim = grid.host(holders.get('t1')!)
  const mine = [...holders].filter(([, h]) => h === victim.name).map(([vm]) => vm).sort()
  const before = new Map(mine.map(vm => [vm, log.live(vm)[0]!.pid]))
  const stoppedAt = Date.now()
  t.is(await victim.agent.kill('SIGTERM'), 0, 'the agent exits cleanly')
  log.poll()
  for (const vm of mine) t.is(log.live(vm)[0]?.pid, before.get(vm), `${vm} runs on while its agent is stopped`)
  // a stop asked meanwhile: not "stopped" while the VM runs on there under the grace
  const other = grid.list.find(h => h !== victim)!
  const stopping = await other.api<VmRow>('/v1/vms/t1/stop', 'POST')
  t.is(stopping.state, 'stopping', JSON.stringify(stopping))
  t.regex(stopping.reason ?? '', new RegExp(`its node ${victim.name} stopped for a restart: the VM runs there until its agent is back and stops it`))
  t.is((await other.api<VmRow>('/v1/vms/t1/start', 'POST')).state, 'unknown', 'started again before the agent is back (its node not alive: unknown, as the others): it adopts it as them')
  await victim.start()
  await grid.waitAllAlive(30_000)
  // past the time anyone could have taken a lease over
  await new Promise(resolve => setTimeout(resolve, Math.max(0, stoppedAt + TAKEOVER_MS + 3000 - Date.now())))
  log.poll()
  t.is(victim.watchdogFired(), 0, 'the watchdog did not fire: the new run fed it in time')
  for (const vm of mine) {
    t.is(log.live(vm)[0]?.pid, before.get(vm), `${vm} adopted: the same process`)
    t.is(log.of(vm).length, 1, `${vm} never started again`)
    const row = await grid.host('h1').api<VmDetail>(`/v1/vms/${vm}`)
    t.like(row, { node: victim.name, state: 'running', epoch: 1 })
  }
  // SIGINT: the node leaves; its VMs stop there and run again elsewhere, at once
  await victim.agent.kill('SIGINT')
  await until('the leaving node\'s VMs to run elsewhere', 60_000, async () => {
    log.poll()
    return mine.every(vm => log.live(vm).length === 1 && log.live(vm)[0]!.host !== victim.name) ? true : undefined
  })
  for (const vm of mine) t.is(log.of(vm)[0]?.how, 'term', `${vm} was stopped gracefully on the leaving node`)
  t.deepEqual(overlaps(log.runs).map(([a, b]) => `${a.vm}: ${a.host} pid ${a.pid} and ${b.host} pid ${b.pid}`), [], 'no two runs of one VM overlap')
})
