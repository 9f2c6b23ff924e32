// A volume's state (healthy, degraded, repairing) with the reasons, as a pure function
// of what is known: the live nodes now (membership: liveness is never written to the
// document), where each object's copies were at the last inventory (kept in memory by
// the node that coordinates the volume's repair), and the repair running now.
// - degraded: some object has fewer than R copies on live nodes (a holder died or
//   left), or fewer than R nodes are live (writes then take fewer copies, down to
//   minReplicas, or fail), or the last repair could not make every copy;
// - repairing: copies are being made now and can all be made (enough live nodes);
// - healthy: neither.
import { hashString, OBJECT_SIZE } from './placement.ts'

export type VolumeState = 'healthy' | 'degraded' | 'repairing'

/** where the copies of one object set (a layer) of the volume were at the last inventory */
export interface LayerCopies {
  layer: string
  /** object index -> nodes that held a copy */
  objects: ReadonlyMap<number, readonly string[]>
  /** objects unavailable: every holder of a write interval of theirs down (Repairer.unavailable); absent: not known */
  unavailable?: number
  /** live nodes that did not list their copies (out of reach from the coordinator: a partial partition) */
  unlisted?: readonly string[]
}

export interface RepairProgressView {
  /** the node copying */
  node: string
  startedAt: number
  done: number
  total: number
  bytes: number
  failed: number
}

export interface LastRepairView {
  /** what failed, object by object (the coordinator's own record has them; a peer's answer does not) */
  errors?: string[]
  node: string
  at: number
  copied: number
  failed: number
  bytes: number
  /** objects no live node held when it ran */
  lost: number
  /** objects with fewer live nodes to hold them than R when it ran (fewer live nodes with a disk than R): nothing to copy, and short all the same */
  short?: number
  /** objects a scrub found damaged with no sound copy to rewrite them from, some block on every copy (kept until a scrub finds otherwise) */
  unsound?: number
  /**
   * the document took `unsound` (the volume's record, which a sound scrub through any
   * node clears): this node's count no longer adds to it, else it outlived that scrub here
   */
  unsoundRecorded?: true
  /** objects a scrub found damaged on every copy, each block sound on some copy (reads succeed), whose copies it could not rewrite */
  unrewritten?: number
  /** when a repair with scrub (vol repair --scrub) last verified every copy of the volume, this one or one before it */
  scrubbedAt?: number
  /** copies freed from nodes that are no longer their holders (repair.ts freeSurplus) */
  freed?: number
  /** objects it left alone as unavailable (their writes went to nodes none of which answered), with why for the first */
  unavailable?: number
  unavailableWhy?: string
}

/** what the node that ran a repair keeps of it */
export type LastRepair = LastRepairView & { errors: string[], lostObjects: number[], scrubbed?: Array<{ layer: string, index: number, node: string, name?: string, healed: boolean, error?: string, readable?: true, /** the layer as users name it (the API adds it) */ volume?: string }> }

export interface HealthInput {
  replicas: number
  minReplicas: number
  /** ids of the live nodes that can hold replicas now */
  live: ReadonlySet<string>
  /** the last inventory, or null when none was taken yet */
  copies: readonly LayerCopies[] | null
  /** the live nodes when that inventory was taken */
  liveAtInventory?: ReadonlySet<string>
  repair: RepairProgressView | null
  lastRepair: LastRepairView | null
  /** objects the document records damaged on every copy (the volume's `unsound`) */
  unsound?: number
  /** those objects said for people (`object 1 of /shop/db@nightly`), a few at most */
  unsoundNames?: string[]
  /** how a node is named in reasons (its name from membership); default its id */
  nameOf?: (node: string) => string
  /** the node that took the inventory (its coordinator), by id: the view is shown on every node */
  inventoryBy?: string
}

export interface VolumeHealthView {
  state: VolumeState
  reasons: string[]
  repair: RepairProgressView | null
  lastRepair: LastRepairView | null
  /** the node whose inventory and repair this is */
  coordinator?: string
  /** why the node answering refuses every read and write of the volume: it sees no majority of the roll (absent: it does not) */
  noMajority?: string
  /** the object copies each node held at the last inventory, by node id (absent: no inventory yet), so vol info says where the volume is */
  copiesOn?: Record<string, number>
  /** objects that cannot be read now: no live copy, or their newest copies on nodes none of which is live (absent: none); a VM is not started on such a disk (node/dvmm/vm-disks.ts) */
  unreadable?: number
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`
const list = (xs: Iterable<string>, max = 3): string => {
  const a = [...xs]
  return a.length <= max ? a.join(', ') : `${a.slice(0, max).join(', ')} and ${a.length - max} more`
}

/** the objects a node's last repair found damaged on every copy that the document does not carry (none once recorded there); pure */
export function unrecordedUnsound (lr: LastRepairView | null | undefined): number {
  return lr?.unsoundRecorded === true ? 0 : lr?.unsound ?? 0
}

/** the state and its reasons; pure */
export function volumeHealth (h: HealthInput): VolumeHealthView {
  const reasons: string[] = []
  let lostObjects = 0
  const { replicas: R } = h
  const name = h.nameOf ?? ((n: string) => n)
  const liveCount = h.live.size
  const tooFewNodes = liveCount < R
  if (tooFewNodes) {
    reasons.push(liveCount >= h.minReplicas
      ? `only ${plural(liveCount, 'live node')} can hold replicas of R=${R}: writes are kept ${liveCount === 1 ? 'once' : `${liveCount} times`} (minReplicas ${h.minReplicas})`
      : `only ${plural(liveCount, 'live node')} can hold replicas of R=${R}: writes fail (they need at least ${h.minReplicas})`)
  }
  if (h.copies == null) {
    reasons.push('no inventory of its copies yet')
  } else {
    let short = 0
    let lost = 0
    const gone = new Set<string>()
    for (const l of h.copies) {
      for (const nodes of l.objects.values()) {
        const liveCopies = nodes.filter(n => h.live.has(n)).length
        if (liveCopies === 0) lost++
        else if (liveCopies < R) short++
        for (const n of nodes) if (!h.live.has(n)) gone.add(n)
      }
    }
    let where = gone.size > 0 ? ` (copies on ${list([...gone].map(name))}, not live)` : ''
    // copies a live node has but could not list for this inventory are not missing: say
    // whose word is missing, not that the copies are (a coordinator cut from one holder
    // alone reported copies lost that every other node reached)
    const unlisted = [...new Set(h.copies.flatMap(l => l.unlisted ?? []))].filter(n => h.live.has(n))
    // said as the coordinator's: shown on nodes that may reach them well (a partial cut)
    const by = h.inventoryBy == null ? null : name(h.inventoryBy)
    if (unlisted.length > 0) where += by == null
      ? ` (as far as the nodes that listed their copies say: ${list(unlisted.map(name))} did not answer this inventory, so copies may be there too)`
      : ` (as far as the nodes that listed their copies to ${by} say: ${list(unlisted.map(name))} did not answer ${by}'s inventory, out of reach from it, so copies may be there too)`
    lostObjects = lost
    if (lost > 0) reasons.push(`${plural(lost, 'object')} ha${lost === 1 ? 's' : 've'} no live copy${where}: unreadable until such a node returns`)
    if (short > 0) reasons.push(`${plural(short, 'object')} ha${short === 1 ? 's' : 've'} fewer than ${R} live copies${lost > 0 ? '' : where}`)
    // objects written while fewer than R nodes were live have fewer copies than the
    // inventory can show once nodes return: unknown until the next inventory
    const back = [...h.live].filter(n => !(h.liveAtInventory?.has(n) ?? true))
    if (h.liveAtInventory != null && h.liveAtInventory.size < R && back.length > 0) {
      reasons.push(`written while only ${plural(h.liveAtInventory.size, 'node was', 'nodes were')} live; ${list(back.map(name))} returned, repair pending`)
    }
  }
  // the document's record (every node reads it) or this coordinator's own last repair
  // where the document could not take it
  const unsound = Math.max(h.unsound ?? 0, unrecordedUnsound(h.lastRepair))
  const which = (h.unsoundNames?.length ?? 0) > 0 && unsound === (h.unsound ?? 0) ? ` (${h.unsoundNames!.join(', ')}${unsound > h.unsoundNames!.length ? ', ...' : ''})` : ''
  if (unsound > 0) reasons.push(`${plural(unsound, 'object')} ${unsound === 1 ? 'has' : 'have'} blocks damaged on every copy a scrub or a read checked${which}: unreadable there until rewritten whole (a write of all of its ${OBJECT_SIZE / 2 ** 20} MiB at once, aligned: a smaller write needs the rest of the object, which cannot be read, and fails), then vgrid vol repair VOL --scrub checks again (as after deleting the snapshot that reads it)`)
  const unrewritten = h.lastRepair?.unrewritten ?? 0
  if (unrewritten > 0) reasons.push(`${plural(unrewritten, 'object')} ${unrewritten === 1 ? 'is' : 'are'} damaged on every copy a scrub checked, each block sound on some copy (reads succeed), but the copies could not be rewritten (see the last repair's errors; vgrid vol repair VOL --scrub tries again)`)
  // objects whose newest copy is out of reach: not one copy short, but unreadable. The
  // inventory's count where it has one (a clone made during a partition has had no
  // repair yet), else the last repair's
  const counted = h.copies?.some(l => l.unavailable != null) === true ? h.copies.reduce((n, l) => n + (l.unavailable ?? 0), 0) : undefined
  const unavailable = counted ?? (h.repair == null ? h.lastRepair?.unavailable ?? 0 : 0)
  // the first one's why, which may give the forget hint itself (said once)
  const why = h.lastRepair?.unavailableWhy
  if (unavailable > 0) reasons.push(`${plural(unavailable, 'object')} ${unavailable === 1 ? 'is' : 'are'} unavailable, unreadable and not written until a node that took ${unavailable === 1 ? 'its' : 'their'} writes returns${why == null || !why.includes('vgrid node forget') ? ' (vgrid node forget of one gone for good gives its writes up)' : ''}${why != null ? `: ${why}` : ''}`)
  const otherFailed = (h.lastRepair?.failed ?? 0) - (h.lastRepair?.unavailable ?? 0)
  if (h.repair == null && h.lastRepair != null && otherFailed > 0) {
    // the first error names where and why (bb28: a drain onto a full disk stalled for
    // minutes, saying only this, while the full node's status alone said why)
    // a copy's own failure first: the errors begin with the objects left alone as unavailable, said above (rv33)
    const first = h.lastRepair.errors?.find(e => /^object \d+ to /.test(e)) ?? h.lastRepair.errors?.find(e => !e.startsWith('scrub:'))
    reasons.push(`the last repair could not make ${plural(otherFailed, 'object copy', 'object copies')} (retried on the next pass)${first != null ? `: ${clip(first, 240)}` : ''}`)
  }
  // a repair running now that has failed copies (or left objects alone as unavailable):
  // not healthy while it runs either (a tester saw "healthy, 6/6 copies, 6 failed")
  if (h.repair != null && h.repair.failed > 0) reasons.push(`the repair running now could not make ${plural(h.repair.failed, 'object copy', 'object copies')} so far`)
  let state: VolumeState = reasons.length === 0 ? 'healthy' : 'degraded'
  // a repair that can finish (enough live nodes) turns degraded into repairing; one
  // that only moves copies to a node that joined shows as repairing too
  if (h.repair != null && h.repair.done < h.repair.total && !tooFewNodes) state = 'repairing'
  const unreadable = lostObjects + unavailable
  return { state, reasons, repair: h.repair, lastRepair: h.lastRepair, ...(h.copies != null ? { copiesOn: copiesOn(h.copies) } : {}), ...(unreadable > 0 ? { unreadable } : {}) }
}

/** object copies per node over every layer of an inventory; pure */
export function copiesOn (copies: readonly LayerCopies[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const l of copies) for (const nodes of l.objects.values()) for (const n of nodes) out[n] = (out[n] ?? 0) + 1
  return out
}

/**
 * The nodes that may coordinate volumes (pure): the live ones that reach every other
 * live one, as their adverts' `unreached` say; all live ones when none does. A node cut
 * from a holder in a partial partition inventoried without it, showed the volume
 * unavailable to every node that asked it, and its repair failed every copy (bb30),
 * while another node reached them all.
 */
export function coordinatorCandidates (live: ReadonlySet<string>, unreachedOf: (node: string) => readonly string[] | undefined): Set<string> {
  const whole = [...live].filter(n => !(unreachedOf(n) ?? []).some(u => u !== n && live.has(u)))
  return whole.length > 0 ? new Set(whole) : new Set(live)
}

/**
 * The node that inventories and repairs a volume: a rendezvous hash of the volume's
 * id over the live nodes that may coordinate (unweighted; coordinatorCandidates), so
 * every node names the same one from the same membership and one node copies instead
 * of all of them. When views differ for a
 * moment two nodes may repair at once, which is safe (a copy never overwrites one).
 */
export function coordinatorOf (volume: string, live: Iterable<string>): string | null {
  let best: string | null = null
  let bestHash = -1
  for (const n of live) {
    const h = hashString(`${volume}|${n}`)
    if (h > bestHash || (h === bestHash && best != null && n < best)) { best = n; bestHash = h }
  }
  return best
}

/**
 * When this node's next scheduled scrub starts: every `intervalMs`, at a phase set by
 * a hash of the node id so that the nodes of a grid do not all scrub at once; never
 * sooner than `minGapMs` after the last one (a restart does not scrub again at once).
 */
export function nextScrubAt (nodeId: string, intervalMs: number, now: number, lastAt: number | null, minGapMs = intervalMs / 2): number {
  const phase = hashString(`scrub|${nodeId}`) % intervalMs
  let next = Math.floor((now - phase) / intervalMs) * intervalMs + phase
  if (next <= now) next += intervalMs
  if (lastAt != null && next - lastAt < minGapMs) next += intervalMs
  return next
}

/** at most `n` characters, an ellipsis marking the cut */
function clip (text: string, n: number): string { return text.length <= n ? text : `${text.slice(0, n - 3)}...` }
