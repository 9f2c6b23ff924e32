// Since when a holder this node does not ask has been silent, on the wall clock (pure):
// a request to an object whose every holder is silent fails once that outlasts the
// retry time, instead of waiting the whole time again (bb23: minutes after both holders
// of an object were killed, every request to it still took 20 s to fail).
export interface SilentSinceInput {
  /** the holder in this node's member table, if it is there */
  member?: { state: string, lastSeen: number }
  /** it is on the grid's roll (a member this run never saw, or one the table forgot, is still one) */
  onRoll: boolean
  /** its roll entry records a restart still under its grace (restart-grace.ts): it is due back, waited for as before */
  restarting: boolean
  /** the wall time of its last sign of life, kept when the table went on without it */
  goneAt?: number
  /** when this node's volume store started (wall clock) */
  startedAt: number
  /** the monotonic clock the member table counts on, and the wall clock, now */
  monoNow: number
  wallNow: number
  /** how stale a lastSeen may be (membership refreshes it at most this often) */
  grainMs: number
}

/** undefined: not silent (alive or suspect: it is asked), or not known to be a holder that went */
export function silentSince (i: SilentSinceInput): number | undefined {
  if (i.restarting) return undefined
  const m = i.member
  if (m != null) {
    if (m.state === 'alive' || m.state === 'suspect') return undefined
    return lastSignOfLife(m.lastSeen, i.monoNow, i.wallNow, i.grainMs)
  }
  return i.goneAt ?? (i.onRoll ? i.startedAt : undefined)
}

/** A member's lastSeen (monotonic) on the wall clock: it may be up to a grain older than its last beat, so counted late, never early, and never after now. */
export function lastSignOfLife (lastSeen: number, monoNow: number, wallNow: number, grainMs: number): number {
  return Math.min(wallNow, wallNow - Math.max(0, monoNow - lastSeen) + grainMs)
}
