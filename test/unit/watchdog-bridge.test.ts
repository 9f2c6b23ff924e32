// The restarted agent's bridge to the previous run's watchdog (node/dvmm/watchdog/bridge.ts):
// it feeds only while a supervisor of that run lives, and only until the previous
// run's last feed + the grace, so the VMs still die before any takeover.
import test from 'ava'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bridgePlan, bridgeWatchdog, previousTimeouts } from '../../node/dvmm/watchdog/bridge.ts'
import { watchdogPaths } from '../../node/dvmm/watchdog/paths.ts'
import { currentBootId, procStat } from '../../node/dvmm/drivers/common.ts'

test('bridgePlan: feeds until last feed + grace, and never without a live, armed supervisor', t => {
  const base = { supervisorAlive: true, disarmed: false, lastFeedAt: 10_000, now: 11_000, graceMs: 2000 }
  t.is(bridgePlan(base).until, 12_000)
  t.is(bridgePlan({ ...base, now: 12_500 }).until, null, 'too late: the supervisor is about to fire, as it should')
  t.regex(bridgePlan({ ...base, now: 12_500 }).why, /too late/)
  t.is(bridgePlan({ ...base, supervisorAlive: false }).until, null)
  t.is(bridgePlan({ ...base, disarmed: true }).until, null)
  t.is(bridgePlan({ ...base, lastFeedAt: null }).until, null)
  // started past the watchdog's timeout but within the fence: it fired already, nothing is kept alive
  const fired = bridgePlan({ ...base, firedAt: 10_600 })
  t.is(fired.until, null)
  t.is(fired.why, 'too late: the previous run\'s watchdog fired 600 ms after its last feed, 400 ms ago')
  t.is(bridgePlan({ ...base, firedAt: 9000 }).until, 12_000, 'a firing before its last feed (an earlier run\'s) does not count')
})

test('bridgeWatchdog: rewrites the feed of a live supervisor until the deadline, then stops', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bridge-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  // this test process stands in for the supervisor (alive, start time matching)
  writeFileSync(p.pid, JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)!.startTicks, bootId: currentBootId() }))
  // the previous run's last feed names its timeouts: the bridge feeds until 250 ms before its fence (1000 ms) ends
  writeFileSync(p.feed, JSON.stringify({ seq: 7, pid: 1, timeoutMs: 400, fenceMs: 1000 }))
  const last = Date.now() - 200
  utimesSync(p.feed, last / 1000, last / 1000)
  const b = bridgeWatchdog(dir, { feedMs: 50 })
  t.teardown(b.stop)
  t.is(Math.round(b.lastFeedAt! / 1000), Math.round(last / 1000))
  t.true(Math.abs(b.until! - (b.lastFeedAt! + 750)) < 1)
  t.truthy(b.until)
  const seen = new Set<string>()
  const end = Date.now() + 1000
  while (Date.now() < end) { seen.add(readFileSync(p.feed, 'utf8')); await new Promise(resolve => setTimeout(resolve, 20)) }
  t.true(seen.size >= 3, `fed while the grace lasted (${seen.size} distinct feeds)`)
  const after = readFileSync(p.feed, 'utf8')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.is(readFileSync(p.feed, 'utf8'), after, 'and not after it')
  const lastFed = JSON.parse(after) as { bridge: boolean, timeoutMs: number, fenceMs: number }
  t.like(lastFed, { bridge: true, fenceMs: 1000 }, 'fed with the previous run\'s fence')
  t.true(lastFed.timeoutMs <= 400 && lastFed.timeoutMs >= 250, `its last timeout (${lastFed.timeoutMs} ms) at most the watchdog's, ending by the previous run's fence`)
  t.is(Math.round(JSON.parse(after).since), Math.round(b.lastFeedAt!), 'and its last own feed')
})

test('bridgeWatchdog: a bridge of a run that died while loading does not move the last own feed on', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bridge-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.pid, JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)!.startTicks, bootId: currentBootId() }))
  // the feed on disk is a bridge's, written just now, of a run whose last own feed was 5 s ago
  const since = Date.now() - 5000
  writeFileSync(p.feed, JSON.stringify({ seq: 3, pid: 1, bridge: true, since, timeoutMs: 3000, fenceMs: 5000 }))
  const b = bridgeWatchdog(dir, { feedMs: 50 })
  b.stop()
  t.is(b.lastFeedAt, since)
  t.is(b.until, null, 'past that feed + its fence: no more bridging, the supervisor fires')
})

test('bridgeWatchdog: a supervisor that fired after the last feed (this run started past its timeout) is not fed, and says so', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bridge-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.pid, JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)!.startTicks, bootId: currentBootId() }))
  writeFileSync(p.feed, JSON.stringify({ seq: 7, pid: 1, timeoutMs: 3000, fenceMs: 5000 }))
  const last = Date.now() - 3500
  utimesSync(p.feed, last / 1000, last / 1000)
  writeFileSync(p.fired, JSON.stringify({ at: last + 3100, why: 'timeout', killed: [] }) + '\n')
  const b = bridgeWatchdog(dir, { feedMs: 50 })
  b.stop()
  t.is(b.until, null)
  t.regex(b.why, /^too late: the previous run's watchdog fired 3\d\d\d ms after its last feed/)
  t.is(readFileSync(p.feed, 'utf8'), JSON.stringify({ seq: 7, pid: 1, timeoutMs: 3000, fenceMs: 5000 }), 'not fed')
})

test('previousTimeouts: the last feed\'s, or the defaults of a release that did not feed them', t => {
  t.deepEqual(previousTimeouts({ timeoutMs: 12_000, fenceMs: 20_000 }), { watchdogMs: 12_000, fenceMs: 20_000 })
  t.deepEqual(previousTimeouts({ timeoutMs: 3000 }), { watchdogMs: 3000, fenceMs: 5000 })
  t.deepEqual(previousTimeouts(undefined), { watchdogMs: 3000, fenceMs: 5000 })
  t.deepEqual(previousTimeouts({ timeoutMs: -1, fenceMs: Number.NaN }), { watchdogMs: 3000, fenceMs: 5000 }, 'junk is not taken')
  t.deepEqual(previousTimeouts({ timeoutMs: 9000, fenceMs: 4000 }), { watchdogMs: 3000, fenceMs: 4000 }, 'a watchdog longer than its fence is not taken')
  // damage, not a setting: a restarted node fenced at once, a start refused, the old VMs bridged for ever
  for (const fenceMs of [1, 0.4, 1e15, 2.5e3 + 0.5]) t.is(previousTimeouts({ timeoutMs: 1, fenceMs }).fenceMs, 5000, String(fenceMs))
  t.deepEqual(previousTimeouts({ timeoutMs: 0, fenceMs: 20_000 }), { watchdogMs: 3000, fenceMs: 20_000 })
})

test('bridgeWatchdog: nothing to bridge without a supervisor', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bridge-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const b = bridgeWatchdog(dir)
  b.stop()
  t.is(b.lastFeedAt, null)
  t.is(b.until, null)
})

test('bridgeWatchdog: the last feed\'s age is read on the boot clock, which a wall clock stepped back during the restart does not move', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-bridge-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const p = watchdogPaths(dir)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.pid, JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)!.startTicks, bootId: currentBootId() }))
  // the last own feed was 5 s ago by the boot clock; the wall clock went back 4.8 s since, so its mtime looks 200 ms old
  const boot = 1_000_000
  writeFileSync(p.feed, JSON.stringify({ seq: 7, pid: 1, timeoutMs: 3000, fenceMs: 5000, bootMs: boot - 5000, boot: currentBootId() }))
  const b = bridgeWatchdog(dir, { feedMs: 50, bootClock: () => boot })
  b.stop()
  t.true(Math.abs(b.lastFeedAt! - (Date.now() - 5000)) < 100, `${Date.now() - b.lastFeedAt!} ms ago`)
  t.is(b.until, null, 'past that feed + its fence: no more bridging, the supervisor fires')
  // a feed of another boot (or an earlier release, without the stamp): its mtime, as before
  writeFileSync(p.feed, JSON.stringify({ seq: 8, pid: 1, timeoutMs: 3000, fenceMs: 5000, bootMs: boot - 5000, boot: 'another-boot' }))
  const c = bridgeWatchdog(dir, { feedMs: 50, bootClock: () => boot })
  c.stop()
  t.true(Date.now() - c.lastFeedAt! < 1000)
  // a bridge carries the boot clock of the last own feed on
  writeFileSync(p.feed, JSON.stringify({ seq: 9, pid: 1, timeoutMs: 3000, fenceMs: 5000, bootMs: boot - 1000, boot: currentBootId() }))
  const d = bridgeWatchdog(dir, { feedMs: 50, bootClock: () => boot })
  d.stop()
  const fed = JSON.parse(readFileSync(p.feed, 'utf8')) as { bridge: boolean, sinceBootMs: number }
  t.like(fed, { bridge: true, sinceBootMs: boot - 1000 })
})
