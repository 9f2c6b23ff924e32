// NodeRuntime's graceful stop disarms the fencing watchdog only when no driver lists a
// VM running, starting or stopping; with one left it stops feeding and leaves the
// supervisor armed, which kills it. Real process VMs and a real supervisor.
import test from 'ava'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { NodeRuntime } from '../../node/dvmm/node-runtime.ts'
import { readFenceRecord } from '../../node/dvmm/fence-record.ts'
import { groupPaths, probeCgroups, removeGroups } from '../../node/dvmm/host/cgroups.ts'
import { Watchdog } from '../../node/dvmm/watchdog/index.ts'
import { silentLogger } from '../../node/log.ts'
import { isAlive } from '../../node/netns/netns.ts'
import { systemClock } from '../../node/service.ts'

const cg = process.getuid?.() === 0 ? probeCgroups() : undefined
const skip = process.getuid?.() !== 0 ? 'needs root (cgroups)' : cg?.ok !== true ? `no usable cgroups: ${cg?.detail}` : undefined
const maybe = skip === undefined ? test.serial : test.serial.skip
const TIMEOUT_MS = 1000
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

async function until (check: () => boolean, limitMs: number): Promise<boolean> {
  const t0 = Date.now()
  while (!check()) {
    if (Date.now() - t0 > limitMs) return false
    await sleep(25)
  }
  return true
}

function setup (t: import('ava').ExecutionContext, dataDir = mkdtempSync(join(tmpdir(), 'vgrid-rt-'))): { runtime: NodeRuntime, watchdog: Watchdog, pids: number[], ids: string[] } {
  const runtime = new NodeRuntime({ log: silentLogger, clock: systemClock, config: { dataDir } }, { watchdogTimeoutMs: TIMEOUT_MS })
  const watchdog = new Watchdog({ log: silentLogger }, { dataDir, timeoutMs: TIMEOUT_MS }) // to read its pid and record, never started
  const pids: number[] = []
  const ids: string[] = []
  t.teardown(async () => {
    const w = watchdog.running()
    if (w !== undefined) { try { process.kill(w, 'SIGKILL') } catch {} }
    for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} }
    // the VMs' cgroups and files: a VM the supervisor killed is never removed by a driver
    await runtime.stop({ graceful: false }).catch(() => {})
    // the cgroups of a VM the supervisor killed: no driver ran to remove them
    const layout = probeCgroups().layout
    if (layout !== undefined) {
      const parents = groupPaths(layout, '').map(p => dirname(join(p, 'x')))
      for (const parent of parents) {
        // the parent goes with the last VM's groups (and the probe no longer makes it)
        let names: string[] = []
        try { names = readdirSync(parent) } catch { continue }
        for (const name of names) if (ids.some(id => name.startsWith('process-') && name.endsWith(`-${id}`))) await removeGroups([join(parent, name)])
      }
    }
    rmSync(dataDir, { recursive: true, force: true })
  })
  return { runtime, watchdog, pids, ids }
}

const spec = (id: string): Parameters<NodeRuntime['drivers']['process']['start']>[0] => ({ id, vcpus: 0.2, memoryMiB: 32, network: false, boot: { kind: 'command', command: ['/bin/sleep', '600'] } })

maybe('graceful stop with a VM still running: the watchdog stays armed, stops being fed, and kills it', async t => {
  const { runtime, watchdog, pids, ids } = setup(t)
  ids.push(`rt-${process.pid}-a`)
  const info = await runtime.drivers.process.start(spec(`rt-${process.pid}-a`))
  pids.push(info.pid!)
  const supervisor = watchdog.running()
  t.truthy(supervisor, 'armed by the start')
  await runtime.stop({ graceful: true })
  t.is(watchdog.running(), supervisor, 'not disarmed')
  t.true(await until(() => !isAlive(info.pid!), TIMEOUT_MS * 4), 'the supervisor killed the VM left behind')
  // the supervisor records what it killed after killing it (and its cgroups), so the record may trail the death
  t.true(await until(() => watchdog.fired().some(f => f.killed.some(k => k.id === `rt-${process.pid}-a`)), 3000), 'the kill is recorded')
})

// graceful stops with every VM stopped: the supervisor exits, also for a restart (it
// ignores SIGTERM, and would outlive the agent guarding nothing)
for (const [what, leave, tag] of [['graceful stop with every VM stopped: disarmed, nothing killed', undefined, 'b'], ['a stop for a restart with no VM running: the supervisor exits (it ignores SIGTERM, and would outlive the agent guarding nothing)', false, 'e']] as const) {
  maybe(what, async t => {
    const { runtime, watchdog, ids } = setup(t)
    const id = `rt-${process.pid}-${tag}`
    ids.push(id)
    await runtime.drivers.process.start(spec(id))
    t.truthy(watchdog.running())
    await runtime.drivers.process.stop(id, 1000)
    await runtime.stop({ graceful: true, ...(leave != null ? { leave } : {}) })
    t.true(await until(() => watchdog.running() === undefined, 3000), 'the supervisor exited')
    t.deepEqual(watchdog.fired(), [])
  })
}

maybe('the supervisor killed (its guards kill their VMs): a VM started right after waits for a new supervisor and runs, not killed at once by its guard', async t => {
  const { runtime, watchdog, pids, ids } = setup(t)
  runtime.feedWhile(() => 0)
  const a = `rt-${process.pid}-c`
  const b = `rt-${process.pid}-d`
  ids.push(a, b)
  const first = await runtime.drivers.process.start(spec(a))
  pids.push(first.pid!)
  const supervisor = watchdog.running()!
  process.kill(supervisor, 'SIGKILL')
  t.true(await until(() => !isAlive(first.pid!), 3000), 'the guard killed its VM as the supervisor went')
  // at once, as the VM manager restarts a VM its guard killed
  const second = await runtime.drivers.process.start(spec(b))
  pids.push(second.pid!)
  const now = watchdog.running()
  t.truthy(now, 'a supervisor runs again')
  t.not(now, supervisor)
  await sleep(1500)
  t.true(isAlive(second.pid!), 'the VM runs: its guard found the new supervisor holding the FIFO')
  process.kill(now!, 'SIGKILL')
  t.true(await until(() => !isAlive(second.pid!), 3000), 'and fences it: the new supervisor gone, the guard kills the VM')
  // no VM left: a graceful stop disarms (the feed would start a supervisor again otherwise)
  await runtime.stop({ graceful: true })
  t.true(await until(() => watchdog.running() === undefined, 3000), 'no supervisor left')
})

maybe('a full data disk: the watchdog is still fed (in place) and kills nothing; a VM that ends meanwhile is still told', async t => {
  const mount = mkdtempSync(join(tmpdir(), 'vgrid-full-'))
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mount]) } catch (err) {
    rmSync(mount, { recursive: true, force: true })
    t.log(`no tmpfs here (${(err as Error).message}): skipped`)
    t.pass()
    return
  }
  t.teardown(() => { try { execFileSync('umount', ['-l', mount]) } catch {}; rmSync(mount, { recursive: true, force: true }) })
  const { runtime, watchdog, pids, ids } = setup(t, join(mount, 'data'))
  ids.push(`rt-${process.pid}-f`, `rt-${process.pid}-g`)
  runtime.feedWhile(() => 0)
  const exits: string[] = []
  const how = new Map<string, { reason: string, code: number | null }>()
  runtime.drivers.process.on('exit', (e: { id: string, reason: string, code: number | null }) => { exits.push(e.id); how.set(e.id, e) })
  for (const id of ids) pids.push((await runtime.drivers.process.start(spec(id))).pid!)
  // the disk fills up
  try { execFileSync('dd', ['if=/dev/zero', `of=${join(mount, 'filler')}`, 'bs=64k'], { stdio: 'ignore' }) } catch {}
  await sleep(TIMEOUT_MS * 4)
  t.true(pids.every(p => isAlive(p)), 'no VM killed: the feed went on in place')
  t.deepEqual(watchdog.fired(), [])
  // a VM that ends while the disk is full (its command killed, under its wrapper): its exit is
  // told all the same (its record is written later)
  const sleeper = descendants(pids[1]!).find(p => { try { return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sleep' } catch { return false } })
  t.truthy(sleeper, 'the VM\'s command under its wrapper')
  process.kill(sleeper!, 'SIGKILL')
  t.true(await until(() => exits.includes(ids[1]!), 5000), 'the exit was told')
  // its wrapper could not write its status: not taken for a clean exit (code 0)
  t.not(how.get(ids[1]!)?.code, 0, JSON.stringify(how.get(ids[1]!)))
  t.not(how.get(ids[1]!)?.reason, 'exited', JSON.stringify(how.get(ids[1]!)))
  // the fence in force changes while the disk is full: its record cannot be kept, and is written once there is room
  runtime.setFence(3000)
  t.deepEqual(readFenceRecord(join(mount, 'data')), { none: true }, 'not left stale')
  rmSync(join(mount, 'filler'))
  t.true(await until(() => JSON.stringify(readFenceRecord(join(mount, 'data'))) === JSON.stringify({ activeMs: 3000 }), 8000), 'the record written once the disk has room')
  await runtime.drivers.process.remove(ids[1]!).catch(() => {})
  await runtime.drivers.process.stop(ids[0]!, 1000)
  await runtime.stop({ graceful: true })
  t.true(await until(() => watchdog.running() === undefined, 3000), 'disarmed at the end')
})

/** every process under `pid` (from /proc's children lists) */
function descendants (pid: number): number[] {
  const out: number[] = []
  const walk = (p: number): void => {
    let kids: number[] = []
    try { kids = readdirSync(`/proc/${p}/task`).flatMap(tid => readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(x => x !== '').map(Number)) } catch {}
    for (const k of kids) { out.push(k); walk(k) }
  }
  walk(pid)
  return out
}
