// The fencing watchdog is fed only while its gate holds (NodeRuntime.feedWhile: the VM
// manager's loop completes steps): a real supervisor process, its feed file watched.
// Whether a starved supervisor kills VMs is test/dvmm/watchdog/watchdog.test.ts.
import test from 'ava'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Watchdog } from '../../node/dvmm/watchdog/index.ts'
import { watchdogPaths } from '../../node/dvmm/watchdog/paths.ts'
import { silentLogger } from '../../node/log.ts'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

test('the watchdog is fed while its gate holds, not while it does not, and again once it does', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wdgate-'))
  const w = new Watchdog({ log: silentLogger }, { dataDir, timeoutMs: 60_000, feedMs: 20 })
  t.teardown(async () => {
    await w.stop()
    if (w.pid !== undefined) { try { process.kill(w.pid, 'SIGKILL') } catch {} }
    rmSync(dataDir, { recursive: true, force: true })
  })
  let sound = true
  w.feedWhile(() => sound)
  await w.start()
  const seq = (): number => (JSON.parse(readFileSync(watchdogPaths(dataDir).feed, 'utf8')) as { seq: number }).seq
  const a = seq()
  await sleep(200)
  t.true(seq() > a, 'fed while sound')
  sound = false
  await sleep(60) // a feed in progress
  const b = seq()
  await sleep(300)
  t.is(seq(), b, 'not fed while the loop is stuck')
  // a shorter fence timeout in force meanwhile reaches the supervisor, as no feed (same seq)
  w.setTimeouts(1800, 3000)
  const feed = JSON.parse(readFileSync(watchdogPaths(dataDir).feed, 'utf8')) as { seq: number, timeoutMs: number, fenceMs: number }
  t.like(feed, { seq: b, timeoutMs: 1800, fenceMs: 3000 })
  await sleep(100)
  t.is(seq(), b, 'still not fed')
  sound = true
  await sleep(200)
  t.true(seq() > b, 'fed again')
})

test('an agent that stood still past its watchdog\'s timeout does not feed it at once (a supervisor frozen with it must fire first); a stopped supervisor is let go on', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-wdhold-'))
  const lines: string[] = []
  const log = { ...silentLogger, warn: (m: string) => { lines.push(m) }, error: (m: string) => { lines.push(m) }, info: () => {}, child: () => log } as unknown as typeof silentLogger
  const w = new Watchdog({ log }, { dataDir, timeoutMs: 400, feedMs: 50 })
  t.teardown(async () => {
    await w.stop()
    if (w.pid !== undefined) { try { process.kill(w.pid, 'SIGCONT'); process.kill(w.pid, 'SIGKILL') } catch {} }
    rmSync(dataDir, { recursive: true, force: true })
  })
  await w.start()
  const seq = (): number => (JSON.parse(readFileSync(watchdogPaths(dataDir).feed, 'utf8')) as { seq: number }).seq
  await sleep(200)
  // the agent's event loop stands still for longer than the timeout
  const end = Date.now() + 700
  while (Date.now() < end);
  const after = seq()
  await sleep(250)
  t.is(seq(), after, 'not fed right after the stall')
  t.true(lines.some(l => /stood still longer than its watchdog's timeout/.test(l)))
  await sleep(600)
  t.true(seq() > after, 'fed again once the supervisor has had its timeout to fire')
  // a stopped supervisor is continued at the next feed
  process.kill(w.pid!, 'SIGSTOP')
  await sleep(300)
  t.not(readFileSync(`/proc/${w.pid!}/stat`, 'utf8').replace(/^.*\) /s, '')[0], 'T', 'running again')
  t.true(lines.some(l => /supervisor was stopped/.test(l)))
})
