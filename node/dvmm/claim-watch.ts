// The claims this node made, watched until they settle: when each was written, when a
// conflicting claim was last seen (it restarts the settle window), the ones lost to
// another node, and contested leases this node won, written again to end the losers'
// claims. decide.ts reads claimedAt and conflictSeenAt; this part keeps them.
import type { Writer } from '../../crdt/index.ts'
import type { History } from './history.ts'
import type { DvmmMetrics } from './metrics.ts'
import type { DocView } from './view.ts'

export interface ClaimWatchComponents {
  peerId: string
  metrics: Pick<DvmmMetrics, 'claimsLost'>
  history: Pick<History, 'add'>
  /** queues a document update for the next step's write (`key`: a newer one replaces it; `written`: called once written) */
  enqueue: (fn: (w: Writer) => void, opts: { key: string, written: () => void }) => void
}

export interface ClaimWatchInit {
  settleMs: number
}

export class ClaimWatch {
  /** when this node claimed a lease, this run (absent: settled, or from before this run) */
  readonly claimedAt = new Map<string, number>()
  readonly conflictSeenAt = new Map<string, number>()
  private readonly c: ClaimWatchComponents
  private readonly cfg: ClaimWatchInit
  private readonly holders = new Map<string, string>()
  /** the claims seen on each contested lease when it was last written again */
  private readonly rewritten = new Map<string, string>()

  constructor (components: ClaimWatchComponents, init: ClaimWatchInit) {
    this.c = components
    this.cfg = init
  }

  /** A claim of this node was written at `at`: its settle window starts. */
  claimed (vm: string, at: number): void { this.claimedAt.set(vm, at) }

  /** Notices conflicting claims (they restart the settle window) and lost ones. */
  watch (doc: DocView, now: number): void {
    for (const [vm, at] of this.claimedAt) {
      const l = doc.leases.get(vm)
      const holders = l?.claims.map(c => `${c.holder}@${c.epoch}`).sort().join() ?? ''
      if (l != null && l.claims.length > 1 && holders !== this.holders.get(vm)) this.conflictSeenAt.set(vm, now)
      this.holders.set(vm, holders)
      if (l == null || l.winner.holder !== this.c.peerId) {
        this.c.metrics.claimsLost.inc()
        this.c.history.add(vm, { event: 'lost-claim', detail: l == null ? 'lease removed' : `to ${l.winner.holder} (epoch ${l.winner.epoch})` })
        this.forget(vm)
      } else if (l.winner.status === 'running' && now - at > this.cfg.settleMs) {
        this.forget(vm)
      }
    }
  }

  /**
   * A contested lease this node holds and has started is written again whole, which
   * removes the losing claims it has seen. A claim that arrived after the winner's
   * status update had nothing else to end it: every agent read the lease as contested,
   * and the loser kept the VM's resources reserved (reservedBy counts its own claims).
   */
  settleContests (doc: DocView): void {
    const me = this.c.peerId
    for (const [vm, l] of doc.leases) {
      if (l.claims.length < 2 || l.winner.holder !== me || l.winner.status === 'claimed') continue
      // once per set of claims seen (the write goes out with this step's change)
      const seen = l.claims.map(c => `${c.holder}@${c.epoch}@${c.at}`).sort().join()
      if (this.rewritten.get(vm) === seen) continue
      // recorded once written: a failed write queues it again, and a step meanwhile replaces it (key)
      this.c.enqueue(w => {
        const cur = w.reader.get('leases', vm)
        // an update of a contested object writes it whole (Writer.update)
        if (cur?.contested === true && cur.value.holder === me) w.update('leases', vm, {})
      }, {
        key: `rewrite:${vm}`,
        written: () => {
          if (this.rewritten.size > 10_000) this.rewritten.clear()
          this.rewritten.set(vm, seen)
        }
      })
    }
  }

  private forget (vm: string): void {
    this.claimedAt.delete(vm)
    this.conflictSeenAt.delete(vm)
    this.holders.delete(vm)
  }
}
