// When each object copy on this node was last used by a client of the replica protocol
// (a write, read, stat, get, put, verify, zero; every layer of a layered request), so
// that repair frees a surplus copy (`retire`, replication.ts) only after a quiet spell.
// Why: a node whose placement changed a moment ago may have looked at this copy (its
// settle's stat) and be about to write to it or read it as a holder; had the copy gone
// in between, its write would land on zeros and its read answer zeros. Once a copy has
// been quiet for the spell, any node that takes this node for its holder looks at it
// again first (a new placement generation settles anew), and finds it gone.
// Entries older than the longest spell asked for are swept as the map grows.

/** how long a surplus copy must have gone unused before repair frees it (default) */
export const RETIRE_QUIET_MS = 30_000
const SWEEP_OVER = 20_000

export class ObjectUses {
  private readonly at = new Map<string, number>()
  private longest = RETIRE_QUIET_MS
  private readonly now: () => number
  /** uses before this are unknown (a restart): nothing counts as quiet until a spell has passed since */
  private readonly since: number

  constructor (now: () => number = Date.now) {
    this.now = now
    this.since = now()
  }

  used (layer: string, index: number): void {
    this.at.set(`${layer}/${index}`, this.now())
    if (this.at.size > SWEEP_OVER) this.sweep()
  }

  /** whether the copy went unused for `quietMs`, known for that long (this node ran for it) */
  quiet (layer: string, index: number, quietMs: number): boolean {
    this.longest = Math.max(this.longest, quietMs)
    const t = this.at.get(`${layer}/${index}`) ?? this.since
    return this.now() - t >= quietMs
  }

  private sweep (): void {
    const cut = this.now() - this.longest
    for (const [k, t] of this.at) if (t < cut) this.at.delete(k)
  }
}
