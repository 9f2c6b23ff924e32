// Where a volume's writes went, as Ceph's peering keeps past intervals. An object's
// holders are placement over the live nodes, so they change with every change of the
// live nodes, and writes land on the holders of their time only. Should all of those
// die (more than R-1 of them, or any of fewer than R nodes that took writes while
// fewer were live: --min-replicas below R), the nodes left may hold an older copy, or
// none, with nothing in them to say so: served as the newest (or as zeros), and spread
// by repair, they would silently undo acknowledged writes. So:
// - before its first write in a placement generation, the writer records the live
//   nodes it places over (ids and weights: an **interval**) in the volume's
//   `writeIntervals`, and waits until a majority of the roll holds the record on disk:
//   any later majority has it (write-interval-records.ts);
// - reading, settling or repairing object i must hear from at least one of its holders
//   in every interval in force (placement over that interval's nodes; a node given up
//   by `vgrid node forget` left out): each took every write of i in its time, and a
//   later interval's holders took only what they first settled from an earlier one's.
//   Else object i is unavailable, not stale, until one of them is back;
// - a repair that ends healthy (every object on its R holders now) clears the
//   intervals older than the newest one recorded well before it began: the writer
//   writes in the newest only (one writer at a time: epochs), so everything older was
//   settled onto the holders the repair checked. The newest stays: it is the placement
//   reads use anyway.
// Pure decisions here.
import { createHash } from 'node:crypto'
import type { Writer } from '../../crdt/index.ts'
import { GvsError } from './errors.ts'
import { Placement, objectKey } from './placement.ts'

export interface IntervalNode { id: string, weight: number }
export interface WriteInterval {
  /** the live nodes placement was over, with their weights (disk capacity) */
  nodes: IntervalNode[]
  /** when recorded (ms) */
  at: number
  /** nodes given up by `vgrid node forget`: not waited for */
  lost?: string[]
}
export type WriteIntervals = Readonly<Record<string, WriteInterval>>
/**
 * what a volume records: the intervals (written by its writer, and by a forget), since
 * when they are cleared and the placement a healthy repair put every object on
 * (written by repair: separate fields, so the writer's and the repair's changes never
 * conflict)
 */
export interface IntervalRecord { writeIntervals?: WriteIntervals, writeIntervalsClearedBefore?: number, writeIntervalsRepaired?: WriteInterval }

/** more than clocks of two nodes and the document's propagation differ by */
export const CLEAR_SLACK_MS = 5000

/** the record's key of a node set with its weights: a hash, the same whatever the order */
export function intervalKey (nodes: readonly IntervalNode[]): string {
  const sig = nodes.filter(n => n.weight > 0).map(n => `${n.id}=${n.weight}`).sort().join('\n')
  return createHash('sha256').update(sig).digest('hex').slice(0, 16)
}

/** the intervals in force: recorded since the last clearing, the repaired placement among them */
export function activeIntervals (v: IntervalRecord | undefined): Record<string, WriteInterval> {
  const before = v?.writeIntervalsClearedBefore ?? 0
  const out: Record<string, WriteInterval> = Object.fromEntries(Object.entries(v?.writeIntervals ?? {}).filter(([, s]) => s.at >= before))
  const r = v?.writeIntervalsRepaired
  if (r != null && r.at >= before) {
    const k = intervalKey(r.nodes)
    if (out[k] == null || out[k].at < r.at) out[k] = r
  }
  return out
}

/** the key of the newest interval in force (null: none) */
function newestKey (v: IntervalRecord | undefined): string | null {
  let best: [string, number] | null = null
  for (const [k, s] of Object.entries(activeIntervals(v))) if (best == null || s.at > best[1] || (s.at === best[1] && k > best[0])) best = [k, s.at]
  return best?.[0] ?? null
}

/**
 * Whether a write placed over `nodes` needs its interval recorded first: not if it is
 * the newest in force and a majority confirmed holding it when this node asked (a
 * repair clears only intervals older than the newest, so the writer must be in that one).
 */
export function needsRecord (v: IntervalRecord | undefined, nodes: readonly IntervalNode[], confirmed: boolean): boolean {
  return !confirmed || newestKey(v) !== intervalKey(nodes)
}

/** the record with the interval of `nodes` written at `now` (the newest), and the cleared ones dropped */
export function withInterval (v: IntervalRecord | undefined, nodes: readonly IntervalNode[], now: number): Record<string, WriteInterval> {
  const sorted = nodes.filter(n => n.weight > 0).map(n => ({ id: n.id, weight: n.weight })).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const at = Math.max(now, ...Object.values(activeIntervals(v)).map(s => s.at + 1))
  return { ...activeIntervals(v), [intervalKey(sorted)]: { nodes: sorted, at } }
}

const placements = new Map<string, Placement>()
/** per interval object as read: its placement and the nodes given up (a loop over a volume's objects hashes its key once) */
const placementOf = new WeakMap<WriteInterval, { p: Placement, lost: ReadonlySet<string> }>()
/** the holders of object `index` of placement key `pkey` in an interval, without the nodes given up (`withLost`: with them) */
export function holdersIn (s: WriteInterval, pkey: string, index: number, replicas: number, withLost = false): string[] {
  let e = placementOf.get(s)
  if (e == null) {
    const k = intervalKey(s.nodes)
    let p = placements.get(k)
    if (p == null) {
      if (placements.size > 1024) placements.clear()
      placements.set(k, p = new Placement(s.nodes))
    }
    placementOf.set(s, e = { p, lost: new Set(s.lost ?? []) })
  }
  const lost = e.lost
  const all = e.p.holders(objectKey(pkey, index), replicas)
  return withLost ? all : all.filter(n => !lost.has(n))
}

/**
 * the intervals in force in which none of object `index`'s holders answered, with those
 * holders. A holder given up (forgotten with --force) is not waited for, but one back
 * that answers counts again: its copy may be the newest (bb18: a forgotten node back
 * with whole copies, and the volume called healthy lost two objects with its other holder)
 */
export function unheard (intervals: Iterable<WriteInterval>, pkey: string, index: number, replicas: number, answered: (node: string) => boolean): string[][] {
  const out: string[][] = []
  for (const s of intervals) {
    const hs = holdersIn(s, pkey, index, replicas)
    if (hs.length > 0 && !hs.some(answered) && !holdersIn(s, pkey, index, replicas, true).some(answered)) out.push(hs)
  }
  return out
}

/**
 * The objects of `objects` (0 to objects-1) none of whose holders in some interval in
 * force answered: a repair finds copies only where nodes answered, so an object whose
 * every holder of its time is down (written, or perhaps not: nothing else can say) is
 * in no inventory, and would count as sound while its newest copy is out of reach. An
 * interval with fewer unanswered (or given-up) nodes than it places copies on has none.
 * It yields to the event loop as it goes (a volume of a TiB has 262,144 objects: about
 * 0.45 s of placement over 20 nodes per interval searched, which must not stall heartbeats or the
 * watchdog's feed).
 */
export async function unheardObjects (intervals: Iterable<WriteInterval>, pkey: string, objects: number, replicas: number, answered: (node: string) => boolean): Promise<number[]> {
  const out = new Set<number>()
  for (const s of intervals) {
    const placed = s.nodes.filter(n => n.weight > 0)
    const lost = new Set(s.lost ?? [])
    const down = placed.filter(n => lost.has(n.id) || !answered(n.id))
    if (!down.some(n => !lost.has(n.id)) || down.length < Math.min(replicas, placed.length)) continue
    for (let i = 0; i < objects; i++) {
      if ((i & 8191) === 8191) await new Promise(resolve => setImmediate(resolve))
      if (!out.has(i) && unheard([s], pkey, i, replicas, answered).length > 0) out.add(i)
    }
  }
  return [...out].sort((a, b) => a - b)
}

/**
 * the error a read, settle or repair of an object fails with while intervals are unheard:
 * transient, so that a client's read or write waits for them up to the write retry time
 * (both holders of an object restarting one after the other cost a guest an I/O error)
 */
export function unheardError (volume: string, what: string, sets: readonly string[][], nameOf: (node: string) => string = n => n, timing: { since?: number | undefined, until?: number | undefined } = {}): GvsError {
  const names = [...new Set(sets.map(s => s.map(nameOf).sort().join(' and ')))]
  const one = sets.every(s => s.length === 1)
  // since when its holders have been silent, where their errors say (out of reach, no
  // majority): a request waits out the retry time from then, not from its own start (bb19:
  // every write to such an object waited 20 s, however long the cut had lasted)
  return new GvsError('unavailable', `volume "${volume}" ${what}: its writes went to ${names.join(', then to ')}, and ${one && names.length === 1 ? 'it does not answer' : 'none of them answers'}: the copies that answered may be older (also where it was never written: no record says which objects were), so it is unavailable until one of them returns (vgrid node forget of a node gone for good gives its writes up)`, { transient: true, ...timing })
}

/**
 * After a repair over `nodes` that began at `startedAt` and ended healthy (every object
 * on its holders there): the intervals recorded before it began (less a slack for
 * clocks and writes in flight) are cleared, and its placement is in force instead
 * (the newest, at `now`). Null when it clears nothing.
 */
export function afterRepair (v: IntervalRecord | undefined, nodes: readonly IntervalNode[], startedAt: number, now: number): { writeIntervalsClearedBefore: number, writeIntervalsRepaired: WriteInterval } | null {
  const mark = startedAt - CLEAR_SLACK_MS
  const active = Object.values(activeIntervals(v))
  // only an older record of this very placement: nothing changes (a periodic repair writes nothing)
  const key = intervalKey(nodes)
  if (!active.some(s => s.at < mark && intervalKey(s.nodes) !== key)) return null
  const sorted = nodes.filter(n => n.weight > 0).map(n => ({ id: n.id, weight: n.weight })).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  if (sorted.length === 0) return null
  return { writeIntervalsClearedBefore: Math.max(mark, v?.writeIntervalsClearedBefore ?? 0), writeIntervalsRepaired: { nodes: sorted, at: Math.max(now, ...active.map(s => s.at + 1)) } }
}

/**
 * Whether a volume's intervals in force name the node, not given up: a node that left
 * the roll (a graceful leave) with writes of its time may still be waited for, and
 * `vgrid node forget` gives them up (bb28: it answered "not on the member roll").
 */
export function namedInIntervals (volumes: Iterable<IntervalRecord>, node: string): boolean {
  for (const v of volumes) if (placedOn(v).has(node)) return true
  return false
}

/** the nodes a volume's intervals in force place objects on (weight above 0), less those given up */
export function placedOn (v: IntervalRecord | undefined): Set<string> {
  const out = new Set<string>()
  for (const s of Object.values(activeIntervals(v))) {
    const lost = new Set(s.lost ?? [])
    for (const n of s.nodes) if (n.weight > 0 && !lost.has(n.id)) out.add(n.id)
  }
  return out
}

/**
 * At `vgrid node forget`: the node is given up in every volume's intervals. The paths
 * of the volumes where it was the last holder not given up of some object in some
 * interval: writes that may have been only there are given up with it.
 */
export function forgetInIntervals (w: Writer, node: string, objectSize: number, name = node): string[] {
  const gaveUp: string[] = []
  for (const v of w.reader.list('volumes')) {
    const ivs = activeIntervals(v)
    if (!Object.values(ivs).some(s => s.nodes.some(n => n.id === node) && !(s.lost ?? []).includes(node))) continue
    const give = (s: WriteInterval): WriteInterval => s.nodes.some(n => n.id === node) ? { ...s, lost: [...new Set([...s.lost ?? [], node])].sort() } : s
    const next = Object.fromEntries(Object.entries(ivs).map(([k, s]) => [k, give(s)]))
    const r = v.writeIntervalsRepaired
    w.update('volumes', v.id, { writeIntervals: next, ...(r != null ? { writeIntervalsRepaired: give(r) } : {}) })
    const pkey = v.placementKey ?? v.id
    const objects = Math.ceil(v.sizeBytes / objectSize)
    const lastOne = Object.entries(ivs).some(([k, s]) => {
      if (!s.nodes.some(n => n.id === node)) return false
      for (let i = 0; i < objects; i++) if (holdersIn(s, pkey, i, v.replicas).join() === node && holdersIn(next[k]!, pkey, i, v.replicas).length === 0) return true
      return false
    })
    if (lastOne) {
      gaveUp.push(v.path)
      w.update('volumes', v.id, { writesGivenUp: [...(v.writesGivenUp ?? []).slice(-63), { node, name, at: w.at }] })
    }
  }
  return gaveUp
}
