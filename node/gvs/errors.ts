// Errors of the volume store, each with a code that maps to an NBD errno and an HTTP
// status, and a message that names what was wrong.

export type GvsErrorCode =
  | 'stale-epoch' // a writer older than the newest this replica has seen (invariant 3)
  | 'frozen' // a write to a layer a snapshot froze: its writer must follow the snapshot to the new top
  | 'in-use' // another node's client writes the volume: one writer at a time
  | 'damaged' // stored data failed its checksum: reported, never served
  | 'invalid' // a bad name, offset or length
  | 'no-space' // the disk is full (ENOSPC)
  | 'unavailable' // too few replicas reachable
  | 'io' // any other I/O failure

export class GvsError extends Error {
  readonly code: GvsErrorCode
  /**
   * A replica was out of reach for a moment (unreachable, silent, not answering in
   * time): worth trying again once membership has moved on or the node is back
   * (replicated-volume.ts retries writes and flushes for a while)
   */
  readonly transient: boolean
  /**
   * Since when (epoch ms) the condition behind a transient error has held, where known:
   * one that has outlasted the retry window fails a new request at once, not after
   * another window (a tester's every write on a node cut off for a minute took 20 s to
   * fail)
   */
  readonly since?: number
  /**
   * Until when (epoch ms) the condition is expected to last at most, where known (the
   * members away under confirmed restart graces are due back): a request waits for it
   * that long, past its usual retry window
   */
  readonly until?: number
  constructor (code: GvsErrorCode, message: string, options?: { cause?: unknown, transient?: boolean, since?: number, until?: number }) {
    super(message, options)
    this.name = 'GvsError'
    this.code = code
    this.transient = options?.transient === true
    if (options?.since != null) this.since = options.since
    if (options?.until != null) this.until = options.until
  }
}

/** the latest `field` of the errors that together fail a request, when every one is transient and says it; else none */
function latestOfAll (errs: readonly unknown[], field: 'since' | 'until'): number | undefined {
  let latest = -Infinity
  for (const e of errs) {
    const v = e instanceof GvsError && e.transient ? e[field] : undefined
    if (v == null) return undefined
    latest = Math.max(latest, v)
  }
  return errs.length > 0 ? latest : undefined
}

/** Since when the errors that together fail a request have held (the whole is as old as its youngest cause). */
export const sinceOfAll = (errs: readonly unknown[]): number | undefined => latestOfAll(errs, 'since')

/** Until when the errors that together fail a request are due to end (GvsError.until: the whole lasts as long as its longest cause). */
export const untilOfAll = (errs: readonly unknown[]): number | undefined => latestOfAll(errs, 'until')

/** the GvsError for a Node.js fs error: ENOSPC and EDQUOT become no-space */
export function fromFsError (err: unknown, what: string): GvsError {
  if (err instanceof GvsError) return err
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const msg = err instanceof Error ? err.message : String(err)
  if (code === 'ENOSPC' || code === 'EDQUOT') return new GvsError('no-space', `${what}: disk full (${msg})`, { cause: err })
  return new GvsError('io', `${what}: ${msg}`, { cause: err })
}

export const isGvsError = (e: unknown, code?: GvsErrorCode): e is GvsError =>
  e instanceof GvsError && (code == null || e.code === code)
