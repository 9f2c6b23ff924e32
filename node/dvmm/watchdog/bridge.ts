// A restarted agent and the previous run's watchdog. Between an agent's death and its
// restart the watchdog keeps counting, and a restart slower than its timeout (3 s;
// loading the agent takes 1.5-4 s here) found its VMs killed. The issue promises
// adoption within the fence timeout (5 s). So `vgrid agent` feeds the previous run's
// supervisor from its first moment, but only until the previous run's last feed +
// (fence timeout - watchdog timeout): left alone the supervisor then fires by last
// feed + fence timeout, still before any takeover elsewhere (takeovers wait fence
// timeout + margin from when the holder was last heard of, which is not before its
// last feed). The VM manager counts its fence from the same last feed, so a restarted
// agent that finds no majority in time kills its VMs itself.
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { sameProcessAlive } from '../drivers/common.ts'
import { parseFeed } from './decide.ts'
import { watchdogPaths } from './paths.ts'

export interface Bridge {
  /** when the previous run last fed its watchdog (ms since epoch), if a supervisor still runs for this data dir */
  lastFeedAt: number | null
  /** until when this bridge feeds (null: it does not) */
  until: number | null
  stop: () => void
}

/** What to do, from what is on disk (pure): feed until `until`, or not at all. */
export function bridgePlan (o: { supervisorAlive: boolean, disarmed: boolean, lastFeedAt: number | null, now: number, graceMs: number }): { until: number | null, why: string } {
  if (!o.supervisorAlive) return { until: null, why: 'no watchdog of a previous run' }
  if (o.disarmed) return { until: null, why: 'the previous run disarmed its watchdog' }
  if (o.lastFeedAt == null) return { until: null, why: 'the previous run never fed its watchdog' }
  const until = o.lastFeedAt + o.graceMs
  if (until <= o.now) return { until: null, why: `too late: the previous run last fed ${o.now - o.lastFeedAt} ms ago` }
  return { until, why: `feeding the previous run's watchdog until ${new Date(until).toISOString()}` }
}

export function bridgeWatchdog (dataDir: string, opts: { graceMs: number, feedMs?: number, now?: () => number }): Bridge & { why: string } {
  const now = opts.now ?? Date.now
  const paths = watchdogPaths(dataDir)
  let supervisorAlive = false
  try {
    const p = JSON.parse(readFileSync(paths.pid, 'utf8')) as { pid: number, startTicks: number, bootId?: string }
    supervisorAlive = sameProcessAlive(p.pid, p.startTicks, p.bootId)
  } catch {}
  let lastFeedAt: number | null = null
  let disarmed = false
  try {
    lastFeedAt = statSync(paths.feed).mtimeMs
    disarmed = parseFeed(readFileSync(paths.feed, 'utf8'))?.disarmed === true
  } catch {}
  const plan = bridgePlan({ supervisorAlive, disarmed, lastFeedAt: supervisorAlive ? lastFeedAt : null, now: now(), graceMs: opts.graceMs })
  let seq = 0
  const feed = (): void => {
    if (plan.until == null || now() >= plan.until) { clearInterval(timer); return }
    const tmp = `${paths.feed}.bridge.tmp`
    try {
      // any change of the file counts as a feed; the agent's own watchdog writes its own later
      writeFileSync(tmp, JSON.stringify({ seq: ++seq, pid: process.pid, bridge: true }))
      renameSync(tmp, paths.feed)
    } catch {}
  }
  const timer = setInterval(feed, opts.feedMs ?? 250)
  timer.unref()
  feed()
  return { lastFeedAt: supervisorAlive ? lastFeedAt : null, until: plan.until, why: plan.why, stop: () => { clearInterval(timer) } }
}
