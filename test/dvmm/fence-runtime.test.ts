// NodeRuntime's graceful stop disarms the fencing watchdog only when no driver lists a
// VM running, starting or stopping; with one left it stops feeding and leaves the
// supervisor armed, which kills it. Real process VMs and a real supervisor.
import test from 'ava'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { NodeRuntime } from '../../node/dvmm/node-runtime.ts'
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

function setup (t: import('ava').ExecutionContext): { runtime: NodeRuntime, watchdog: Watchdog, pids: number[], ids: string[] } {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-rt-'))
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
        for (const name of readdirSync(parent)) if (ids.some(id => name.startsWith('process-') && name.endsWith(`-${id}`))) await removeGroups([join(parent, name)])
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

maybe('graceful stop with every VM stopped: disarmed, nothing killed', async t => {
  const { runtime, watchdog, ids } = setup(t)
  const id = `rt-${process.pid}-b`
  ids.push(id)
  await runtime.drivers.process.start(spec(id))
  t.truthy(watchdog.running())
  await runtime.drivers.process.stop(id, 1000)
  await runtime.stop({ graceful: true })
  t.true(await until(() => watchdog.running() === undefined, 3000), 'the supervisor exited')
  t.deepEqual(watchdog.fired(), [])
})

maybe('a stop for a restart with no VM running: the supervisor exits (it ignores SIGTERM, and would outlive the agent guarding nothing)', async t => {
  const { runtime, watchdog, ids } = setup(t)
  const id = `rt-${process.pid}-e`
  ids.push(id)
  await runtime.drivers.process.start(spec(id))
  t.truthy(watchdog.running())
  await runtime.drivers.process.stop(id, 1000)
  await runtime.stop({ graceful: true, leave: false })
  t.true(await until(() => watchdog.running() === undefined, 3000), 'the supervisor exited')
  t.deepEqual(watchdog.fired(), [])
})

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
