// Conversion between plain JSON values and what the document stores. Strings are
// stored as Automerge ImmutableStrings (scalars): plain JS strings would become
// collaborative text, one op per character, which is slower and larger for ids.
import * as A from '@automerge/automerge'

/** The document's root as Automerge sees it: `meta` plus one map per kind. */
export type RawDoc = Record<string, Record<string, unknown>>
export type AmDoc = A.Doc<RawDoc>

/** document value -> plain JSON (ImmutableString -> string, recursively) */
export function plain (v: unknown): unknown {
  if (v == null || typeof v !== 'object') return v
  if (A.isImmutableString(v)) return v.toString()
  if (Array.isArray(v)) return v.map(plain)
  if (v instanceof Uint8Array || v instanceof Date || A.isCounter(v)) return v
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) out[k] = plain(x)
  return out
}

/** plain JSON -> document value (string -> ImmutableString; undefined fields dropped) */
export function toDoc (v: unknown): unknown {
  if (typeof v === 'string') return new A.ImmutableString(v)
  if (v == null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map(toDoc)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toDoc(x)
  return out
}

/**
 * Every concurrent value stored at `coll[key]` (usually one). Goes through the
 * document's own backend: materialized sub-objects can outlive a fork and point at
 * the backend they came from, so Automerge.getConflicts on them is not safe here.
 */
export function valuesAt (doc: AmDoc, coll: string, collId: string, key: string): unknown[] {
  const backend = A.getBackend(doc)
  const all = backend.getAll(collId, key)
  if (all.length === 0) return []
  // the common case: one value, already materialized in the document tree
  if (all.length === 1) return [doc[coll]?.[key]]
  return all.map(v => (v[0] === 'map' || v[0] === 'list') ? backend.materialize(v[1] as string) : v[0] === 'text' ? backend.text(v[1] as string) : v[1])
}

export function keysAt (doc: AmDoc, collId: string): string[] {
  return A.getBackend(doc).keys(collId)
}
