// The watchdog's decisions, pure over what it read and its own monotonic clock.

export interface FeedState {
  /** Bumped by every feed; a change is what counts, not the wall-clock time in it. */
  seq: number
  /** The agent exits cleanly: the watchdog exits and kills nothing. */
  disarmed?: boolean
  /** The agent may change the timeout while it runs. */
  timeoutMs?: number
  /** The fence timeout the agent runs with: a restarted agent's bridge (bridge.ts) reads it. */
  fenceMs?: number
  /** A bridge's feed (bridge.ts): `since` is the previous run's last own feed, which a bridge never moves on. */
  bridge?: boolean
  since?: number
  pid?: number
  /**
   * The boot clock (CLOCK_BOOTTIME, ms: sleep-clock.ts) when it was written, and the
   * boot it was written in: a restarted agent's bridge measures the last feed's age on
   * it, which no step of the wall clock moves (`sinceBootMs`: a bridge's, the boot clock
   * at the previous run's last own feed).
   */
  bootMs?: number
  sinceBootMs?: number
  boot?: string
}

export type Verdict =
  | { action: 'wait', why: string }
  | { action: 'fire', why: string }
  | { action: 'exit', why: string }

/** The timeout a feed asks for, or `fallbackMs` (the supervisor's own) when it names none or junk. */
export function fedTimeout (feed: FeedState | undefined, fallbackMs: number): number {
  const t = feed?.timeoutMs
  return typeof t === 'number' && Number.isFinite(t) && t > 0 ? t : fallbackMs
}

/**
 * When the supervisor fires (by its monotonic clock), after a check: a feed sets it to
 * now + timeout; a timeout changed without a feed (the agent's fence timeout in force
 * changed while its feed is withheld) moves it to the earlier of the old deadline and
 * now + the shorter timeout (not to the last feed + the new one, which may be past:
 * that would kill at once), or, for a longer timeout, to the last feed + it.
 */
export function nextDeadline (o: { fed: boolean, deadline: number, lastChangeAt: number, prevTimeoutMs: number, timeoutMs: number, now: number }): number {
  if (o.fed) return o.now + o.timeoutMs
  if (o.timeoutMs < o.prevTimeoutMs) return Math.min(o.deadline, o.now + o.timeoutMs)
  if (o.timeoutMs > o.prevTimeoutMs) return Math.max(o.deadline, o.lastChangeAt + o.timeoutMs)
  return o.deadline
}

/**
 * What to do now: `lastChangeAt` is when the feed last changed, by the watchdog's
 * monotonic clock; `deadline` (nextDeadline) when it fires, by default that + the timeout.
 */
export function decide (o: { feed: FeedState | undefined, lastChangeAt: number, now: number, timeoutMs: number, deadline?: number }): Verdict {
  if (o.feed?.disarmed === true) return { action: 'exit', why: 'disarmed by the agent' }
  const timeout = fedTimeout(o.feed, o.timeoutMs)
  const quiet = o.now - o.lastChangeAt
  if (o.now > (o.deadline ?? o.lastChangeAt + timeout)) return { action: 'fire', why: `not fed for ${Math.round(quiet)} ms (timeout ${timeout} ms)` }
  return { action: 'wait', why: `fed ${Math.round(quiet)} ms ago` }
}

/**
 * What makes a rewrite of the feed file a feed: everything in it but the timeouts. The
 * agent writes new timeouts without feeding while its decision loop is stuck (a shorter
 * fence timeout in force must reach the supervisor all the same, but not as a feed).
 */
export function feedKey (text: string | undefined): string | undefined {
  const f = parseFeed(text)
  if (f == null) return text
  const { timeoutMs: _t, fenceMs: _f, ...rest } = f
  return JSON.stringify(rest)
}

/** Parses the feed file; anything unreadable counts as no feed (pure). */
export function parseFeed (text: string | undefined): FeedState | undefined {
  if (text === undefined) return undefined
  try {
    const f = JSON.parse(text) as FeedState
    return typeof f?.seq === 'number' ? f : undefined
  } catch {
    return undefined
  }
}
