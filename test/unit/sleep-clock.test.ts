// The fence's clock (node/dvmm/watchdog/sleep-clock.ts): monotonic, plus every stretch
// the boot clock (CLOCK_BOOTTIME, /proc/uptime) ran ahead of it, so a server suspended
// past the fence timeout wakes to a stall that long (review rv20), not to no time gone.
import test from 'ava'
import { SleepClock, bootClockMs } from '../../node/dvmm/watchdog/sleep-clock.ts'

test('a sleep of the machine counts as time gone; the boot clock\'s 10 ms steps and a missing boot clock do not', t => {
  let mono = 1000
  let boot: number | null = 50_000
  const c = new SleepClock({ mono: () => mono, boot: () => boot })
  t.is(c.now(), 1000)
  // awake: both clocks run alike, the boot clock in steps of 10 ms
  for (let i = 0; i < 100; i++) { mono += 7; boot! += i % 3 === 0 ? 10 : 0; c.now() }
  t.is(c.slept, 0)
  // suspended for a minute: the monotonic clock stood still, the boot clock did not
  boot! += 60_000
  mono += 5
  t.is(c.now(), mono + 59_995)
  t.is(c.slept, 59_995)
  // no boot clock (not Linux, no /proc): the monotonic one alone
  boot = null
  mono += 100
  t.is(c.now(), mono + 59_995)
  boot = 200_000
  mono += 100
  t.is(c.now(), mono + 59_995, 'a boot clock back after a gap is a new start, not a sleep')
})

test('the boot clock is read from /proc/uptime here', t => {
  const b = bootClockMs()
  t.true(b != null && b > 0)
  const c = new SleepClock()
  t.true(c.now() > 0)
  t.is(c.slept, 0)
})

test('an agent whose machine slept past its watchdog\'s timeout does not feed at its wake, so its supervisor fires (its VMs may run elsewhere by now)', async t => {
  const { mkdirSync, mkdtempSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { Watchdog } = await import('../../node/dvmm/watchdog/index.ts')
  const { watchdogPaths } = await import('../../node/dvmm/watchdog/paths.ts')
  const { silentLogger } = await import('../../node/log.ts')
  const dataDir = mkdtempSync(join(tmpdir(), 'vgt-sleep-'))
  t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
  let mono = 1000
  let boot = 9000
  const clock = new SleepClock({ mono: () => mono, boot: () => boot })
  const w = new Watchdog({ log: silentLogger, clock }, { dataDir, timeoutMs: 3000 })
  const feed = (): string => readFileSync(watchdogPaths(dataDir).feed, 'utf8')
  mkdirSync(watchdogPaths(dataDir).dir, { recursive: true })
  w.feed()
  const before = feed()
  mono += 1000; boot += 1000
  w.feedIfSound()
  t.not(feed(), before, 'awake: fed')
  const fed = feed()
  // suspended for a minute, woken: the monotonic clock moved 10 ms
  mono += 10; boot += 60_000
  w.feedIfSound()
  t.is(feed(), fed, 'not fed at the wake')
  mono += 3100; boot += 3100
  w.feedIfSound()
  t.not(feed(), fed, 'fed again once its supervisor has had a timeout to fire')
})
