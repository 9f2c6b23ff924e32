// A restarted agent and the previous run's watchdog. Between an agent's death and its
// restart the watchdog keeps counting, and a restart slower than its timeout (3 s of the
// default 5 s fence; an agent restarted after a crash starts in 0.5-1 s here, more on a loaded machine) found its VMs killed. The
// issue promises adoption within the fence timeout. So `vgrid agent` feeds the previous
// run's supervisor from its first moment, each feed with a timeout that ends by the
// previous run's last feed + its fence timeout (its watchdog timeout, or what is left
// of that fence when less), until shortly before then: left alone the supervisor fires
// by last feed + fence timeout, still before any takeover elsewhere (takeovers wait
// fence timeout + margin from when the holder was last heard of, which is not before
// its last feed). A restart grace's fence is long (5/3 of the grace), and an agent back
// late in it, slow to load, still adopts its VMs. The VM manager counts its fence from the same last feed, so a restarted agent
// that finds no majority in time kills its VMs itself. The previous run's timeouts come
// from its last feed (an operator may have changed the fence timeout between runs).
import { readFileSync, statSync } from 'node:fs'
import { writeSmall } from './small-file.ts'
import { liveSupervisor } from './supervisor-pid.ts'
import { parseFeed } from './decide.ts'
import { watchdogPaths } from './paths.ts'
import { bootClockMs } from './sleep-clock.ts'
import { currentBootId } from '../drivers/common.ts'
import { FENCE_TIMEOUT_MS, MAX_FENCE_TIMEOUT_MS, WATCHDOG_TIMEOUT_MS } from '../timing.ts'

export interface Bridge {
  /** when the previous run last fed its watchdog (ms since epoch), if a supervisor still runs for this data dir */
  lastFeedAt: number | null
  /**
   * the fence timeout that last feed promised (its fenceMs: a restart grace's is longer,
   * restart-grace.ts), if a supervisor still runs: the VM manager's fence counts it from
   * the last feed until this run first sees a majority
   */
  lastFeedFenceMs: number | null
  /** until when this bridge feeds (null: it does not) */
  until: number | null
  stop: () => void
}

/** What to do, from what is on disk (pure): feed until `until`, or not at all. */
export function bridgePlan (o: { supervisorAlive: boolean, disarmed: boolean, lastFeedAt: number | null, now: number, graceMs: number, firedAt?: number | null }): { until: number | null, why: string } {
  if (!o.supervisorAlive) return { until: null, why: 'no watchdog of a previous run' }
  if (o.disarmed) return { until: null, why: 'the previous run disarmed its watchdog' }
  if (o.lastFeedAt == null) return { until: null, why: 'the previous run never fed its watchdog' }
  // it fired already (this run started past its timeout, within the fence): feeding it keeps nothing alive
  if (o.firedAt != null && o.firedAt >= o.lastFeedAt) return { until: null, why: `too late: the previous run's watchdog fired ${Math.round(o.firedAt - o.lastFeedAt)} ms after its last feed, ${Math.round(o.now - o.firedAt)} ms ago` }
  const until = o.lastFeedAt + o.graceMs
  if (until <= o.now) return { until: null, why: `too late: the previous run last fed ${Math.round(o.now - o.lastFeedAt)} ms ago` }
  return { until, why: `feeding the previous run's watchdog until ${new Date(until).toISOString()}` }
}

/**
 * Fed fence timeouts outside these bounds are damage, not a setting: an agent's is 3 s
 * to 10 min (node/config.ts), in-process tests run down to 1 s. A fed 1 ms would fence
 * a restarted node at once, a fed 1e15 ms would bridge the old VMs for ever.
 */
const FED_FENCE_MS = { min: 500, max: MAX_FENCE_TIMEOUT_MS }

/** the bridge's last feed comes this long before the previous run's fence ends (its timeout then runs out) */
export const BRIDGE_END_MS = 250

const within = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max

/** The fence timeout a feed gives (undefined: none, as from a release before fenceMs was fed, or junk). */
export function fedFenceMs (feed: { fenceMs?: number } | undefined): number | undefined {
  return within(feed?.fenceMs, FED_FENCE_MS.min, FED_FENCE_MS.max) ? feed.fenceMs : undefined
}

/** The previous run's timeouts, from its last feed (a release before fenceMs was fed ran the defaults; junk counts as not fed). */
export function previousTimeouts (feed: { timeoutMs?: number, fenceMs?: number } | undefined): { watchdogMs: number, fenceMs: number } {
  const fenceMs = fedFenceMs(feed) ?? FENCE_TIMEOUT_MS
  const watchdogMs = within(feed?.timeoutMs, Math.floor(FED_FENCE_MS.min / 2), fenceMs) ? feed.timeoutMs : Math.min(WATCHDOG_TIMEOUT_MS, fenceMs)
  return { watchdogMs, fenceMs }
}

export function bridgeWatchdog (dataDir: string, opts: { feedMs?: number, now?: () => number, bootClock?: () => number | null } = {}): Bridge & { why: string } {
  const now = opts.now ?? Date.now
  const paths = watchdogPaths(dataDir)
  const supervisorAlive = liveSupervisor(dataDir) !== undefined
  let lastFeedAt: number | null = null
  let disarmed = false
  let previous = previousTimeouts(undefined)
  const bootNow = opts.bootClock === undefined ? bootClockMs() : opts.bootClock()
  // the wall clock read with it: the two conversions below use one pair of readings
  // (two readings a millisecond apart made the bridge's stamp 1 ms off the feed's)
  const wallAtBoot = now()
  try {
    lastFeedAt = statSync(paths.feed).mtimeMs
    const feed = parseFeed(readFileSync(paths.feed, 'utf8'))
    disarmed = feed?.disarmed === true
    previous = previousTimeouts(feed)
    // a bridge of a run that died before its agent fed: its feeds do not move the last
    // own feed on (runs that keep dying while loading must not keep the VMs alive)
    if (feed?.bridge === true && typeof feed.since === 'number' && Number.isFinite(feed.since)) lastFeedAt = Math.min(lastFeedAt, feed.since)
    // its age on the boot clock where the feed has it, from this boot: a wall clock
    // stepped back during the restart made the mtime look recent, and the bridge fed
    // the VMs past the fence the others count (review rv20)
    const stamp = feed?.bridge === true ? feed.sinceBootMs : feed?.bootMs
    if (bootNow != null && feed?.boot === currentBootId() && typeof stamp === 'number' && Number.isFinite(stamp)) lastFeedAt = wallAtBoot - Math.max(0, bootNow - stamp)
  } catch {}
  /** the boot clock at the last own feed (for the bridge's own feeds) */
  const lastFeedBootMs = bootNow != null && lastFeedAt != null ? Math.round(bootNow - Math.max(0, wallAtBoot - lastFeedAt)) : undefined
  const plan = bridgePlan({ supervisorAlive, disarmed, lastFeedAt: supervisorAlive ? lastFeedAt : null, now: now(), graceMs: previous.fenceMs - BRIDGE_END_MS, firedAt: lastFiredAt(paths.fired) })
  let seq = 0
  const feed = (): void => {
    const t = now()
    if (plan.until == null || lastFeedAt == null || t >= plan.until) { clearInterval(timer); return }
    // never past the previous run's fence: what is left of it, when less than its watchdog timeout
    const timeoutMs = Math.min(previous.watchdogMs, Math.floor(lastFeedAt + previous.fenceMs - t))
    try {
      // any change of the file counts as a feed; the agent's own watchdog writes its own later
      // with the previous run's timeouts: the supervisor fires by its last feed + fence timeout
      writeSmall(paths.feed, JSON.stringify({ seq: ++seq, pid: process.pid, bridge: true, since: lastFeedAt, timeoutMs, fenceMs: previous.fenceMs, ...(lastFeedBootMs != null && currentBootId() != null ? { sinceBootMs: lastFeedBootMs, boot: currentBootId() } : {}) }))
    } catch {}
  }
  const timer = setInterval(feed, opts.feedMs ?? 250)
  timer.unref()
  feed()
  return { lastFeedAt: supervisorAlive ? lastFeedAt : null, lastFeedFenceMs: supervisorAlive ? previous.fenceMs : null, until: plan.until, why: plan.why, stop: () => { clearInterval(timer) } }
}

/** when the supervisor last fired (the last line of its fired.jsonl), or null */
function lastFiredAt (file: string): number | null {
  try {
    const lines = readFileSync(file, 'utf8').split('\n').filter(l => l !== '')
    const at = (JSON.parse(lines.at(-1) ?? 'null') as { at?: unknown } | null)?.at
    return typeof at === 'number' && Number.isFinite(at) ? at : null
  } catch {
    return null
  }
}
