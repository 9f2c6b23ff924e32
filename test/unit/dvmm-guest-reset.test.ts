// How a qemu guest that reset itself ended (QEMU, under -no-reboot, exits with status 0
// either way), and what the restart rule does with a guest's reboot.
import test from 'ava'
import { guestReset } from '../../node/dvmm/drivers/qemu.ts'
import { onExit, CRASH_WINDOW_MS, QUICK_RUN_MS } from '../../crdt/placement/restart.ts'

test('guestReset: a panic, a reboot, whichever came last; a power-off after either is a clean end', t => {
  t.is(guestReset('[    1.2] VFS: Unable to mount root fs on unknown-block(0,0)\n[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\n[    1.3] CPU: 0 PID: 1\n'), 'panicked')
  t.is(guestReset('vgrid-guest: rebooting\n[   31.0] reboot: Restarting system\n'), 'rebooted')
  t.is(guestReset('vgrid-guest: ready\nvgrid-guest: power button, shutting down\n[   9.1] reboot: Power down\n'), undefined)
  t.is(guestReset('echo Kernel panic - not syncing\n[   9.1] reboot: Power down\n'), undefined)
  t.is(guestReset('echo reboot: Restarting system\n[   9.1] reboot: Power down\n'), undefined)
  t.is(guestReset('[ 5.0] reboot: Restarting system\n[ 5.1] Kernel panic - not syncing: Attempted to kill init!\n'), 'panicked', 'a panic on the way down')
  t.is(guestReset('[ 5.1] Kernel panic - not syncing: x\n... an earlier run\n[ 9.0] reboot: Restarting system\n'), 'rebooted')
  t.is(guestReset(''), undefined)
})

test('onExit: a guest\'s reboot restarts it under every policy, counted no crash; quick ones in a row wait as quick clean runs do', t => {
  const now = 1_000 * CRASH_WINDOW_MS
  const earlier = [now - 5000]
  for (const policy of ['always', 'on-failure', 'never'] as const) {
    const d = onExit(earlier, now, { policy, rebooted: true, detail: 'rebooted by its guest', ranMs: 30_000, quickRuns: 0 })
    t.like(d, { action: 'restart', crashes: earlier, reason: 'rebooted by its guest after 30 s: restarting (a guest\'s reboot is no crash, and restarts it whatever its restart policy)' }, policy)
    t.is((d as { delayMs?: number }).delayMs, undefined)
  }
  // at once after a start too (no MIN_CLEAN_RUN_MS rule: a reboot is no exit to count)
  t.like(onExit([], now, { policy: 'on-failure', rebooted: true, ranMs: 2000 }), { action: 'restart', crashes: [] })
  t.like(onExit([], now, { rebooted: true, detail: 'rebooted by its guest', ranMs: 60_000, quickRuns: 1 }), { action: 'restart', delayMs: 10_000, reason: `rebooted by its guest after 60 s: restarting in 10 s (at ${new Date(now + 10_000).toISOString().slice(11, 19)} UTC; 2 runs in a row under 10 min: each doubles the wait, up to 5 min) (a guest's reboot is no crash, and restarts it whatever its restart policy)` })
  t.like(onExit([], now, { rebooted: true, ranMs: QUICK_RUN_MS, quickRuns: 7 }), { action: 'restart' })
  t.is((onExit([], now, { rebooted: true, ranMs: QUICK_RUN_MS, quickRuns: 7 }) as { delayMs?: number }).delayMs, undefined, 'a long run starts the count again')
  // crashes older than the window are dropped as on any restart
  t.deepEqual(onExit([now - CRASH_WINDOW_MS - 1], now, { rebooted: true, ranMs: 20_000 }).crashes, [])
})
