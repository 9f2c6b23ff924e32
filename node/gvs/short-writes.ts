// Writes acknowledged with fewer than R copies. A volume made with --min-replicas below
// R takes writes while fewer than R nodes are live, and they land on those nodes only.
// Should those die and the others come back, the others' copies are older with nothing
// in them to say so: served as the newest, and spread by repair, they would silently
// undo acknowledged writes. So, as Ceph's peering does with its past intervals:
// - before such a write, the writer records in the volume's `shortWrites` which nodes
//   take it (placement over fewer than R live nodes: every live node holds every
//   object, so the set is the same for each object written then), and waits until a
//   majority of the roll holds the record on disk: any later majority has it;
// - until a repair has put every object back on R nodes, reading, settling or
//   repairing an object must hear from a node of every recorded set. Each node of a set
//   took every short write of its time, and a later set took only what was first
//   settled from an earlier one, so hearing from one of each finds the newest copy;
// - a set none of whose nodes answers leaves the volume unavailable, not stale, until
//   one returns; `vgrid node forget` of a node gone for good gives its writes up;
// - a repair that ends healthy clears the sets last written well before it began.
// Pure decisions here; the writer's record is short-write-records.ts.
import { createHash } from 'node:crypto'
import type { Writer } from '../../crdt/index.ts'
import { GvsError } from './errors.ts'

export interface ShortWrite { nodes: string[], at: number }
export type ShortWrites = Readonly<Record<string, ShortWrite>>
/** what a volume records: the sets (written by its writer, and by a forget), and since when they are cleared (written by repair) */
export interface ShortRecord { shortWrites?: ShortWrites, shortClearedBefore?: number }

/** how often a writer still writing short moves its set's `at` on (repair clears only sets older than its start by more) */
export const REFRESH_MS = 5000
/** more than a refresh: clocks of two nodes and the document's propagation differ by this much at most */
export const CLEAR_SLACK_MS = 30_000

/** the record's key of a node set: a hash, the same whatever the order */
export function shortKey (nodes: Iterable<string>): string {
  return createHash('sha256').update([...new Set(nodes)].sort().join('\n')).digest('hex').slice(0, 16)
}

/** the sets in force: written since the last clearing */
export function activeSets (v: ShortRecord | undefined): Record<string, ShortWrite> {
  const before = v?.shortClearedBefore ?? 0
  return Object.fromEntries(Object.entries(v?.shortWrites ?? {}).filter(([, s]) => s.at >= before))
}

/**
 * What a write to `holders` (fewer than R) needs first: nothing (`recorded`: the set
 * is in force, written lately, and a majority confirmed holding it when this node
 * asked), `refresh` (its `at` is older than REFRESH_MS: moved on, no need to ask again),
 * or `record` (not in force, or this node never had it confirmed).
 */
export function planShortWrite (v: ShortRecord | undefined, holders: readonly string[], now: number, confirmed: boolean): 'recorded' | 'refresh' | 'record' {
  const e = activeSets(v)[shortKey(holders)]
  if (e == null || !confirmed) return 'record'
  return now - e.at >= REFRESH_MS ? 'refresh' : 'recorded'
}

/** the record with `holders`' set written at `now`, and the sets cleared dropped */
export function withSet (v: ShortRecord | undefined, holders: readonly string[], now: number): Record<string, ShortWrite> {
  return { ...activeSets(v), [shortKey(holders)]: { nodes: [...new Set(holders)].sort(), at: now } }
}

/** the sets (those in force: activeSets) none of whose nodes answered */
export function unheardSets (sets: Iterable<ShortWrite>, answered: (node: string) => boolean): ShortWrite[] {
  return [...sets].filter(s => !s.nodes.some(answered))
}

/** the error a read, settle or repair of an object fails with while sets are unheard */
export function unheardError (volume: string, what: string, sets: readonly ShortWrite[], nameOf: (node: string) => string = n => n): GvsError {
  const names = sets.map(s => s.nodes.map(nameOf).join(' and '))
  const one = sets.length === 1 && sets[0]!.nodes.length === 1
  return new GvsError('unavailable', `volume "${volume}" ${what}: writes were acknowledged with fewer than R copies while only ${names.join('; then ')} held it, and ${one ? 'it does not answer' : 'none of them answers'}: the other copies may be older, so it is unavailable until ${one ? 'it returns' : 'one of them returns'} (vgrid node forget of a node gone for good gives its writes up)`)
}

/**
 * After a repair that began at `startedAt` and ended healthy (every object back on R
 * nodes): the volume's new `shortClearedBefore`, clearing the sets last written well
 * before it began; null when it clears nothing.
 */
export function clearedBefore (v: ShortRecord | undefined, startedAt: number): number | null {
  const mark = startedAt - REFRESH_MS - CLEAR_SLACK_MS
  const sets = Object.values(activeSets(v))
  return sets.some(s => s.at < mark) ? Math.max(mark, v?.shortClearedBefore ?? 0) : null
}

/** the sets in force without `node` (forgotten: gone for good): its sets lose it, and one left empty goes (its writes given up) */
export function withoutNode (v: ShortRecord, node: string): { next: Record<string, ShortWrite>, gaveUp: boolean } {
  const next: Record<string, ShortWrite> = {}
  let gaveUp = false
  for (const s of Object.values(activeSets(v))) {
    const nodes = s.nodes.filter(n => n !== node)
    if (nodes.length === 0) { gaveUp = true; continue }
    const k = shortKey(nodes)
    next[k] = { nodes, at: Math.max(s.at, next[k]?.at ?? 0) }
  }
  return { next, gaveUp }
}

/** at `vgrid node forget`: every volume's sets lose the node; the paths of those whose writes kept only there are given up */
export function forgetShortWrites (w: Writer, node: string): string[] {
  const gaveUp: string[] = []
  for (const v of w.reader.list('volumes')) {
    if (!Object.values(activeSets(v)).some(s => s.nodes.includes(node))) continue
    const { next, gaveUp: lost } = withoutNode(v, node)
    w.update('volumes', v.id, { shortWrites: next })
    if (lost) gaveUp.push(v.path)
  }
  return gaveUp
}
