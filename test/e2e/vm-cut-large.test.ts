// A host cut off from all others in a grid of more than five (network namespaces,
// firewall rules), where each node hears heartbeats from only a few members: it must
// lose sight of the majority through the liveness table its heartbeat streams carry
// (protocol/liveness.ts) and kill its VMs before they start elsewhere, and the takeover
// must not wait for the silence timeout (at least 30 s, which a takeover waited before
// the table existed: then the cut host's VM ran elsewhere 38-42 s after the cut).
// Every run's start and end comes from the VM processes; no two runs of one VM overlap.
import { join } from 'node:path'
import { e2e, Grid, secs } from '../harness/index.ts'
import { checkRunsOnceAfterHeal, describeRuns, recordingCommand, RunLog, until } from '../harness/vm-runs.ts'
import type { VmRow } from '../../node/dvmm/index.ts'

const HOSTS = 7
const VMS = Array.from({ length: HOSTS }, (_, i) => `q${i + 1}`)
/** the agent's fence timeout (node/agent.ts) */
const FENCE_MS = 5000
/** the default silence timeout: a takeover that waited for it would start no sooner than this after the cut */
const SILENCE_MS = 30_000

const rowsOf = async (h: { api: <T>(p: string) => Promise<T> }): Promise<VmRow[]> => (await h.api<{ vms: VmRow[] }>('/v1/vms')).vms

e2e('7 hosts, one cut off from all: it kills its VM, which runs elsewhere well before the silence timeout and only afterwards; healed, each VM runs once', async t => {
  const grid = await Grid.start(t, { hosts: HOSTS, args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  await grid.waitAllAlive(60_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const h1 = grid.host('h1')
  // every node advertises a liveness window: takeovers wait it, not the silence timeout
  const nodes = (await h1.api<{ nodes: Array<{ name: string, livenessMs: number | null }> }>('/v1/nodes')).nodes
  t.true(nodes.length === HOSTS && nodes.every(n => n.livenessMs != null && n.livenessMs > 0), JSON.stringify(nodes.map(n => [n.name, n.livenessMs])))
  // once every node has seen every other's window for a silence timeout (a holder's view
  // of the adverts may lag a taker's), `vgrid ha` says the failover counts the window
  type Ha = { failover?: { ms: number, why: string } }
  await until('every host to count the liveness window in its failover wait', 90_000, async () =>
    (await Promise.all(grid.list.map(async h => (await h.api<Ha>('/v1/ha')).failover))).every(f => f != null && f.ms < SILENCE_MS && /liveness window/.test(f.why)) ? true : undefined)
  t.log(`failover wait (h1): ${(await h1.api<Ha>('/v1/ha')).failover?.why ?? ''}`)
  // one anti-affinity group: one VM on each host
  for (const name of VMS) await h1.api('/v1/vms', 'POST', { name, driver: 'process', cpu: 0.25, memory: '32M', antiAffinity: 'q', command: recordingCommand(log.file) })
  await until('every VM to run once', 90_000, async () =>
    (await rowsOf(h1)).every(r => r.state === 'running') && VMS.every(v => log.live(v).length === 1) ? true : undefined)
  const before = new Map((await rowsOf(h1)).map(r => [r.name, r.node!]))
  // the host to cut: one with a VM, not h1 (asked below)
  const [vm, cutHost] = [...before.entries()].find(([, h]) => h !== 'h1')!
  const firstRun = log.live(vm)[0]!
  t.log(`placed: ${VMS.map(v => `${v}@${before.get(v)}`).join(' ')}; cutting ${cutHost} from all`)

  const cutAt = Date.now()
  await grid.cut(cutHost)
  const moved = await until(`${vm} to run elsewhere with epoch 2`, 90_000, async () => {
    const r = (await rowsOf(h1)).find(x => x.name === vm)
    return r?.state === 'running' && r.epoch === 2 && r.node !== cutHost && log.live(vm).some(x => x.host !== cutHost) ? r : undefined
  })
  log.poll()
  t.log(`after the cut:\n${describeRuns(log.runs, cutAt)}`)
  const next = log.of(vm).find(x => x !== firstRun)!
  t.not(firstRun.endedAt, undefined, `${cutHost} killed its run of ${vm}`)
  t.is(firstRun.how, 'gone', 'killed (fenced), not stopped')
  t.true(firstRun.endedAt! < next.startedAt, `started elsewhere (${secs(next.startedAt - cutAt)}) only after the cut host's run ended (${secs(firstRun.endedAt! - cutAt)})`)
  t.true(next.startedAt - cutAt >= FENCE_MS, 'not before the fence timeout')
  t.true(next.startedAt - cutAt < SILENCE_MS, `started elsewhere ${secs(next.startedAt - cutAt)} after the cut: before the silence timeout, which the liveness table spares`)
  t.is(moved.node, next.host)
  t.is(await grid.host(cutHost).metric('vgrid_dvmm_fenced'), 1, `${cutHost} is fenced`)
  for (const v of VMS) if (v !== vm) t.is(log.of(v).length, 1, `${v}, on a host not cut, ran on untouched`)

  await grid.heal(cutHost)
  await grid.waitAllAlive(60_000)
  await checkRunsOnceAfterHeal(t, grid.list, grid.host(cutHost), log, VMS, 40_000)
  t.is(await grid.host(cutHost).metric('vgrid_dvmm_fenced'), 0, `${cutHost} is no longer fenced`)
})
