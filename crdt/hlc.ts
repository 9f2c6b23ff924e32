// A hybrid logical clock for `at` stamps (ms since the epoch, integers): a stamp is
// never below the wall clock and always above every stamp this node has made or seen,
// so a write made after its writer saw another write orders after it, whatever the
// wall clocks say. Pure: the caller keeps the state and passes `now`.
//
// The bound: a stamp from a peer more than MAX_FUTURE_MS ahead of our own wall clock
// is only observed up to now + MAX_FUTURE_MS. A node whose clock runs fast can thus not
// drag the others' clocks (and so every later write in the grid) into its future; its
// own writes keep their stamps, and the offset is reported by the heartbeats (see
// protocol/heartbeat.ts, MAX_CLOCK_OFFSET_MS).

/** how far ahead of the local wall clock an observed stamp may pull this clock */
export const MAX_FUTURE_MS = 500

export interface HlcState {
  /** the greatest stamp made or observed (ms) */
  last: number
}

/** The stamp for a local write now, and the clock after it. */
export function tick (s: HlcState, now: number): { at: number, state: HlcState } {
  const at = Math.max(Math.floor(now), s.last + 1)
  return { at, state: { last: at } }
}

/**
 * The clock after seeing a stamp `remoteAt` from a peer. `clamped` says the stamp was
 * beyond the bound (a peer whose clock runs ahead: worth a warning).
 */
export function observe (s: HlcState, remoteAt: number, now: number, maxFutureMs = MAX_FUTURE_MS): { state: HlcState, clamped: boolean } {
  if (!Number.isFinite(remoteAt)) return { state: s, clamped: false }
  const limit = Math.floor(now) + maxFutureMs
  const clamped = remoteAt > limit
  const seen = Math.floor(clamped ? limit : remoteAt)
  return { state: seen > s.last ? { last: seen } : s, clamped }
}

/** A mutable holder of one clock, shared by a replica and its forks. */
export class Hlc {
  private s: HlcState = { last: 0 }
  /** stamps from peers that were beyond the bound */
  clamped = 0
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  get last (): number { return this.s.last }

  tick (): number {
    const r = tick(this.s, this.now())
    this.s = r.state
    return r.at
  }

  observe (remoteAt: number): boolean {
    const r = observe(this.s, remoteAt, this.now())
    this.s = r.state
    if (r.clamped) this.clamped++
    return r.clamped
  }
}
