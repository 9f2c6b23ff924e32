// Conflict rules: which of several concurrent values of one object every agent reads.
// Automerge keeps every value written concurrently to the same key; these pure
// functions pick one, the same way on every agent, from the values alone (never
// from arrival order). See docs/architecture-state.md for the rules in prose.
import type { Kind, Lease, Objects } from './schema.ts'

/**
 * - `latest-write`: the greatest `at` (writer's clock, ms) wins; equal times: the
 *   greater writer node id (`by`); then the greater canonical JSON. Used by every kind
 *   except leases.
 * - `highest-epoch`: leases: the greatest epoch wins; equal epochs: the smaller holder
 *   node id (no clock involved, so a node with a fast clock cannot grab leases); then
 *   `latest-write`.
 * - `single`: there was only one value, nothing was contested.
 */
export type RuleName = 'latest-write' | 'highest-epoch' | 'single'

export const RULE_OF: { [K in Kind]: Exclude<RuleName, 'single'> } = {
  apps: 'latest-write',
  vms: 'latest-write',
  leases: 'highest-epoch',
  volumes: 'latest-write',
  connections: 'latest-write',
  nodeLabels: 'latest-write',
  roll: 'latest-write'
}

/**
 * Field rules: a field that one object's single value holds several concurrent values
 * of (two nodes updated the same field of it at once; the object itself was not
 * rewritten). Automerge shows one of them by its own actor order; a field named here is
 * read by its rule instead. A volume's `layers` is written whole by each snapshot (a new
 * top over the old stack): two snapshots taken while the document's sync was cut leave
 * two stacks, and the one that took the most snapshots is read (`tallestStack`).
 */
export const FIELD_RULES: { [K in Kind]?: Record<string, (values: unknown[]) => unknown> } = {
  volumes: { layers: tallestStack, writesGivenUp: unionOfRecords, sizeBytes: largest },
  vms: { spec: latestSpec }
}

/**
 * Of concurrent specs of a VM (two `vm update`s at once, or one accepted on a node cut
 * off a moment before it knew, bb52), the one written last: its `updatedAt` (the
 * update's stamp), then the greater canonical JSON. Automerge's own pick (actor order)
 * kept a minority's earlier update over the majority's later one, which the VM then ran
 * with. Values that are not objects lose (the schema refuses them).
 */
export function latestSpec (values: unknown[]): unknown {
  const specs = values.filter((v): v is Record<string, unknown> => v != null && typeof v === 'object' && !Array.isArray(v))
  if (specs.length === 0) return values[0]
  const at = (v: Record<string, unknown>): number => typeof v.updatedAt === 'number' ? v.updatedAt : 0
  return specs.reduce((best, v) => at(v) > at(best) || (at(v) === at(best) && canonical(v) > canonical(best)) ? v : best)
}

/**
 * Of concurrent sizes of a volume (two grows at once through two nodes), the largest:
 * a volume only grows, and each grow was answered; Automerge's own pick kept the smaller
 * as often as not, and writes past it that the larger had let in failed (bb26). Values
 * that are not numbers lose (the schema refuses them).
 */
export function largest (values: unknown[]): unknown {
  const sizes = values.filter((v): v is number => Number.isSafeInteger(v) && (v as number) > 0)
  return sizes.length === 0 ? values[0] : Math.max(...sizes)
}

/**
 * Of concurrent lists of records (a volume's `writesGivenUp`: two nodes forgotten at
 * once from two nodes, each list the first, bb18 saw one of them), every record of
 * any of them: the distinct ones by canonical JSON, ordered by `at`, then canonical
 * JSON, the newest 64 (the schema's bound). Values that are not lists count as empty.
 */
export function unionOfRecords (values: unknown[]): unknown {
  const seen = new Map<string, unknown>()
  for (const v of values) if (Array.isArray(v)) for (const x of v) seen.set(canonical(x), x)
  const at = (x: unknown): number => typeof (x as { at?: unknown } | null)?.at === 'number' ? (x as { at: number }).at : 0
  return [...seen].sort(([ka, a], [kb, b]) => cmp(at(a), at(b)) || cmp(ka, kb)).map(([, x]) => x).slice(-64)
}

/** a layer's number in its line: "V@3" -> 3, a base "V" -> 0 (node/gvs/volumes.ts layerNumber) */
const layerNo = (layer: string): number => { const m = /@([0-9]+)$/.exec(layer); return m == null ? 0 : Number(m[1]) }

/**
 * Of concurrent `layers` stacks, the one whose top is numbered highest (each snapshot
 * tops the stack with a layer numbered past every one the volume used, so it has seen
 * the most snapshots, and its top holds what the volume's one writer wrote since:
 * another stack would read the volume without it); then the longer; then the greater
 * canonical JSON. Values that are not lists of strings lose (the schema refuses them).
 */
export function tallestStack (values: unknown[]): unknown {
  const stacks = values.filter((v): v is string[] => Array.isArray(v) && v.length > 0 && v.every(x => typeof x === 'string'))
  if (stacks.length === 0) return values[0]
  let best = stacks[0]!
  for (const s of stacks.slice(1)) {
    if ((cmp(layerNo(s[0]!), layerNo(best[0]!)) || cmp(s.length, best.length) || cmp(canonical(s), canonical(best))) > 0) best = s
  }
  return best
}

export interface Resolved<T> {
  value: T
  /** the rule that picked `value` ('single' when there was no contest) */
  rule: RuleName
  contested: boolean
  /** valid concurrent values that were considered */
  candidates: number
}

interface Stamped { at: number, by: string }

/** canonical JSON (sorted keys): the last tie-breaker, identical on every agent */
export function canonical (v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']'
  if (v != null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return '{' + Object.keys(o).sort().map(k => JSON.stringify(k) + ':' + canonical(o[k])).join(',') + '}'
  }
  return JSON.stringify(v) ?? 'null'
}

const cmp = (a: string | number, b: string | number): number => a < b ? -1 : a > b ? 1 : 0

/** > 0 when `a` beats `b` under latest-write */
export function latestWrite (a: Stamped, b: Stamped): number {
  return cmp(a.at, b.at) || cmp(a.by, b.by) || cmp(canonical(a), canonical(b))
}

/** > 0 when `a` beats `b` under highest-epoch */
export function highestEpoch (a: Lease, b: Lease): number {
  return cmp(a.epoch, b.epoch) || cmp(b.holder, a.holder) || latestWrite(a, b)
}

/** Picks the winner among the valid concurrent values of one object, or undefined if none. */
export function resolve<K extends Kind> (kind: K, candidates: Array<Objects[K]>): Resolved<Objects[K]> | undefined {
  if (candidates.length === 0) return undefined
  const rule = RULE_OF[kind]
  const beats = rule === 'highest-epoch'
    ? (a: Objects[K], b: Objects[K]) => highestEpoch(a as Lease, b as Lease)
    : (a: Objects[K], b: Objects[K]) => latestWrite(a, b)
  let best = candidates[0]!
  for (const c of candidates.slice(1)) if (beats(c, best) > 0) best = c
  const contested = candidates.length > 1
  return { value: best, rule: contested ? rule : 'single', contested, candidates: candidates.length }
}

/**
 * The future-stamp rule. A value stamped more than `boundMs` ahead of a reader's own
 * clock (`now`) was written by a node whose clock runs fast; under latest-write it
 * would beat every concurrent value for as long as that skew lasts. It must not beat
 * a concurrent value whose stamp the reader's clock has already passed (`at <= now`).
 *
 * Pure, but it depends on `now`, so it is not a read rule (agents would disagree):
 * the agent that receives such a contest computes the value that should win, and
 * settles the contest by writing that value again (a causal overwrite, which every
 * agent then reads alike). Returns that value, or undefined when the plain rule's
 * pick stands. Leases are never settled this way: their rule uses no clock.
 */
export function futureOverride<K extends Kind> (kind: K, candidates: Array<Objects[K]>, now: number, boundMs: number): Objects[K] | undefined {
  if (RULE_OF[kind] !== 'latest-write' || candidates.length < 2) return undefined
  const plainPick = resolve(kind, candidates)!.value
  if (plainPick.at <= now + boundMs) return undefined
  if (!candidates.some(c => c.at <= now)) return undefined
  return resolve(kind, candidates.filter(c => c.at <= now + boundMs))!.value
}
