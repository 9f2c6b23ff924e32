// The VM manager across real agents in network namespaces: a process VM runs on one
// host; its holder's agent is killed with SIGKILL, or hangs (SIGSTOP), while the
// "server" runs on. The
// holder's fencing watchdog kills the VM it left behind before the fence timeout
// ends, and only after fence timeout + margin does another host start the VM (epoch
// 2): no two runs overlap, checked from the VM processes' own start and exit times.
// The agent, restarted (or resumed), finds its old VM gone and does not start it again.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { e2e, Grid, secs } from '../harness/index.ts'
import { simpleRuns, until } from '../harness/vm-runs.ts'
import type { VmDetail, VmRow } from '../../node/dvmm/index.ts'

/** the agent's fence timeout (node/agent.ts) and DVMM's takeover margin: no takeover starts before both passed */
const FENCE_MS = 5000
const TAKEOVER_MS = FENCE_MS + 1500

const runsIn = simpleRuns

// 'SIGKILL+watchdog': the agent and its watchdog's supervisor both (a kill -9 of both,
// a cgroup kill of the service): the VM's guard ends it
for (const how of ['SIGKILL', 'SIGSTOP', 'SIGKILL+watchdog'] as const) {
e2e(`a holder whose agent gets ${how} has its VM fenced by its watchdog, then run on another host; runs never overlap`, async t => {
  const grid = await Grid.start(t, { hosts: 3, args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  await grid.waitAllAlive(20_000)
  const runs = join(grid.dir, 'runs.log')
  const h1 = grid.host('h1')
  await h1.api('/v1/vms', 'POST', {
    name: 'web',
    driver: 'process',
    cpu: 0.25,
    memory: '32M',
    // each run records its pid and start time (ms) in a file outside every namespace
    command: ['/bin/sh', '-c', `echo "$$ $(date +%s%3N)" >> ${runs}; exec sleep 100000`]
  })
  const first = await until('the VM to run', 60_000, () => runsIn(runs)[0])
  const row = await h1.api<VmRow>('/v1/vms/web')
  t.is(row.epoch, 1)
  const holder = grid.host(row.node!)
  const others = grid.list.filter(h => h !== holder)
  t.log(`web runs on ${holder.name} (pid ${first.pid})`)

  // watch the first run's process from outside: when does it end?
  let endedAt: number | undefined
  const watch = setInterval(() => { if (endedAt == null && !existsSync(`/proc/${first.pid}`)) endedAt = Date.now() }, 20)
  t.teardown(() => clearInterval(watch))

  const killedAt = Date.now()
  // SIGSTOP: the agent hangs while its server runs on; nothing of it answers or feeds the watchdog
  if (how === 'SIGSTOP') process.kill(holder.agent.pid!, 'SIGSTOP')
  else {
    const supervisor = how === 'SIGKILL+watchdog' ? (JSON.parse(readFileSync(join(holder.dataDir, 'dvmm/watchdog/pid.json'), 'utf8')) as { pid: number }).pid : undefined
    await holder.kill()
    if (supervisor != null) process.kill(supervisor, 'SIGKILL')
  }
  const second = await until('the VM to run on another host', 90_000, () => runsIn(runs)[1])
  clearInterval(watch)
  const moved = await others[0]!.api<VmRow>('/v1/vms/web')
  t.log(`killed ${holder.name}'s agent; its VM ended after ${secs((endedAt ?? NaN) - killedAt)} (watchdog), web ran again on ${moved.node} after ${secs(second.startedAt - killedAt)}`)

  t.not(endedAt, undefined, 'the watchdog killed the VM the dead agent left behind')
  t.true(endedAt! - killedAt < TAKEOVER_MS, 'before any other host may take the lease over')
  t.true(second.startedAt > endedAt!, 'the new run starts after the old one ended: no overlap')
  t.true(second.startedAt - killedAt >= FENCE_MS, 'and not before the fence timeout after the holder was last heard from')
  t.not(moved.node, holder.name)
  t.is(moved.epoch, 2)
  t.is(runsIn(runs).length, 2)

  // the old holder comes back: the lease is not its own, so it runs nothing
  if (how === 'SIGSTOP') process.kill(holder.agent.pid!, 'SIGCONT')
  else await holder.restart()
  await grid.waitAllAlive(30_000)
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.is(runsIn(runs).length, 2, 'no third run')
  t.is((await holder.api<VmRow>('/v1/vms/web')).node, moved.node)
  // its history says what ended the old run: the watchdog, when it fired (not when the agent came back)
  const history = (await holder.api<VmDetail>('/v1/vms/web')).history
  const kill = history.find(e => e.event === 'killed' && e.node === holder.name)
  t.log(`${holder.name}'s history: ${history.map(e => `${e.at} ${e.event} ${e.node ?? ''} ${e.detail ?? ''}`).join(' | ')}`)
  t.regex(kill?.detail ?? '', how === 'SIGKILL+watchdog' ? /killed by its guard at .*the fencing watchdog's supervisor was gone/ : /fencing watchdog/, 'the kill is the watchdog\'s')
  // the watchdog marks the run as it kills it; its process is gone from /proc once reaped
  const killAt = Date.parse(kill!.at)
  t.true(killAt > killedAt && killAt <= endedAt! + 200, `logged when the watchdog killed it (${kill!.at}; the agent was ${how === 'SIGSTOP' ? 'stopped' : 'killed'} at ${new Date(killedAt).toISOString()}, the run's process was gone at ${new Date(endedAt!).toISOString()})`)
  // and every host's history shows it (the lease's log has it), not the old holder's alone
  for (const h of grid.list.filter(x => x !== holder)) {
    // (a stalled holder first waits to hear the grid again, 6.5 s, and a lease it wrote just before its stall may be contested until the new holder writes it again)
    await until(`${h.name}'s history to show the kill on ${holder.name}`, 30_000, async () =>
      (await h.api<VmDetail>('/v1/vms/web')).history.some(e => e.event === 'killed' && e.node === holder.name && e.at === kill!.at && e.local !== true) ? true : undefined)
  }

  // removing the VM stops it on its holder; every host ends with nothing of it
  await h1.api('/v1/vms/web', 'DELETE')
  await until('the second run to end', 30_000, () => existsSync(`/proc/${second.pid}`) ? undefined : true)
})
}
