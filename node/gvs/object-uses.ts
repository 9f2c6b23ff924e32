// When each object copy on this node was last used by a client of the replica protocol
// (a write, read, stat, get, put, verify, zero; every layer of a layered request), so
// that repair frees a surplus copy (`retire`, replication.ts) only if nothing used it
// since a mark this node handed out before repair asked every member whether they
// place objects alike. Why: a node whose placement changed after that agreement takes
// this node for a holder, and before it uses the copy it settles the object, which
// looks at the copy here (a use after the mark): the retire is then refused, or, if it
// ran first, the settle finds the copy gone. A use recorded before the mark by a node
// whose view was different then, and is still, fails the agreement instead.
//
// A mark holds this process's instance and a monotonic time: one from an earlier run
// (uses before a restart are unknown) or older than the record is kept is refused, and
// so is one within `quietMs` of a use (a margin). Old entries are swept now and then,
// never on every request.
import { randomBytes } from 'node:crypto'
import { monoNow } from '../../protocol/mono-clock.ts'

/** how long a surplus copy must also have gone unused before repair frees it (default) */
export const RETIRE_QUIET_MS = 30_000
/** uses are kept this long at least: a mark older than this is refused */
const KEEP_MS = 10 * 60_000
const SWEEP_OVER = 20_000

export class ObjectUses {
  private readonly at = new Map<string, number>()
  private readonly now: () => number
  /** this run of the replica service: marks of another are refused */
  private readonly instance = randomBytes(6).toString('hex')
  private readonly started: number
  private sweepAt = SWEEP_OVER
  private keepMs = KEEP_MS
  /** copies a retire removed lately: a client that still takes this node for their holder is told to settle again */
  private readonly retiredAt = new Map<string, number>()

  constructor (now: () => number = monoNow) {
    this.now = now
    this.started = now()
  }

  used (layer: string, index: number): void {
    this.at.set(`${layer}/${index}`, this.now())
    if (this.at.size > this.sweepAt) {
      const cut = this.now() - this.keepMs
      for (const [k, t] of this.at) if (t < cut) this.at.delete(k)
      // the next sweep once the map has doubled: a map of recent uses is not walked per request
      this.sweepAt = Math.max(SWEEP_OVER, this.at.size * 2)
    }
  }

  /** a retire removed this copy */
  retired (layer: string, index: number): void {
    const now = this.now()
    if (this.retiredAt.size > SWEEP_OVER) for (const [k, t] of this.retiredAt) if (now - t > this.keepMs) this.retiredAt.delete(k)
    this.retiredAt.set(`${layer}/${index}`, now)
  }

  /** whether a retire removed this copy lately (within the uses kept); `clear`: it is back (a put) */
  wasRetired (layer: string, index: number, clear = false): boolean {
    const k = `${layer}/${index}`
    const t = this.retiredAt.get(k)
    if (t == null) return false
    if (clear || this.now() - t > this.keepMs) { this.retiredAt.delete(k); return false }
    return true
  }

  /** a mark of now, for a later `unusedSince` */
  mark (): string { return `${this.instance}:${this.now()}` }

  /**
   * Whether the copy went unused since `mark` (one of this run's, younger than the
   * record kept) and for `quietMs`. Uses count from this run's start: none before are known.
   */
  unusedSince (layer: string, index: number, mark: string, quietMs: number): boolean {
    const [instance, at] = mark.split(':')
    const since = Number(at)
    const now = this.now()
    if (instance !== this.instance || !Number.isSafeInteger(since) || since > now || now - since > this.keepMs) return false
    this.keepMs = Math.max(this.keepMs, quietMs)
    const last = this.at.get(`${layer}/${index}`) ?? this.started
    return last < since && now - last >= quietMs
  }
}
