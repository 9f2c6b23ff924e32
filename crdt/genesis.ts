// The document's deterministic beginnings: the genesis change and the structural
// migrations. Every agent computes them itself, byte for byte identical (fixed actor,
// fixed time, fixed parents), so their hashes are equal and they merge as one change.
// That is what keeps two agents from each creating their own `vms` map, of which
// Automerge would show only one.
import * as A from '@automerge/automerge'
import { validateMeta } from './schema.ts'
import { plain, type AmDoc, type RawDoc } from './values.ts'

export const GENESIS_ACTOR = '0'.repeat(32)

/**
 * A structural migration from schema `to - 1` to `to`: new top-level collections
 * (`adds`), created in a deterministic change. Data migrations (rewriting objects)
 * are ordinary changes made after it and must be idempotent, because several agents
 * may run them concurrently.
 */
export interface Migration {
  to: number
  adds: string[]
}

/**
 * The genesis is schema 1 with these collections, frozen: every agent of every
 * version must build it byte for byte alike, so new kinds come only by migrations.
 */
export const GENESIS_SCHEMA = 1
export const GENESIS_KINDS: readonly string[] = ['apps', 'vms', 'leases', 'volumes', 'connections', 'nodeLabels']

/** Schema 1 is the genesis; later versions append here. 2: the member roll (issue 14). */
export const MIGRATIONS: readonly Migration[] = [{ to: 2, adds: ['roll'] }]

const migrationActor = (to: number): string => to.toString(16).padStart(32, '0')

export interface Lineage {
  clusterId: string
  /** the newest schema this code knows */
  target: number
  /** the deterministic changes: genesis first, then one per migration */
  changes: Array<{ to: number, change: A.Change }>
  /** heads of a document holding only the lineage (a replica that has synced nothing yet) */
  heads: string[]
  /** object id of `meta` and of every collection as the lineage creates them, and the schema that added it */
  objectIds: Map<string, { id: string, since: number }>
}

const lineages = new Map<string, Lineage>()

export function lineage (clusterId: string, migrations: readonly Migration[] = MIGRATIONS): Lineage {
  const cacheKey = clusterId + '|' + migrations.map(m => `${m.to}:${m.adds.join(',')}`).join(';')
  const hit = lineages.get(cacheKey)
  if (hit != null) return hit
  let doc: AmDoc = A.change(A.init<RawDoc>({ actor: GENESIS_ACTOR }), { time: 0, message: 'genesis' }, d => {
    d.meta = { schema: GENESIS_SCHEMA, cluster: new A.ImmutableString(clusterId) }
    for (const k of GENESIS_KINDS) d[k] = {}
  })
  const changes = [{ to: GENESIS_SCHEMA, change: A.getLastLocalChange(doc)! }]
  for (const m of migrations) {
    doc = A.clone(doc, { actor: migrationActor(m.to) })
    doc = A.change(doc, { time: 0, message: `schema ${m.to}` }, d => {
      for (const k of m.adds) d[k] = {}
      d.meta!.schema = m.to
    })
    changes.push({ to: m.to, change: A.getLastLocalChange(doc)! })
  }
  const since = (k: string): number => migrations.find(m => m.adds.includes(k))?.to ?? GENESIS_SCHEMA
  const objectIds = new Map<string, { id: string, since: number }>()
  for (const k of Object.keys(doc)) objectIds.set(k, { id: A.getObjectId(doc[k])!, since: since(k) })
  const l = { clusterId, target: migrations.at(-1)?.to ?? GENESIS_SCHEMA, changes, objectIds, heads: A.getHeads(doc) }
  A.free(doc)
  lineages.set(cacheKey, l)
  return l
}

/** A fresh document: the genesis (and migrations up to the target), written by `actor`. */
export function genesisDoc (l: Lineage, actor: string): AmDoc {
  const [doc] = A.applyChanges(A.init<RawDoc>({ actor }), l.changes.map(c => c.change))
  return doc
}

export function docSchema (doc: AmDoc): number {
  const s = (doc.meta as { schema?: unknown } | undefined)?.schema
  return typeof s === 'number' ? s : 0
}

/** Applies the deterministic migration changes the document lacks; true if any was applied. */
export function migrate (doc: AmDoc, l: Lineage): { doc: AmDoc, applied: number[] } {
  const have = docSchema(doc)
  const missing = l.changes.filter(c => c.to > have)
  if (missing.length === 0) return { doc, applied: [] }
  const [out] = A.applyChanges(doc, missing.map(c => c.change))
  return { doc: out, applied: missing.map(c => c.to) }
}

/**
 * null when the document's skeleton is the lineage's (same meta, same collection
 * objects, nothing replaced, nothing unknown for our schema), else what is wrong.
 */
export function structureProblem (doc: AmDoc, l: Lineage): string | null {
  const meta = plain(doc.meta)
  const bad = validateMeta(meta)
  if (bad != null) return `meta: ${bad}`
  const m = meta as { schema: number, cluster: string }
  if (m.cluster !== l.clusterId) return `document belongs to cluster ${m.cluster}, not ${l.clusterId}`
  const newer = m.schema > l.target
  for (const key of Object.keys(doc)) {
    const want = l.objectIds.get(key)
    if (want == null) {
      if (newer) continue // a collection of a schema this agent does not know yet
      return `unknown top-level key "${key}"`
    }
    const conflicts = A.getConflicts(doc, key)
    if (conflicts != null && Object.keys(conflicts).length > 1) return `top-level "${key}" was written concurrently`
    if (A.getObjectId(doc[key]) !== want.id) return `top-level "${key}" was replaced`
  }
  for (const [key, want] of l.objectIds) {
    if (!(key in doc) && want.since <= m.schema) return `top-level "${key}" is missing`
  }
  return null
}
