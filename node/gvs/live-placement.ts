// Where objects go now: the placement (placement.ts) over the members alive in the
// current member table, weighted by their disk capacity. Every I/O request asks for
// holders (several times), so the placement over one table is made once: a table is
// replaced, never changed in place, when a member changes (protocol/membership.ts),
// so its identity is the key (with the set of nodes being drained, replaced likewise).
// The generation moves on only when the live nodes or their weights change (adverts
// replace the table too): what a writer settled is settled for one generation
// (settler.ts).
//
// A node being drained (`vgrid node drain`, its roll entry's `draining`) takes no
// objects: it stays a live node, where the copies it has are read and copied from, at
// weight 0, so repair copies its objects to their new holders and then frees its copies
// as surplus (repair.ts). Once that is done the node holds nothing the volumes need,
// and leaving or forgetting it takes no copy away (bb23: a drained node's leave left
// every volume on one copy until repair, and nothing said so).
import type { MemberTable } from '../../protocol/membership.ts'
import { Placement } from './placement.ts'
import type { Pool } from './volumes.ts'

export interface LiveNode { id: string, weight: number, free: number }

/** the live members that hold replicas, weighted by disk capacity; a node being drained at weight 0 */
export function liveNodesOf (table: MemberTable, draining: ReadonlySet<string> = new Set()): LiveNode[] {
  return [...table.values()]
    .filter(m => m.state === 'alive')
    .map(m => draining.has(m.nodeId) ? { id: m.nodeId, weight: 0, free: 0 } : { id: m.nodeId, weight: m.advert.capacity.diskBytes, free: m.advert.free.diskBytes })
}

export interface DrainingInput {
  /** the nodes whose roll entry says draining, and since when (drainedAt; absent: a drain of an older release) */
  draining: Iterable<{ node: string, since?: number | null }>
  table: MemberTable
  /** the most copies any volume keeps (R) */
  replicas: number
  /** the volumes by path with their R, to name those the nodes left cannot hold (bb36: an empty R=3 volume held a drain back, unnamed) */
  volumes?: ReadonlyArray<{ path: string, replicas: number }>
  /** a node's name, for `why` */
  nameOf?: (node: string) => string
}

/**
 * The nodes whose objects move off them now (pure): those being drained, unless the
 * other live nodes with a disk are too few to hold R copies of every object (the
 * copies then stay where they are, and `why` says so: a drain cannot take away what
 * the volumes need).
 */
export function evacuating (i: DrainingInput): { nodes: Set<string>, why?: string } {
  const withDisk = new Set(liveNodesOf(i.table).filter(n => n.weight > 0).map(n => n.id))
  // alive, with a disk (one without holds nothing), in the order the drains began (then
  // by id: every node takes the same): each moved off while the others left can still
  // hold R copies, so a second drain never takes the first one's move back (rv27)
  const draining = [...i.draining].filter(d => withDisk.has(d.node))
    .sort((a, b) => (a.since ?? Infinity) - (b.since ?? Infinity) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    .map(d => d.node)
  const nodes = new Set<string>()
  const stay: string[] = []
  for (const id of draining) {
    if (withDisk.size - nodes.size - 1 >= i.replicas) nodes.add(id)
    else stay.push(id)
  }
  if (stay.length === 0) return { nodes }
  // what would be left without the first that stays
  const left = withDisk.size - nodes.size - 1
  const name = i.nameOf ?? ((n: string) => n)
  const over = (i.volumes ?? []).filter(v => v.replicas > left).sort((a, b) => b.replicas - a.replicas || a.path.localeCompare(b.path))
  const which = over.length === 0
    ? `the ${i.replicas} copies a volume keeps`
    : `the ${over[0]!.replicas} copies ${over.length === 1 ? over[0]!.path : `${over.slice(0, 3).map(v => `${v.path} (R=${v.replicas})`).join(', ')}${over.length > 3 ? ` and ${over.length - 3} more` : ''}`} ${over.length === 1 ? 'keeps' : 'keep at most'} (copies move off for every volume or none: lower ${over.length === 1 ? 'its' : 'their'} replicas, remove ${over.length === 1 ? 'it' : 'them'} if unused, or add a node)`
  return { nodes, why: `volume copies stay on the draining node${stay.length === 1 ? '' : 's'} ${stay.map(name).join(', ')}: the ${left} other live node${left === 1 ? '' : 's'} with a disk left cannot hold ${which}` }
}

export class LivePlacement {
  private readonly members: () => MemberTable
  private readonly draining: () => ReadonlySet<string>
  /** the placement over the member table and drained set it was made from */
  private placement: { table: MemberTable, draining: ReadonlySet<string>, p: Placement } | null = null
  private gen = { n: 0, signature: '' }

  /** `draining`: the nodes whose objects move off them (evacuating), a new set whenever it changes */
  constructor (members: () => MemberTable, draining: () => ReadonlySet<string> = () => NONE) {
    this.members = members
    this.draining = draining
  }

  /** the live nodes with their disks: a draining one too (its copies are read, its writers asked; placement alone leaves it out) */
  liveNodes (): LiveNode[] { return liveNodesOf(this.members()) }

  /**
   * the live nodes and weights placement is made over now: a draining one at weight 0.
   * Where writes go, so what the write intervals record (write-intervals.ts): recorded
   * at full weight, a drained node stayed a holder of its objects there, and once it
   * left they read as unavailable (bb28)
   */
  placementNodes (): LiveNode[] { return liveNodesOf(this.members(), this.draining()) }

  /** the live nodes that hold replicas (a node with no disk holds none; a draining one holds what it has until repair frees it) */
  liveIds (): Set<string> { return new Set(this.liveNodes().filter(n => n.weight > 0).map(n => n.id)) }

  /** the room new volumes may take: a draining node's is not */
  pool (): Pool {
    const live = liveNodesOf(this.members(), this.draining()).filter(n => n.weight > 0)
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
    const draining = this.draining()
    if (this.placement?.table !== table || this.placement.draining !== draining) {
      const nodes = liveNodesOf(table, draining)
      const signature = nodes.map(n => `${n.id}=${n.weight}`).sort().join(',')
      if (signature !== this.gen.signature) this.gen = { n: this.gen.n + 1, signature }
      this.placement = { table, draining, p: new Placement(nodes) }
    }
    return this.placement.p
  }
}

const NONE: ReadonlySet<string> = new Set()
