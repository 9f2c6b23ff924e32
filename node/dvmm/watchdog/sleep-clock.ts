// A clock for the fence's own timers that also counts time the machine slept.
// CLOCK_MONOTONIC (performance.now) stands still while the server is suspended: an
// agent and its supervisor frozen with the machine for longer than the fence timeout
// woke to find no time gone, kept feeding and ran their VMs on beside the takeover
// elsewhere (review rv20). CLOCK_BOOTTIME counts the sleep; Linux shows it in
// /proc/uptime (10 ms steps). This clock is the monotonic one plus every stretch the
// boot clock ran ahead of it, so a wake after a sleep reads as a stall that long, and
// the stall rules fence the node (its VMs killed) as for any other stall.
// A hypervisor's pause that stops the guest's boot clock too is not seen here.
import { readFileSync } from 'node:fs'

/** the boot clock in ms (CLOCK_BOOTTIME, from /proc/uptime), or null where it cannot be read */
export function bootClockMs (): number | null {
  try {
    const s = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0])
    return Number.isFinite(s) ? s * 1000 : null
  } catch { return null }
}

/** less than this of the boot clock ahead is its 10 ms steps, not a sleep */
const SLEPT_MIN_MS = 100

export class SleepClock {
  private readonly mono: () => number
  private readonly boot: () => number | null
  private lastMono: number
  private lastBoot: number | null
  /** the time the machine slept, summed */
  private sleptMs = 0

  constructor (clocks: { mono?: () => number, boot?: () => number | null } = {}) {
    this.mono = clocks.mono ?? (() => performance.now())
    this.boot = clocks.boot ?? bootClockMs
    this.lastMono = this.mono()
    this.lastBoot = this.boot()
  }

  /** ms, monotonic, with the machine's sleeps counted (only differences mean anything) */
  now (): number {
    const m = this.mono()
    const b = this.boot()
    if (b != null && this.lastBoot != null) {
      const ahead = (b - this.lastBoot) - (m - this.lastMono)
      if (ahead >= SLEPT_MIN_MS) this.sleptMs += ahead
    }
    this.lastMono = m
    // a reading missing makes the next a new base (its gap to an old one is no sleep)
    this.lastBoot = b
    return m + this.sleptMs
  }

  /** the time the machine slept since the clock was made */
  get slept (): number { this.now(); return this.sleptMs }
}
