// A VM's history as this agent saw it: placed, started, crashed, failed over,
// stopped, failed, each with its time and detail. Derived from the leases in the
// document (every agent sees every transition), plus the decisions the agent made.
import type { Lease } from '../../crdt/index.ts'
import type { Ranking } from '../../crdt/placement/index.ts'

export interface HistoryEvent {
  at: number
  event: 'placed' | 'failed-over' | 'started' | 'crashed' | 'stopped' | 'failed' | 'released' | 'lost-claim' | 'killed'
  node?: string
  epoch?: number
  detail?: string
}

const MAX_EVENTS = 50

export class History {
  private readonly events = new Map<string, HistoryEvent[]>()
  private readonly last = new Map<string, Lease>()
  /** the ranking that placed each VM, as this agent computed it */
  readonly decisions = new Map<string, { at: number, ranking: Ranking }>()

  add (vm: string, e: HistoryEvent): void {
    let l = this.events.get(vm)
    if (l == null) this.events.set(vm, l = [])
    l.push(e)
    if (l.length > MAX_EVENTS) l.splice(0, l.length - MAX_EVENTS)
  }

  of (vm: string): HistoryEvent[] { return this.events.get(vm) ?? [] }

  /** Compares the winning leases with the last ones seen and records what changed. */
  observe (leases: ReadonlyMap<string, Lease>, now: number, nameOf: (node: string) => string): void {
    for (const [vm, l] of leases) {
      const p = this.last.get(vm)
      if (p == null || p.epoch !== l.epoch || p.holder !== l.holder) {
        const failover = l.from != null && l.epoch > 1
        this.add(vm, { at: now, event: failover ? 'failed-over' : 'placed', node: nameOf(l.holder), epoch: l.epoch, detail: failover ? `from ${nameOf(l.from!)}` : undefined })
      }
      if (l.status !== p?.status || (l.crashes?.length ?? 0) > (p?.crashes?.length ?? 0)) {
        const crashed = (l.crashes?.length ?? 0) > (p?.crashes?.length ?? 0) && l.crashes?.at(-1) !== p?.crashes?.at(-1)
        if (crashed) this.add(vm, { at: now, event: 'crashed', node: nameOf(l.holder), detail: l.reason })
        // a run that ended by no crash and is started again (fenced, or the watchdog killed it while its agent was down)
        else if (p?.status === 'running' && l.status === 'starting' && p.epoch === l.epoch && p.holder === l.holder) this.add(vm, { at: now, event: 'killed', node: nameOf(l.holder), detail: l.reason })
        if (l.status === 'running') this.add(vm, { at: now, event: 'started', node: nameOf(l.holder), epoch: l.epoch })
        if (l.status === 'stopped' || l.status === 'failed') this.add(vm, { at: now, event: l.status, node: nameOf(l.holder), detail: l.reason })
      }
      this.last.set(vm, l)
    }
    for (const [vm, p] of this.last) {
      if (leases.has(vm)) continue
      this.add(vm, { at: now, event: 'released', node: nameOf(p.holder) })
      this.last.delete(vm)
    }
  }

  forget (vm: string): void {
    this.events.delete(vm)
    this.decisions.delete(vm)
  }
}
