// Repeated log lines kept to one a minute per kind: a fault that lasts (a full disk, a
// disk that fails fsync) makes the same line at every retry or request, which buried
// everything else in the log. The first of a kind is logged at once; another of that
// kind only once the quiet time has passed, saying how many were left out meanwhile.
import type { Logger } from './log.ts'

const QUIET_MS = 60_000
/** kinds remembered; past it the oldest is forgotten (its next line is logged) */
const MAX_KINDS = 256

export class RepeatedLines {
  private readonly quietMs: number
  private readonly now: () => number
  private readonly kinds = new Map<string, { at: number, skipped: number }>()

  constructor (opts: { quietMs?: number, now?: () => number } = {}) {
    this.quietMs = opts.quietMs ?? QUIET_MS
    this.now = opts.now ?? Date.now
  }

  /** Logs `msg` unless a line of kind `key` was logged within the quiet time. */
  log (logger: Logger, level: 'warn' | 'error', key: string, msg: string, fields: Record<string, unknown> = {}): void {
    const now = this.now()
    const k = this.kinds.get(key)
    if (k != null && now - k.at < this.quietMs) { k.skipped++; return }
    this.kinds.delete(key)
    if (this.kinds.size >= MAX_KINDS) this.kinds.delete(this.kinds.keys().next().value!)
    this.kinds.set(key, { at: now, skipped: 0 })
    logger[level](msg, (k?.skipped ?? 0) > 0 ? { ...fields, repeated: `${k!.skipped} more like it in the last ${Math.round((now - k!.at) / 1000)} s, not logged` } : fields)
  }
}
