// The fencing watchdog: a node's VMs never outlive its agent's fence. A stand-in agent
// (feeder.ts) feeds a real supervisor process; real process VMs run meanwhile. SIGKILL
// or SIGSTOP of the feeder gets the VMs killed within the bound; a clean disarm kills
// nothing; a restarted agent adopts the watchdog and the VMs live on.
import test, { type ExecutionContext } from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ProcessDriver } from '../../../node/dvmm/drivers/process.ts'
import { runRoot } from '../../../node/dvmm/drivers/common.ts'
import { WATCHDOG_KILLED } from '../../../node/dvmm/watchdog/kill.ts'
import { groupPaths, groupPids, oomKills, probeCgroups, removeGroups, vmGroupName } from '../../../node/dvmm/host/cgroups.ts'
import { decide, feedKey, fedTimeout, nextDeadline } from '../../../node/dvmm/watchdog/decide.ts'
import { Watchdog } from '../../../node/dvmm/watchdog/index.ts'
import { NodeRuntime } from '../../../node/dvmm/node-runtime.ts'
import { systemClock } from '../../../node/service.ts'
import { createLogger, silentLogger } from '../../../node/log.ts'
import { isAlive } from '../../../node/netns/netns.ts'
import { waitFor } from '../drivers/compliance.ts'

/**
 * The pid a VM's guard wrote to its file, once it is whole: the guard writes it with a
 * shell redirect, so a read can find the file empty (Number('') is 0, and a test that
 * then sent SIGSTOP to "pid 0" stopped its own process group: CI hung) or cut short.
 */
function guardPid (file: string): number | undefined {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch { return undefined }
  if (!text.endsWith('\n')) return undefined
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined
}

const FEEDER = fileURLToPath(new URL('./feeder.ts', import.meta.url))
const TIMEOUT_MS = 1000
// the fence timeout the watchdog must beat; generous for a loaded 2-core machine
const FENCE_MS = 6000
const cg = process.getuid?.() === 0 ? probeCgroups() : undefined
const skip = process.getuid?.() !== 0 ? 'needs root (cgroups)' : cg?.ok !== true ? `no usable cgroups: ${cg?.detail}` : undefined
const maybe = skip === undefined ? test.serial : test.serial.skip
if (skip !== undefined) console.log(`test/dvmm/watchdog: skipped: ${skip}`)

test('decide: waits while fed, fires after the timeout, exits when disarmed', t => {
  t.is(decide({ feed: { seq: 1 }, lastChangeAt: 0, now: 999, timeoutMs: 1000 }).action, 'wait')
  const fire = decide({ feed: { seq: 1 }, lastChangeAt: 0, now: 1001, timeoutMs: 1000 })
  t.is(fire.action, 'fire')
  t.regex(fire.why, /not fed for 1001 ms/)
  t.is(decide({ feed: undefined, lastChangeAt: 0, now: 1001, timeoutMs: 1000 }).action, 'fire')
  t.is(decide({ feed: { seq: 2, disarmed: true }, lastChangeAt: 0, now: 99999, timeoutMs: 1000 }).action, 'exit')
  t.is(decide({ feed: { seq: 2, timeoutMs: 5000 }, lastChangeAt: 0, now: 3000, timeoutMs: 1000 }).action, 'wait', 'the agent may lengthen the timeout')
  // new timeouts written while the agent withholds its feed are no feed; a new seq is
  const fed = JSON.stringify({ seq: 7, pid: 10, timeoutMs: 12_000, fenceMs: 20_000 })
  t.is(feedKey(JSON.stringify({ seq: 7, pid: 10, timeoutMs: 3000, fenceMs: 5000 })), feedKey(fed))
  t.not(feedKey(JSON.stringify({ seq: 8, pid: 10, timeoutMs: 12_000, fenceMs: 20_000 })), feedKey(fed))
  t.not(feedKey(JSON.stringify({ seq: 7, pid: 11, timeoutMs: 12_000 })), feedKey(fed), 'another run\'s feed')
  t.is(feedKey('garbage'), 'garbage')
  // a fed timeout that is junk is not taken (the supervisor's own holds)
  t.is(fedTimeout({ seq: 1, timeoutMs: 'soon' as unknown as number }, 3000), 3000)
  t.is(decide({ feed: { seq: 1, timeoutMs: 'soon' as unknown as number }, lastChangeAt: 0, now: 3001, timeoutMs: 3000 }).action, 'fire')
  // a timeout shortened without a feed: the earlier of the old deadline and now + the new one, never at once
  const d = { fed: false, deadline: 12_000, lastChangeAt: 0, prevTimeoutMs: 12_000, now: 5000 }
  t.is(nextDeadline({ ...d, timeoutMs: 3000 }), 8000)
  t.is(nextDeadline({ ...d, timeoutMs: 9000 }), 12_000)
  t.is(nextDeadline({ ...d, now: 11_000, timeoutMs: 3000 }), 12_000, 'the old deadline when it is earlier')
  t.is(nextDeadline({ ...d, deadline: 3000, prevTimeoutMs: 3000, timeoutMs: 12_000 }), 12_000, 'lengthened: from the last feed')
  t.is(nextDeadline({ ...d, fed: true, timeoutMs: 3000 }), 8000, 'a feed: now + the timeout')
  t.is(decide({ feed: { seq: 1, timeoutMs: 3000 }, lastChangeAt: 0, now: 5000, timeoutMs: 12_000, deadline: 8000 }).action, 'wait')
})

interface Setup { dataDir: string, driver: ProcessDriver, ids: string[], pids: number[], feeder: () => Promise<{ proc: ChildProcess, watchdogPid: number }> }

async function setup (t: import('ava').ExecutionContext, vms = 2, timeoutMs = TIMEOUT_MS): Promise<Setup> {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wd-'))
  const driver = new ProcessDriver({ log: silentLogger, clock: Date }, { dataDir, pollMs: 50 })
  const ids: string[] = []
  const pids: number[] = []
  const procs: ChildProcess[] = []
  const watchdogs = new Set<number>()
  t.teardown(async () => {
    for (const p of procs) { try { p.kill('SIGCONT'); p.kill('SIGKILL') } catch {} }
    for (const pid of watchdogs) { try { process.kill(pid, 'SIGKILL') } catch {} }
    for (const id of ids) { try { await driver.kill(id) } catch {}; try { await driver.remove(id) } catch {} }
    await driver.close()
    if (process.env.KEEP === undefined) rmSync(dataDir, { recursive: true, force: true })
    else console.log('kept', dataDir)
  })
  for (let i = 0; i < vms; i++) {
    const id = `wd-${process.pid}-${i}`
    ids.push(id)
    // network: false keeps this test to cgroups and processes; the VM is a plain sleep
    const info = await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })
    pids.push(info.pid!)
  }
  const feeder = async (): Promise<{ proc: ChildProcess, watchdogPid: number }> => {
    const proc = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', FEEDER, dataDir, String(timeoutMs)], { stdio: ['ignore', 'pipe', 'inherit'] })
    procs.push(proc)
    const watchdogPid = await new Promise<number>((resolve, reject) => {
      let out = ''
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /armed (\d+)/.exec(out)
        if (m != null) resolve(Number(m[1]))
      })
      proc.on('exit', code => reject(new Error(`feeder exited (${code}) before arming: ${out}`)))
    })
    watchdogs.add(watchdogPid)
    return { proc, watchdogPid }
  }
  return { dataDir, driver, ids, pids, feeder }
}

// a killed VM may stay a zombie of this process for a moment: isAlive counts that as dead
const alive = (pid: number): boolean => isAlive(pid)

async function gone (s: Setup, since: number): Promise<number> {
  await waitFor('every VM killed', async () => {
    for (const id of s.ids) {
      const st = (await s.driver.inspect(id))?.state
      if (st === 'running' || st === 'starting' || st === 'stopping') return false
    }
    return true
  }, FENCE_MS * 2, 20)
  return Date.now() - since
}

for (const how of ['SIGKILL', 'SIGSTOP'] as const) {
  maybe(`watchdog: ${how} of the agent gets its VMs killed before the fence timeout`, async t => {
    const s = await setup(t)
    const { proc, watchdogPid } = await s.feeder()
    await new Promise(resolve => setTimeout(resolve, TIMEOUT_MS * 1.5))
    t.true(s.pids.every(alive), 'VMs live while the agent feeds')
    const t0 = Date.now()
    proc.kill(how)
    const ms = await gone(s, t0)
    t.log(`VMs killed ${ms} ms after ${how} of the agent (watchdog timeout ${TIMEOUT_MS} ms)`)
    t.true(ms < FENCE_MS, `killed within the fence timeout (${ms} ms)`)
    // the last feed came at most one feed interval (timeout / 3) before the kill
    t.true(ms >= TIMEOUT_MS * 2 / 3 - 50, `not before the watchdog timeout (${ms} ms)`)
    t.false(s.pids.some(alive))
    for (const id of s.ids) {
      const info = await s.driver.inspect(id)
      t.is(info?.exit?.reason, 'killed')
      t.regex(info?.error ?? '', /fencing watchdog/)
    }
    const w = new Watchdog({ log: silentLogger }, { dataDir: s.dataDir, timeoutMs: TIMEOUT_MS })
    // recorded after the kill, so the record may trail the VMs' deaths
    await waitFor('the kill recorded', () => w.fired().length >= 1, 3000, 20)
    const fired = w.fired()
    t.deepEqual(fired[0]!.killed.map(k => k.id).sort(), [...s.ids].sort())
    t.true(fired[0]!.at - t0 >= TIMEOUT_MS * 2 / 3 - 50 && fired[0]!.at - t0 < FENCE_MS, 'when it fired is recorded')
    t.true(alive(watchdogPid), 'the watchdog itself outlived the agent')
  })
}

maybe('watchdog: with no agent to come back, it removes the groups and the network of the VMs it killed', async t => {
  const s = await setup(t, 1)
  const groups = (await s.driver.inspect(s.ids[0]!))?.detail?.cgroups?.split(' ') ?? []
  t.true(groups.length > 0 && groups.every(g => existsSync(g)))
  // one VM with its own network namespace and veth
  const netId = `wdnet-${process.pid}`
  s.ids.push(netId)
  const net = await s.driver.start({ id: netId, vcpus: 0.2, memoryMiB: 32, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })
  s.pids.push(net.pid!)
  const ns = net.network!.netns!
  const nsExists = (): boolean => existsSync(`/run/netns/${ns}`)
  const linkExists = (): boolean => existsSync(`/sys/class/net/${net.network!.hostIf}`)
  t.true(nsExists() && linkExists(), 'its namespace and link are there')
  // this process's driver stops watching: nothing else will clean up after the kill
  await s.driver.close()
  const { proc } = await s.feeder()
  await new Promise(resolve => setTimeout(resolve, TIMEOUT_MS * 1.5))
  proc.kill('SIGKILL')
  await waitFor('the VM killed and its groups removed', () => !alive(s.pids[0]!) && groups.every(g => !existsSync(g)), FENCE_MS * 2, 20)
  await waitFor('the other VM\'s namespace and link removed', () => !alive(s.pids[1]!) && !nsExists() && !linkExists(), FENCE_MS * 2, 20)
  t.pass()
})

maybe('watchdog: an adopted supervisor follows the shorter timeout a later agent run feeds, whatever it was spawned with', async t => {
  // spawned by a run with a 60 s timeout (so a check every 6 s by its arguments); the
  // next run feeds 1 s: once that run dies, the VMs die within its timeout, not 6 s on
  const s = await setup(t, 1, 60_000)
  const first = await s.feeder()
  const again = await (async () => {
    first.proc.kill('SIGKILL')
    const proc = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', FEEDER, s.dataDir, String(TIMEOUT_MS)], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { try { proc.kill('SIGKILL') } catch {} })
    await new Promise<void>(resolve => { proc.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('armed')) resolve() }) })
    return proc
  })()
  await new Promise(resolve => setTimeout(resolve, TIMEOUT_MS * 1.5))
  t.true(s.pids.every(alive), 'adopted and fed')
  const t0 = Date.now()
  again.kill('SIGKILL')
  const ms = await gone(s, t0)
  t.log(`VMs killed ${ms} ms after the SIGKILL (fed timeout ${TIMEOUT_MS} ms, spawned with 60000 ms)`)
  t.true(ms < TIMEOUT_MS + 1000 + 1000, `killed within the fed timeout plus a check of at most 1 s, and slack (${ms} ms)`)
})

maybe('watchdog: a clean disarm kills nothing; a restarted agent adopts the watchdog and its VMs live on', async t => {
  // a restart must come within the watchdog timeout: a node agent starts in well under
  // 4 s, even on this loaded machine
  const timeoutMs = 4000
  const s = await setup(t, 1, timeoutMs)
  const first = await s.feeder()
  // the agent dies; a new run comes up within the watchdog timeout and adopts
  first.proc.kill('SIGKILL')
  const second = await s.feeder()
  t.is(second.watchdogPid, first.watchdogPid, 'the new agent run adopted the running watchdog')
  await new Promise(resolve => setTimeout(resolve, timeoutMs * 1.5))
  t.true(s.pids.every(alive), 'the adopted VMs live on')
  // clean exit: disarm
  const exited = new Promise(resolve => second.proc.on('exit', resolve))
  second.proc.kill('SIGTERM')
  await exited
  await waitFor('the watchdog to exit', () => !alive(second.watchdogPid), 5000)
  await new Promise(resolve => setTimeout(resolve, timeoutMs * 1.5))
  t.true(s.pids.every(alive), 'nothing was killed')
  t.is(new Watchdog({ log: silentLogger }, { dataDir: s.dataDir, timeoutMs: TIMEOUT_MS }).fired().length, 0)
})

maybe('watchdog: a restarted agent whose pid.json was damaged finds the running supervisor by its command line and adopts it, not a second beside it', async t => {
  const s = await setup(t, 1, 4000)
  const first = await s.feeder()
  first.proc.kill('SIGKILL')
  writeFileSync(join(s.dataDir, 'dvmm', 'watchdog', 'pid.json'), 'xx{garbage')
  const second = await s.feeder()
  t.is(second.watchdogPid, first.watchdogPid, 'the running supervisor was adopted')
  t.is((JSON.parse(readFileSync(join(s.dataDir, 'dvmm', 'watchdog', 'pid.json'), 'utf8')) as { pid: number }).pid, first.watchdogPid, 'and recorded again')
})

maybe('watchdog: a later run that took none of the VMs over disarms the supervisor a killed run left, when it stops', async t => {
  const s = await setup(t, 1)
  const { proc, watchdogPid } = await s.feeder()
  await new Promise(resolve => setTimeout(resolve, TIMEOUT_MS * 1.5))
  proc.kill('SIGKILL')
  await gone(s, Date.now())
  t.true(alive(watchdogPid), 'the supervisor outlived the agent and killed its VMs')
  // the next run finds no VM of the killed one running: it arms nothing, and on its stop
  // disarms the leftover (before, it ran on until the machine restarted)
  const rt = new NodeRuntime({ log: silentLogger, clock: systemClock, config: { dataDir: s.dataDir }, probeHost: async () => { throw new Error('no host probe in this test') } }, { watchdogTimeoutMs: TIMEOUT_MS })
  await rt.start()
  t.false((await rt.drivers.process.list()).some(v => v.state === 'running'))
  await rt.stop({ graceful: true })
  await waitFor('the leftover supervisor to exit', () => !alive(watchdogPid), 5000)
  t.pass()
})

maybe('watchdog: a supervisor that dies (killed, OOM) is started again by the agent at its next feed, and said meanwhile; the new one fences as the old did', async t => {
  const s = await setup(t, 1)
  const w = new Watchdog({ log: silentLogger }, { dataDir: s.dataDir, timeoutMs: TIMEOUT_MS })
  t.teardown(async () => { await w.stop().catch(() => {}); if (w.pid != null) try { process.kill(w.pid, 'SIGKILL') } catch {} })
  await w.start()
  const first = w.pid!
  t.is(w.lost, undefined)
  process.kill(first, 'SIGKILL')
  let said: string | undefined
  await waitFor('a new supervisor', () => { said ??= w.lost; return w.pid !== first && w.running() === w.pid && w.lost === undefined }, FENCE_MS, 10)
  t.regex(said ?? '', new RegExp(`supervisor \\(pid ${first}\\) is gone`), 'the node said it ran without its watchdog')
  await new Promise(resolve => setTimeout(resolve, TIMEOUT_MS * 1.5))
  t.true(s.pids.every(alive), 'fed by the agent, the new supervisor kills nothing')
  // the agent stops feeding (as a dead one does): the new supervisor kills the VMs
  const t0 = Date.now()
  w.abandon()
  const ms = await gone(s, t0)
  t.true(ms < FENCE_MS, `killed within the fence timeout (${ms} ms)`)
})

maybe('watchdog: a new supervisor that cannot be started is retried at every feed and said once a minute, not each time (rv29)', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wd-'))
  const lines: string[] = []
  const w = new Watchdog({ log: createLogger({ level: 'info', write: l => lines.push(l) }) }, { dataDir, timeoutMs: TIMEOUT_MS })
  t.teardown(async () => { await w.stop().catch(() => {}); if (w.pid != null) try { process.kill(w.pid, 'SIGKILL') } catch {}; rmSync(dataDir, { recursive: true, force: true }) })
  await w.start()
  const first = w.pid!
  // its pid record cannot be written (a directory in its place): each new one started is stopped again
  const record = join(dataDir, 'dvmm', 'watchdog', 'pid.json')
  rmSync(record)
  mkdirSync(record)
  process.kill(first, 'SIGKILL')
  await new Promise(resolve => setTimeout(resolve, 3000))
  const count = (re: RegExp): number => lines.filter(l => re.test(l)).length
  t.regex(w.lost ?? '', /could not be started again .*pid\.json.*; retrying/)
  t.is(count(/supervisor is gone/), 1, lines.join('\n'))
  t.is(count(/could not be started again/), 1, `about ${Math.floor(3000 / (TIMEOUT_MS / 3))} retries, one line`)
  rmSync(record, { recursive: true })
  await waitFor('a new supervisor', () => w.pid !== first && w.running() === w.pid && w.lost === undefined, FENCE_MS, 10)
  t.is(count(/watchdog started again/), 1)
})

maybe('watchdog: a stop for a restart feeds once more as it begins, so the next run has the watchdog\'s whole time from the stop', async t => {
  const s = await setup(t, 1, 3000)
  const rt = new NodeRuntime({ log: silentLogger, clock: systemClock, config: { dataDir: s.dataDir }, probeHost: async () => { throw new Error('no host probe in this test') } }, { watchdogTimeoutMs: 3000 })
  await rt.start()
  t.true((await rt.drivers.process.list()).some(v => v.state === 'running'), 'the VM found running arms the watchdog')
  const feedFile = join(s.dataDir, 'dvmm', 'watchdog', 'feed.json')
  await waitFor('the first feed', () => existsSync(feedFile), 5000)
  const seq = (): number => (JSON.parse(readFileSync(feedFile, 'utf8')) as { seq: number }).seq
  const pid = (JSON.parse(readFileSync(join(s.dataDir, 'dvmm', 'watchdog', 'pid.json'), 'utf8')) as { pid: number }).pid
  t.teardown(() => { try { process.kill(pid, 'SIGKILL') } catch {} })
  const before = seq()
  const stopping = rt.stop({ graceful: true, leave: false })
  t.is(seq(), before + 1, 'fed at once, before the stop goes on')
  await stopping
  t.true(alive(pid), 'left armed for the next run')
})

/**
 * A process driver with its watchdog armed before any VM starts (as NodeRuntime does),
 * and a teardown that ends the supervisor and the VMs `ids`, and removes the data dir
 */
async function guarded (t: ExecutionContext, timeoutMs: number, ids: string[]): Promise<{ dataDir: string, driver: ProcessDriver, w: Watchdog }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wd-'))
  const driver = new ProcessDriver({ log: silentLogger, clock: Date }, { dataDir, pollMs: 50 })
  const w = new Watchdog({ log: silentLogger }, { dataDir, timeoutMs })
  t.teardown(async () => {
    w.abandon()
    if (w.pid != null) try { process.kill(w.pid, 'SIGKILL') } catch {}
    for (const id of ids) { try { await driver.kill(id) } catch {}; try { await driver.remove(id) } catch {} }
    await driver.close()
    // the groups of a VM its guard killed, if a guard still sat in them as the driver removed them
    const layout = probeCgroups().layout
    if (layout !== undefined) {
      for (const parent of groupPaths(layout, '').map(p => dirname(join(p, 'x')))) {
        // the parent goes with the last VM's groups
        let names: string[] = []
        try { names = readdirSync(parent) } catch { continue }
        for (const name of names) if (ids.some(id => name.startsWith('process-') && name.endsWith(`-${id}`))) await removeGroups([join(parent, name)])
      }
    }
    rmSync(dataDir, { recursive: true, force: true })
  })
  await w.start()
  return { dataDir, driver, w }
}

maybe('watchdog: its supervisor killed with the agent (kill -9 of both), each VM\'s guard kills the VM at once, marked so; a VM started while it runs has one', async t => {
  const ids = [`guard-${process.pid}-0`, `guard-${process.pid}-1`]
  // a long timeout: the supervisor, once dead, fires nothing; only the guards can end the VMs
  const { driver, w } = await guarded(t, 60_000, ids)
  const pids: number[] = []
  for (const id of ids) pids.push((await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.true(pids.every(alive), 'the VMs run while the supervisor lives')
  w.abandon() // the agent is gone too: nothing starts a new supervisor
  const t0 = Date.now()
  process.kill(w.pid!, 'SIGKILL')
  await waitFor('every VM killed by its guard', () => !pids.some(alive), 5000, 20)
  const ms = Date.now() - t0
  t.log(`VMs killed ${ms} ms after the supervisor's SIGKILL`)
  t.true(ms < 3000, `at once, long before any takeover (${ms} ms)`)
  for (const id of ids) {
    await waitFor('the exit recorded', async () => (await driver.inspect(id))?.state === 'stopped', 3000, 20)
    const info = await driver.inspect(id)
    t.is(info?.exit?.reason, 'killed')
    t.is(info?.exit?.watchdogKillBy, 'guard')
    t.true(info!.exit!.watchdogKillAt! >= t0 - 5 && info!.exit!.watchdogKillAt! <= Date.now(), 'when the guard killed it')
    t.regex(info?.error ?? '', /^killed by its guard at \S+: the fencing watchdog's supervisor was gone$/)
  }
})

maybe('watchdog: a VM whose main process ended and left a child running keeps its guard, which kills the child once the supervisor is gone with the agent', async t => {
  const id = `left-${process.pid}`
  const { dataDir, driver, w } = await guarded(t, 60_000, [id])
  const pidFile = join(dataDir, 'child.pid')
  await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sh', '-c', `sleep 600 & echo $! > ${pidFile}; sleep 1.5`] } })
  // the agent is gone: nothing cleans up after the VM's main process
  await driver.close()
  const child = await waitFor('the child', () => existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined, 3000, 20)
  t.teardown(() => { try { process.kill(child, 'SIGKILL') } catch {} })
  // the main process ended 1.5 s in; the guard looks each second
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.true(alive(child), 'the child the VM left runs on, in its groups')
  w.abandon()
  process.kill(w.pid!, 'SIGKILL')
  await waitFor('the child killed by the guard', () => !alive(child), 5000, 20)
  t.pass()
})

maybe('watchdog: its supervisor stopped (SIGSTOP) while the agent is dead: its beats stop, and each VM\'s guard kills the VM before a takeover could start it elsewhere', async t => {
  const TIMEOUT = 3000
  const id = `stall-${process.pid}`
  const { driver, w } = await guarded(t, TIMEOUT, [id])
  const pid = (await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.true(alive(pid), 'the VM runs while the supervisor beats')
  // the agent dies, and its supervisor is stopped before it could fire: only the guard is left
  w.abandon()
  const t0 = Date.now()
  process.kill(w.pid!, 'SIGSTOP')
  await new Promise(resolve => setTimeout(resolve, 2000))
  t.true(alive(pid), 'a supervisor stopped for less than the watchdog\'s timeout is no reason to kill')
  await waitFor('the VM killed by its guard', () => !alive(pid), 8000, 20)
  const ms = Date.now() - t0
  t.log(`VM killed ${ms} ms after the supervisor's SIGSTOP`)
  // a takeover elsewhere waits the fence timeout (5/3 of the watchdog's) and its margin from the last feed
  t.true(ms < TIMEOUT * 5 / 3 + 1500, `before any takeover (${ms} ms)`)
  await waitFor('the exit recorded', async () => (await driver.inspect(id))?.state === 'stopped', 3000, 20)
  const info = await driver.inspect(id)
  t.is(info?.exit?.watchdogKillBy, 'guard')
  t.regex(info?.error ?? '', /^killed by its guard at \S+: the fencing watchdog's supervisor was stopped or stalled, its agent not there to wake it$/)
})

maybe('watchdog: a busy VM does not delay its guard (it runs at nice -20 in the VM\'s CPU quota); a guard killed by hand is started again and still fences', async t => {
  const TIMEOUT = 3000
  const ids = [`busy-${process.pid}`, `reguard-${process.pid}`]
  const { dataDir, driver, w } = await guarded(t, TIMEOUT, ids)
  // 8 busy loops in a 5 % CPU quota: the guard shares it
  const busy = (await driver.start({ id: ids[0]!, vcpus: 0.05, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sh', '-c', 'for i in 1 2 3 4 5 6 7 8; do (while :; do :; done) & done; wait'] } })).pid!
  const other = (await driver.start({ id: ids[1]!, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!
  const guardOf = (id: string): number | undefined => guardPid(join(dataDir, 'dvmm', 'run', 'process', id, 'guard'))
  await waitFor('both guards up', () => ids.every(id => guardOf(id) != null), 5000, 20)
  const first = guardOf(ids[1]!)!
  process.kill(first, 'SIGKILL')
  await waitFor('a new guard', () => { const g = guardOf(ids[1]!); return g != null && g !== first && alive(g) }, 5000, 20)
  t.regex(readFileSync(`/proc/${guardOf(ids[1]!)!}/cmdline`, 'utf8'), /vgrid-guard/)
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.true(alive(busy) && alive(other), 'the VMs run on while the supervisor beats')
  // the agent dies and its supervisor is stopped: the guards alone end the VMs, the busy one too
  w.abandon()
  const t0 = Date.now()
  process.kill(w.pid!, 'SIGSTOP')
  await waitFor('both VMs killed by their guards', () => !alive(busy) && !alive(other), 10_000, 20)
  const ms = Date.now() - t0
  t.log(`both VMs killed ${ms} ms after the supervisor's SIGSTOP`)
  t.true(ms < TIMEOUT * 5 / 3 + 1500, `before any takeover (${ms} ms)`)
  for (const id of ids) {
    await waitFor('the exit recorded', async () => (await driver.inspect(id))?.state === 'stopped', 3000, 20)
    t.is((await driver.inspect(id))?.exit?.guardSawStall, true)
  }
})

maybe('watchdog: a VM that ended is left no guard to watch its next run; one whose VM ended does not fire when the supervisor ends right after (rv56)', async t => {
  const id = `again-${process.pid}`
  const { dataDir, driver, w } = await guarded(t, 60_000, [id])
  const run = join(runRoot(dataDir), 'process', id)
  const spec = { id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command' as const, command: ['/bin/sleep', '1'] } }
  const guardOf = async (not?: number): Promise<number> => await waitFor('its guard', () => {
    try { const g = Number(readFileSync(join(run, 'guard'), 'utf8').trim()); return g > 0 && g !== not && alive(g) ? g : undefined } catch { return undefined }
  }, 10_000, 10)
  // it ends by itself: on cgroup v1 its guard is in none of its groups, and the clean-up ends it by its pid
  const pid1 = (await driver.start(spec)).pid!
  const first = await guardOf()
  await waitFor('the VM ended, as the driver saw it', async () => !alive(pid1) && (await driver.inspect(id))?.state === 'stopped', 10_000, 5)
  t.false(alive(first), 'the guard ended with its VM, not left to watch the next run with this one\'s process group')
  // again, and the supervisor ends right after the VM (an agent stopping once its VMs have)
  const pid2 = (await driver.start(spec)).pid!
  const second = await guardOf(first)
  await waitFor('the VM ended', () => !alive(pid2), 10_000, 2)
  w.abandon()
  process.kill(w.pid!, 'SIGKILL')
  await waitFor('its guard gone', () => !alive(second), 5000, 20)
  t.false(existsSync(join(run, WATCHDOG_KILLED)), 'it did not fire for a VM that had ended')
})

maybe('watchdog: a guard gone while no supervisor holds the FIFO is not started again until one does (it would hang in open, fencing nothing); the new one then fences', async t => {
  const id = `noreguard-${process.pid}`
  const { dataDir, driver, w } = await guarded(t, 60_000, [id])
  const pid = (await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!
  const guardOf = (): number | undefined => guardPid(join(dataDir, 'dvmm', 'run', 'process', id, 'guard'))
  await waitFor('the guard up', () => guardOf() != null, 5000, 20)
  const first = guardOf()!
  // guard and supervisor gone together (the guard stopped first, so it cannot see the
  // supervisor's end): nothing fences the VM now, as after an older release's agent died
  w.abandon()
  process.kill(first, 'SIGSTOP')
  process.kill(w.pid!, 'SIGKILL')
  process.kill(first, 'SIGKILL')
  await waitFor('the old guard gone', () => !alive(first), 3000, 20)
  await new Promise(resolve => setTimeout(resolve, 1000)) // many of the driver's polls
  const g = guardOf()
  t.false(g !== undefined && g !== first && alive(g), `no guard started with no supervisor to hold the FIFO (pid ${String(g)} would wait in open for ever)`)
  t.true(alive(pid), 'the VM runs on: no guard killed it')

  // a restarted agent arms a new supervisor: a new guard follows, and fences
  const w2 = new Watchdog({ log: silentLogger }, { dataDir, timeoutMs: 60_000 })
  t.teardown(() => { w2.abandon(); if (w2.pid != null) try { process.kill(w2.pid, 'SIGKILL') } catch {} })
  await w2.start()
  await waitFor('a new guard', () => { const n = guardOf(); return n != null && n !== first && alive(n) }, 5000, 20)
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.true(alive(pid), 'the new guard, beside a live supervisor, leaves the VM alone')
  w2.abandon()
  const t0 = Date.now()
  process.kill(w2.pid!, 'SIGKILL')
  await waitFor('the VM killed by its new guard', () => !alive(pid), 5000, 20)
  t.log(`VM killed ${Date.now() - t0} ms after the new supervisor's SIGKILL`)
  await waitFor('the exit recorded', async () => (await driver.inspect(id))?.state === 'stopped', 3000, 20)
  t.is((await driver.inspect(id))?.exit?.watchdogKillBy, 'guard')
})

maybe('watchdog: a running VM that never had a guard (an earlier release\'s, or one started while its watchdog had no FIFO) gets one after a while', async t => {
  const id = `noguard-${process.pid}`
  const { dataDir, driver, w } = await guarded(t, 60_000, [id])
  const pid = (await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!
  const file = join(dataDir, 'dvmm', 'run', 'process', id, 'guard')
  const guardOf = (): number | undefined => guardPid(file)
  await waitFor('the guard up', () => guardOf() != null, 5000, 20)
  // as if it never had one: its guard gone, and no file saying there was one
  const first = guardOf()!
  process.kill(first, 'SIGSTOP')
  rmSync(file)
  process.kill(first, 'SIGKILL')
  await waitFor('a guard given to it', () => { const g = guardOf(); return g != null && g !== first && alive(g) }, 15_000, 100)
  t.true(alive(pid))
  w.abandon()
  process.kill(w.pid!, 'SIGKILL')
  await waitFor('the VM killed by the guard it was given', () => !alive(pid), 5000, 20)
  t.pass()
})

maybe('watchdog: a supervisor that fired and has found nothing to kill for its idle time, with no feed, exits (an agent that never came back left it for ever)', async t => {
  const id = `idle-${process.pid}`
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wd-'))
  const driver = new ProcessDriver({ log: silentLogger, clock: Date }, { dataDir, pollMs: 50 })
  const w = new Watchdog({ log: silentLogger }, { dataDir, timeoutMs: 500, idleExitMs: 1500 })
  t.teardown(async () => {
    w.abandon()
    if (w.pid != null) try { process.kill(w.pid, 'SIGKILL') } catch {}
    try { await driver.kill(id) } catch {}; try { await driver.remove(id) } catch {}
    await driver.close()
    rmSync(dataDir, { recursive: true, force: true })
  })
  await w.start()
  const pid = (await driver.start({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })).pid!
  const supervisor = w.pid!
  w.abandon() // the agent is gone for good
  await waitFor('the VM killed', () => !alive(pid), 5000, 20)
  await new Promise(resolve => setTimeout(resolve, 800))
  t.true(alive(supervisor), 'not at once: it keeps watching for a while')
  await waitFor('the supervisor gone', () => !alive(supervisor), 5000, 50)
  t.regex(readFileSync(join(dataDir, 'dvmm', 'watchdog', 'watchdog.log'), 'utf8'), /exit: fired, and nothing left to kill for 1\.5 s with no feed/)
})

test.serial('an agent out of file descriptors neither dies nor starts a second supervisor; once it has them back it starts one again (bb24)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'wd-fds-'))
  let out = ''
  const limit = ['--nofile=2048:2048']
  const child = existsSync('/usr/bin/prlimit')
    ? spawn('/usr/bin/prlimit', [...limit, '--', process.execPath, fileURLToPath(new URL('./fd-flood.ts', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [fileURLToPath(new URL('./fd-flood.ts', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  const pidOf = (re: RegExp): number | undefined => { const m = re.exec(out); return m == null ? undefined : Number(m[1]) }
  t.teardown(() => {
    for (const pid of [pidOf(/^after (\d+)$/m)]) if (pid != null && isAlive(pid)) { try { process.kill(pid, 'SIGKILL') } catch {} }
    rmSync(dir, { recursive: true, force: true })
  })
  t.is(code, 0, out)
  const blind = out.slice(out.indexOf('took '), out.indexOf('freeing'))
  t.regex(blind, /cannot check on the watchdog supervisor: this agent has no file descriptor left/, out)
  t.notRegex(blind, /supervisor is gone/, 'not taken for gone while it cannot look')
  const first = pidOf(/^armed (\d+)$/m)
  const after = pidOf(/^after (\d+)$/m)
  t.truthy(after, out)
  t.not(after, first, 'a new supervisor once descriptors are back')
  t.regex(out, /stopped/)
})

maybe('watchdog: a VM stuck in its out-of-memory kill in a tiny CPU quota is still ended by its guard once the supervisor is gone with the agent (bb25)', async t => {
  const id = `oomq-${process.pid}`
  const { dataDir, driver, w } = await guarded(t, 60_000, [id])
  // 0.01 CPU and 16 MiB: dd's 200 MiB buffer, filled by the kernel from /dev/zero, is killed for want of memory
  // (the kernel's fill reaches the limit on little CPU: a shell string built through a pipe took 10-15 s alone at
  // 1 % of a CPU and over 150 s once in CI), then eight busy loops hold the quota spent: a guard inside it got
  // too little CPU to kill them within 10 s
  const pid = (await driver.start({ id, vcpus: 0.01, memoryMiB: 16, network: false, boot: { kind: 'command', command: ['/bin/sh', '-c', 'dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; for i in 1 2 3 4 5 6 7 8; do (while :; do :; done) & done; wait'] } })).pid!
  const groups = groupPaths(probeCgroups().layout!, vmGroupName('process', dataDir, id))
  await waitFor('the kernel kills in the VM for want of memory', () => oomKills(groups) >= 1, 60_000, 100)
  await new Promise(resolve => setTimeout(resolve, 1000))
  w.abandon()
  const t0 = Date.now()
  process.kill(w.pid!, 'SIGKILL')
  // the guard (outside the quota) lifts it and kills: nothing of the VM is left, not even a process dying in its kill
  // a bound, not a timing: without the guard nothing ends it at all. 608 ms alone; over
  // 10 s twice in CI, beside another file's busy loops dying in a tiny quota on 2 cores
  // past the bound, what is left and where it waits is said (it has taken over 60 s in CI
  // three times in thirty runs, never alone: why is not known yet)
  await waitFor('nothing of the VM left in its groups', () => !alive(pid) && groupPids(groups).length === 0, 60_000, 50).catch((err: Error) => {
    const run = join(runRoot(dataDir), 'process', id)
    let guard = NaN
    try { guard = Number(readFileSync(join(run, 'guard'), 'utf8').trim()) } catch {}
    const about = (p: number): string => { try { const st = readFileSync(`/proc/${p}/stat`, 'utf8'); return `${p} ${st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3)} wchan=${readFileSync(`/proc/${p}/wchan`, 'utf8')} cgroup=${readFileSync(`/proc/${p}/cgroup`, 'utf8').trim().split('\n').filter(l => /cpu|memory|^0::/.test(l)).join(';')}` } catch { return `${p} gone` } }
    let killed = ''
    try { killed = readFileSync(join(run, WATCHDOG_KILLED), 'utf8').trim() } catch {}
    const quotas = groups.map(g => { try { return `${g}: ${readFileSync(join(g, 'cpu.cfs_quota_us'), 'utf8').trim()}` } catch { return `${g}: -` } }).join(', ')
    throw new Error(`${err.message}; left: ${[...new Set([pid, ...groupPids(groups)])].map(about).join(' | ')}; guard ${Number.isFinite(guard) ? about(guard) : 'none'}; watchdog-killed "${killed}"; quotas ${quotas}`)
  })
  t.log(`the VM's groups empty ${Date.now() - t0} ms after the supervisor's SIGKILL`)
  t.false(alive(pid), 'the VM\'s process is gone')
  t.deepEqual(groupPids(groups), [], 'nothing of it left in its groups')
})
