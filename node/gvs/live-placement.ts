// Where objects go now: the placement (placement.ts) over the members alive in the
// current member table, weighted by their disk capacity. Every I/O request asks for
// holders (several times), so the placement over one table is made once: a table is
// replaced, never changed in place, when a member changes (protocol/membership.ts),
// so its identity is the key. The generation moves on only when the live nodes or
// their weights change (adverts replace the table too): what a writer settled is
// settled for one generation (settler.ts).
import type { MemberTable } from '../../protocol/membership.ts'
import { Placement } from './placement.ts'
import type { Pool } from './volumes.ts'

export interface LiveNode { id: string, weight: number, free: number }

/** the live members that hold replicas, weighted by disk capacity */
export function liveNodesOf (table: MemberTable): LiveNode[] {
  return [...table.values()]
    .filter(m => m.state === 'alive')
    .map(m => ({ id: m.nodeId, weight: m.advert.capacity.diskBytes, free: m.advert.free.diskBytes }))
}

export class LivePlacement {
  private readonly members: () => MemberTable
  /** the placement over the member table it was made from */
  private placement: { table: MemberTable, p: Placement } | null = null
  private gen = { n: 0, signature: '' }

  constructor (members: () => MemberTable) { this.members = members }

  liveNodes (): LiveNode[] { return liveNodesOf(this.members()) }

  /** the live nodes that take replicas (a node with no disk takes none) */
  liveIds (): Set<string> { return new Set(this.liveNodes().filter(n => n.weight > 0).map(n => n.id)) }

  pool (): Pool {
    const live = this.liveNodes().filter(n => n.weight > 0)
    return { nodes: live.length, freeBytes: live.reduce((s, n) => s + n.free, 0) }
  }

  /** the object's `r` holders over the live members */
  holders = (key: string, r: number): string[] => this.current().holders(key, r)

  /** the placement generation (moves on when the live nodes or their weights change) */
  generation = (): number => { this.current(); return this.gen.n }

  /** the live nodes and weights placement is made over, as text (nodes compare it: placement-check.ts) */
  signature (): string { this.current(); return this.gen.signature }

  private current (): Placement {
    const table = this.members()
    if (this.placement?.table !== table) {
      const nodes = liveNodesOf(table)
      const signature = nodes.map(n => `${n.id}=${n.weight}`).sort().join(',')
      if (signature !== this.gen.signature) this.gen = { n: this.gen.n + 1, signature }
      this.placement = { table, p: new Placement(nodes) }
    }
    return this.placement.p
  }
}
