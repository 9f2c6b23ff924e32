// `vgrid demo` as a user runs it: it prints one "NAME ADDRESS:PORT" line per host,
// `VGRID_API=ADDRESS:PORT vgrid status` works from this shell, and Ctrl-C,
// `vgrid demo --stop`, or a later run after a crash remove everything it made.
// Bad input gets a clear message and makes nothing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { ExecutionContext } from 'ava'
import { e2e, secs, onInterrupt, offInterrupt, type Cleanup } from '../harness/index.ts'
import { VGRID } from '../../node/netns/processes.ts'
import { isAlive, listNamespaces, which } from '../../node/netns/netns.ts'
import { DEMO_DIR, PREFIX, isDemoProcess, readState } from '../../node/demo/state.ts'

interface Demo { proc: ChildProcess, out: () => string, exited: Promise<number | null> }

const demos = new Set<Demo>()

/**
 * Whatever this test leaves running when it fails or is interrupted: its demo
 * processes are stopped (by PID) and `vgrid demo --stop` removes what they made.
 */
const cleanup: Cleanup = {
  stop: async () => {
    const running = [...demos].filter(d => d.proc.exitCode == null && d.proc.signalCode == null)
    for (const d of running) d.proc.kill('SIGTERM')
    await Promise.race([Promise.all(running.map(async d => await d.exited)), new Promise(resolve => setTimeout(resolve, 15_000).unref())])
    if ((await listNamespaces()).some(ns => ns.startsWith(`${PREFIX}-`)) || existsSync(DEMO_DIR)) await vgrid(['demo', '--stop'])
    offInterrupt(cleanup)
  },
  stopSync: () => {
    for (const d of demos) if (d.proc.exitCode == null && d.proc.signalCode == null) d.proc.kill('SIGKILL')
    spawnSync(VGRID, ['demo', '--stop'], { stdio: 'ignore', timeout: 30_000 })
  }
}

function startDemo (args: string[]): Demo {
  const proc = spawn(VGRID, ['demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>(resolve => proc.once('exit', code => resolve(code)))
  const demo = { proc, out: () => out, exited }
  demos.add(demo)
  return demo
}

/** Its exit code, or a failure after `ms` (a demo that does not stop is a bug, not a hang). */
async function exitOf (d: Demo, ms = 30_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`demo (pid ${d.proc.pid}) did not exit within ${ms} ms:\n${d.out()}`)), ms)
  })
  return await Promise.race([d.exited, timeout]).finally(() => clearTimeout(timer))
}

/** Until the demo says how to stop it (it is up), then its host lines. */
async function hostLines (t: ExecutionContext, d: Demo): Promise<Array<[string, string]>> {
  const start = Date.now()
  while (!d.out().includes('stop:')) {
    if (d.proc.exitCode != null) throw new Error(`demo exited (${d.proc.exitCode}):\n${d.out()}`)
    if (Date.now() - start > 60_000) throw new Error(`demo not up after 60 s:\n${d.out()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return [...d.out().matchAll(/^(host\d+) (127\.0\.0\.1:\d+)$/gm)].map(m => [m[1]!, m[2]!])
}

/** A CLI run, asynchronous: a blocked event loop here would leave the demo (our child) an unreaped zombie. */
async function vgrid (args: string[], env: Record<string, string> = {}, cmd = VGRID, pre: string[] = []): Promise<{ code: number | null, out: string }> {
  return await new Promise(resolve => {
    const p = spawn(cmd, [...pre, ...args], { env: { ...process.env, ...env }, timeout: 30_000 })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.stderr.on('data', (d: Buffer) => { out += d.toString() })
    p.on('close', code => resolve({ code, out }))
  })
}

async function nothingLeft (t: ExecutionContext, what: string): Promise<void> {
  t.deepEqual((await listNamespaces()).filter(ns => ns.startsWith(`${PREFIX}-`)), [], `${what}: no demo namespace left`)
  t.false(existsSync(DEMO_DIR), `${what}: ${DEMO_DIR} removed`)
}

e2e('vgrid demo: hosts reachable from this shell; --stop, Ctrl-C and a crashed run leave nothing', async t => {
  let mark = Date.now()
  const phase = (what: string): void => { t.log(`${what}: ${secs(Date.now() - mark)}`); mark = Date.now() }
  // someone's demo: left alone, its cleanup too (registered first, it stopped that demo on the way out)
  const st = readState()
  if (st != null && isDemoProcess(st.pid)) {
    t.log(`a demo is running on this machine (pid ${st.pid}); not touching it, so this test checks nothing`)
    t.pass()
    return
  }
  onInterrupt(cleanup)
  t.teardown(async () => {
    if (!t.passed) for (const d of demos) process.stderr.write(`---- output of vgrid demo (pid ${d.proc.pid}) ----\n${d.out()}\n`)
    await cleanup.stop()
  })

  for (const bad of ['0', '9', 'three']) {
    const r = await vgrid(['demo', '--hosts', bad])
    t.is(r.code, 2, `--hosts ${bad} is a usage error`)
    t.regex(r.out, /--hosts must be a whole number from 1 to 8/)
  }
  if (which('setpriv') != null) {
    const r = await vgrid(['demo'], {}, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', VGRID])
    t.regex(r.out, /need root/, 'without root: says so')
    await nothingLeft(t, 'without root')
  }
  phase('bad input refused')

  // 1. three hosts; status works through each printed address; --stop removes it all
  const demo = startDemo(['--hosts', '3'])
  const lines = await hostLines(t, demo)
  t.deepEqual(lines.map(l => l[0]), ['host1', 'host2', 'host3'])
  for (const [name, api] of lines) {
    const r = await vgrid(['status', '--json'], { VGRID_API: api })
    t.is(r.code, 0, r.out)
    const s = JSON.parse(r.out) as { node: { name: string }, members: { alive: number } }
    t.is(s.node.name, name)
    t.is(s.members.alive, 3, `${name} sees 3 alive`)
  }
  // the printed addresses give each caller what the agent would: status to anyone, changes to root only
  const api1 = lines[0]![1]
  if (which('setpriv') != null) {
    const nobody = async (args: string[]): Promise<{ code: number | null, out: string }> =>
      await vgrid(args, { VGRID_API: api1 }, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', VGRID])
    t.is((await nobody(['status'])).code, 0, 'an ordinary user reads status through the demo')
    const refused = await nobody(['node', 'label', 'host1', 'rack=r1'])
    t.not(refused.code, 0)
    t.regex(refused.out, /neither root nor in the "vgrid" group/)
  }
  const label = await vgrid(['node', 'label', 'host1', 'rack=r1'], { VGRID_API: api1 })
  t.is(label.code, 0, label.out)
  // failures from this shell: a host's agent killed and started again, a host cut off and healed
  const aliveSeen = async (): Promise<number> => {
    const r = await vgrid(['status', '--json'], { VGRID_API: api1 })
    return r.code === 0 ? (JSON.parse(r.out) as { members: { alive: number } }).members.alive : -1
  }
  const untilAlive = async (n: number, what: string): Promise<void> => {
    const t0 = Date.now()
    while (await aliveSeen() !== n) {
      if (Date.now() - t0 > 60_000) throw new Error(`timed out waiting for ${what}`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
  const noHost = await vgrid(['demo', '--kill', 'host9'])
  t.is(noHost.code, 2, 'a host the demo does not have: a usage error, as a bad flag')
  t.regex(noHost.out, /no host host9 in this demo \(it has host1, host2, host3\)/)
  t.is((await vgrid(['demo', '--kill', 'host3', '--signal', 'SIGHUP'])).code, 2, 'a signal the demo does not send')
  t.regex((await vgrid(['demo', '--cut', 'host3', '--from', 'host3'])).out, /cannot be cut off from itself/)
  const killed = await vgrid(['demo', '--kill', 'host3'])
  t.is(killed.code, 0, killed.out)
  t.regex(killed.out, /^host3: its agent \(pid \d+\) killed \(SIGKILL, as a crash\)/)
  await untilAlive(2, 'host1 to see host3 gone')
  t.regex((await vgrid(['demo', '--kill', 'host3'])).out, /host3's agent is not running \(vgrid demo --start host3 starts it\)/)
  // its address answers that no agent runs there, not a reset of the connection (bb46)
  const down = await vgrid(['status'], { VGRID_API: lines[2]![1] })
  t.is(down.code, 1, down.out)
  t.regex(down.out, /^vgrid: no vgrid agent answers in this host's namespace \(ECONNREFUSED on 127\.0\.0\.1:\d+\): it is not running \(agent_down\)\n$/)
  const started = await vgrid(['demo', '--start', 'host3'])
  t.is(started.code, 0, started.out)
  await untilAlive(3, 'host3 back')
  const cut = await vgrid(['demo', '--cut', 'host3'])
  t.regex(cut.out, /^host3: cut off from every other host, both ways/)
  await untilAlive(2, 'host3 cut off')
  t.is((await vgrid(['demo', '--heal', 'host3'])).code, 0)
  await untilAlive(3, 'host3 healed')
  t.regex((await vgrid(['demo', '--heal', 'host3'])).out, /host3 is not cut off: nothing to heal/)
  // cuts add up (a second one lifted the first): from host1, then from host2 too, is cut off from both
  t.regex((await vgrid(['demo', '--cut', 'host3', '--from', 'host1'])).out, /^host3: cut off from host1, both ways/)
  t.regex((await vgrid(['demo', '--cut', 'host3', '--from', 'host2'])).out, /^host3: cut off from host2 \(now from host1, host2\), both ways/)
  await untilAlive(2, 'host3 cut off from host1 and host2, one cut after the other')
  t.is((await vgrid(['demo', '--heal', 'host3'])).code, 0)
  await untilAlive(3, 'host3 healed of both cuts')
  // a frozen agent: a graceful stop is refused (it would end in a SIGKILL), SIGCONT resumes it
  t.regex((await vgrid(['demo', '--kill', 'host3', '--signal', 'SIGSTOP'])).out, /^host3: its agent \(pid \d+\) is frozen \(SIGSTOP\)/)
  const refused = await vgrid(['demo', '--kill', 'host3', '--signal', 'SIGTERM'])
  t.is(refused.code, 1)
  t.regex(refused.out, /host3's agent \(pid \d+\) is frozen \(SIGSTOP\): it handles SIGTERM only once resumed/)
  t.regex((await vgrid(['demo', '--kill', 'host3', '--signal', 'SIGCONT'])).out, /^host3: its agent \(pid \d+\) resumed \(SIGCONT\)/)
  t.regex((await vgrid(['demo', '--kill', 'host3', '--signal', 'SIGCONT'])).out, /is not frozen: nothing to resume/)
  phase('--kill, --start, --cut, --heal')
  const again = await vgrid(['demo'])
  t.is(again.code, 1)
  t.regex(again.out, /already running/, 'a second demo is refused while one runs')
  const pids = (readState()?.pid != null ? [readState()!.pid] : [])
  const stop = await vgrid(['demo', '--stop'])
  t.is(stop.code, 0, stop.out)
  t.is(await exitOf(demo), 0, demo.out())
  t.deepEqual(pids.filter(isAlive), [])
  await nothingLeft(t, 'after --stop')
  phase('3 hosts up, status through each, --stop')

  // 2. a demo killed outright leaves its hosts behind; the next run says so and removes them
  const crash = async (): Promise<void> => {
    const d = startDemo(['--hosts', '1'])
    await hostLines(t, d)
    d.proc.kill('SIGKILL')
    await exitOf(d)
  }
  await crash()
  t.true((await listNamespaces()).some(ns => ns.startsWith(`${PREFIX}-`)), 'the killed demo left namespaces')
  const next = startDemo(['--hosts', '2'])
  t.is((await hostLines(t, next)).length, 2)
  t.regex(next.out(), /leftovers of an earlier demo/)
  // 3. Ctrl-C (SIGINT) removes everything
  next.proc.kill('SIGINT')
  t.is(await exitOf(next), 0, next.out())
  await nothingLeft(t, 'after Ctrl-C')
  phase('killed demo, next run removes its leftovers, Ctrl-C')

  // 4. and --stop cleans up after a killed demo too, with a VM running (its agent, the
  // watchdog and the guard go with the host namespace: --stop kills the VM from its run record)
  const d4 = startDemo(['--hosts', '1'])
  const api4 = (await hostLines(t, d4))[0]![1]
  const made = await vgrid(['vm', 'create', 'left', '--cpu', '0.1', '--memory', '16M', '--', '/bin/sleep', '600'], { VGRID_API: api4 })
  t.is(made.code, 0, made.out)
  let vmPid: number | undefined
  let vmNetns: string | undefined
  for (let i = 0; i < 300 && vmPid == null; i++) {
    const row = JSON.parse((await vgrid(['vm', 'show', 'left', '--json'], { VGRID_API: api4 })).out) as { state: string, runtime?: { pid?: number, network?: { netns?: string } } | null }
    if (row.state === 'running' && row.runtime?.pid != null) { vmPid = row.runtime.pid; vmNetns = row.runtime.network?.netns }
    else await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.truthy(vmPid, 'the VM runs')
  d4.proc.kill('SIGKILL')
  await exitOf(d4)
  const r = await vgrid(['demo', '--stop'])
  t.regex(r.out, /gone without cleaning up/)
  t.regex(r.out, /killed 1 VM\(s\) left running: left/)
  t.false(isAlive(vmPid!), 'no VM outlives the demo')
  if (vmNetns != null) t.false((await listNamespaces()).includes(vmNetns), `its network namespace ${vmNetns} is removed`)
  await nothingLeft(t, '--stop after a crash')
  phase('--stop after a killed demo')
})
