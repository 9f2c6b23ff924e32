// Invariant 3 across a real network partition: 5 hosts in network namespaces run 6
// `process` VMs; the network splits them 2 + 3 (firewall rules). The 2-side cannot see
// a majority of the member roll: after the fence timeout it kills its VMs itself.
// The 3-side takes those leases over (epoch + 1) only after fence timeout + margin
// from when it last heard the holders, and starts the VMs after the 2-side's runs
// ended. After healing, every VM runs exactly once, where every host says it runs.
// Every run's start and end comes from the VM processes (their own records, and
// their pids watched from outside), and no two runs of one VM overlap.
import { join } from 'node:path'
import { e2e, Grid, secs } from '../harness/index.ts'
import { checkRunsOnceAfterHeal, describeRuns, recordingCommand, RunLog, until } from '../harness/vm-runs.ts'
import type { VmRow } from '../../node/dvmm/index.ts'

const VMS = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']
/** the agent's fence timeout (node/agent.ts) */
const FENCE_MS = 5000

const rowsOf = async (h: { api: <T>(p: string) => Promise<T> }): Promise<VmRow[]> => (await h.api<{ vms: VmRow[] }>('/v1/vms')).vms

e2e('a 2 + 3 partition: the 2-side kills its VMs, the 3-side starts them only afterwards; healed, each VM runs once', async t => {
  const grid = await Grid.start(t, { hosts: 5, args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  await grid.waitAllAlive(40_000)
  const log = new RunLog(join(grid.dir, 'runs.log')).watch()
  t.teardown(() => { log.stop() })
  const h1 = grid.host('h1')
  // one anti-affinity group: spread over all 5 hosts, so every split has VMs on both sides
  for (const name of VMS) await h1.api('/v1/vms', 'POST', { name, driver: 'process', cpu: 0.25, memory: '32M', antiAffinity: 'p', command: recordingCommand(log.file) })
  await until('every VM to run once', 60_000, async () =>
    (await rowsOf(h1)).every(r => r.state === 'running') && VMS.every(v => log.live(v).length === 1) ? true : undefined)
  const before = new Map((await rowsOf(h1)).map(r => [r.name, r.node!]))

  // the 2-side: of all pairs of hosts, one that leaves the most VMs on the smaller side, then on the 2-side
  const load = (h: string): number => [...before.values()].filter(n => n === h).length
  const names = grid.list.map(h => h.name)
  const pairs = names.flatMap((a, i) => names.slice(i + 1).map(b => [a, b]))
  const onSide = (side: string[]): number => side.reduce((n, h) => n + load(h), 0)
  const score = (p: string[]): number => Math.min(onSide(p), VMS.length - onSide(p)) * 10 + onSide(p)
  const sideA = pairs.sort((x, y) => score(y) - score(x))[0]!
  const sideB = names.filter(n => !sideA.includes(n))
  const onA = VMS.filter(v => sideA.includes(before.get(v)!))
  const onB = VMS.filter(v => sideB.includes(before.get(v)!))
  t.log(`placed: ${VMS.map(v => `${v}@${before.get(v)}`).join(' ')}; cutting ${sideA.join('+')} from ${sideB.join('+')}`)
  t.true(onA.length > 0 && onB.length > 0, 'VMs on both sides')
  const firstRun = new Map(VMS.map(v => [v, log.live(v)[0]!]))

  const cutAt = Date.now()
  for (const a of sideA) await grid.cut(a, { from: sideB })
  const b0 = grid.host(sideB[0]!)
  const moved = await until('the 2-side VMs to run on the 3-side with epoch 2', 90_000, async () => {
    const rows = await rowsOf(b0)
    const ok = onA.every(v => {
      const r = rows.find(x => x.name === v)
      return r?.state === 'running' && r.epoch === 2 && sideB.includes(r.node!) && log.live(v).some(x => sideB.includes(x.host))
    })
    return ok ? rows : undefined
  })
  log.poll()
  t.log(`after the cut:\n${describeRuns(log.runs, cutAt)}`)
  for (const v of onA) {
    const old = firstRun.get(v)!
    const next = log.of(v).find(x => x !== old)!
    t.not(old.endedAt, undefined, `${v}: the 2-side killed its run`)
    t.is(old.how, 'gone', `${v}: killed (fenced), not stopped`)
    t.true(old.endedAt! < next.startedAt, `${v}: the 3-side started it (${secs(next.startedAt - cutAt)}) only after the 2-side's run ended (${secs(old.endedAt! - cutAt)})`)
    t.true(next.startedAt - cutAt >= FENCE_MS, `${v}: not before the fence timeout`)
    t.is(moved.find(r => r.name === v)!.node, next.host)
  }
  for (const v of onB) t.is(firstRun.get(v)!.endedAt, undefined, `${v} on the 3-side ran on untouched`)
  // the 2-side says why: it is fenced, and it killed what it ran
  for (const a of sideA) {
    const h = grid.host(a)
    t.is(await h.metric('vgrid_dvmm_fenced'), 1, `${a} is fenced`)
    t.is(await h.metric('vgrid_dvmm_kills_total', { why: 'fenced' }), load(a), `${a} killed its ${load(a)} VM(s) as fenced`)
    // and says it cannot tell where the others' VMs run, not that they run nowhere
    const causes = (await h.api<{ health: { problems: Array<{ cause: string }> } }>('/v1/status')).health.problems.map(p => p.cause)
    t.true(causes.includes('fenced'), `${a}: ${causes.join(', ')}`)
    t.false(causes.includes('vms-stranded') || causes.includes('vms-unplaced'), `${a}: ${causes.join(', ')}`)
    for (const r of await rowsOf(h)) if (onB.includes(r.name)) t.regex(r.reason ?? '', /not in sight of this node.*not known here/, `${a} on ${r.name}`)
  }
  // and creates nothing the other side could create under the same name meanwhile (the
  // merge would keep one, and drop the other long after its 201)
  const cutOff = grid.host(sideA[0]!)
  const vmErr = await t.throwsAsync(cutOff.api('/v1/vms', 'POST', { name: 'cut-off', driver: 'process', cpu: 0.25, memory: '32M', command: ['/bin/sleep', '600'] }))
  t.regex(vmErr?.message ?? '', /: 409 .*"no_majority".*no majority.*a VM created here could collide/)
  const volErr = await t.throwsAsync(cutOff.api('/v1/volumes', 'POST', { path: '/cut-off', size: '16M' }))
  t.regex(volErr?.message ?? '', /: 409 .*"no_majority".*no majority.*a volume created here could take a path/)
  // nor drains a node: the change would take effect only after the heal (bb34: answered "draining", exit 0)
  const drainErr = await t.throwsAsync(cutOff.api(`/v1/nodes/${sideB[0]!}/drain`, 'POST', {}))
  t.regex(drainErr?.message ?? '', /: 409 .*"no_majority".*a drain written here would take effect only once this node sees one again/)
  // nor stops, starts or removes a VM of the other side (bb49: "stopped" while it ran on the majority side until the heal)
  // nor of its own side, which the 3-side took over (rv50: its document still names this side the holder)
  const there = onB[0]!
  const here = onA[0]!
  for (const [path, method, what] of [[`/v1/vms/${there}/stop`, 'POST', 'stop'], [`/v1/vms/${there}/start`, 'POST', 'start'], [`/v1/vms/${there}`, 'DELETE', 'rm'], [`/v1/vms/${here}/stop`, 'POST', 'stop'], [`/v1/vms/${here}`, 'DELETE', 'rm']] as const) {
    const err = await t.throwsAsync(cutOff.api(path, method))
    t.regex(err?.message ?? '', new RegExp(`: 409 .*"no_majority".*a ${what} written here would take effect only once this node sees one again`))
  }

  const healedAt = Date.now()
  for (const a of sideA) await grid.heal(a)
  await grid.waitAllAlive(40_000)
  await checkRunsOnceAfterHeal(t, grid.list, grid.host(sideA[0]!), log, VMS, 30_000)
  t.log(`healed ${secs(Date.now() - healedAt)} ago; every run since the start:\n${describeRuns(log.runs, cutAt)}`)
  t.is(log.runs.length, VMS.length + onA.length, 'one run per VM, plus one per moved VM')
  for (const a of sideA) t.is(await grid.host(a).metric('vgrid_dvmm_fenced'), 0, `${a} is no longer fenced`)
  // the 2-side's fenced kill of a moved VM is in its history on every host (appended to
  // the new lease's log once the killer has it), not only on the host that killed it
  type Shown = { history: Array<{ event: string, node?: string, detail?: string, local?: true }> }
  for (const v of onA) {
    await until(`${v}'s history on ${sideB[0]!} to have the fenced kill`, 20_000, async () =>
      (await grid.host(sideB[0]!).api<Shown>(`/v1/vms/${v}`)).history.some(e => e.event === 'killed' && e.node === before.get(v) && /fenced/.test(e.detail ?? '') && e.local !== true) ? true : undefined)
  }
})
