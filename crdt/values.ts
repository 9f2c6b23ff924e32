// Conversion between plain JSON values and what the document stores. Strings are
// stored as Automerge ImmutableStrings (scalars): plain JS strings would become
// collaborative text, one op per character, which is slower and larger for ids.
import * as A from '@automerge/automerge'
import type { Core } from './backend.ts'
import { FIELD_RULES } from './conflicts.ts'
import type { Kind } from './schema.ts'

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
 * Every concurrent value stored at `coll[key]` (usually one), read from the core:
 * each object materialized on its own (the Replica keeps no JS tree of the document).
 */
export function valuesAt (core: Core, collId: string, key: string): unknown[] {
  return core.getAll(collId, key).map(v => materialized(core, v))
}

/** one value as getAll gives it, materialized */
const materialized = (core: Core, v: ReturnType<Core['getAll']>[number]): unknown =>
  (v[0] === 'map' || v[0] === 'list') ? core.materialize(v[1] as string) : v[0] === 'text' ? core.text(v[1] as string) : v[1]

/**
 * The concurrent values of one object of `kind` (usually one), as plain JSON. When the
 * object has one value, a field set in it concurrently (by two nodes at once) that
 * conflicts.ts FIELD_RULES names is read by its rule, not by Automerge's own pick.
 */
export function objectValues (core: Core, collId: string, kind: Kind, key: string): unknown[] {
  const all = core.getAll(collId, key)
  const values = all.map(v => plain(materialized(core, v)))
  const rules = FIELD_RULES[kind]
  if (rules == null || all.length !== 1 || all[0]![0] !== 'map') return values
  const v = values[0] as Record<string, unknown>
  for (const [field, rule] of Object.entries(rules)) {
    const set = valuesAt(core, all[0]![1] as string, field)
    if (set.length > 1) v[field] = rule(set.map(plain))
  }
  return values
}

export function keysAt (core: Core, collId: string): string[] {
  return core.keys(collId)
}

/** the object id of a map under `obj` (the value Automerge picks if written concurrently), or null */
export function mapAt (core: Core, obj: string, key: string): string | null {
  const v = core.getWithType(obj, key)
  return v?.[0] === 'map' ? v[1] as string : null
}

/** the object id of a list under `obj`, or null */
export function listAt (core: Core, obj: string, key: string): string | null {
  const v = core.getWithType(obj, key)
  return v?.[0] === 'list' ? v[1] as string : null
}

/** the schema version in the document's meta (0: none); crdt/genesis.ts docSchema, read from the core */
export function schemaOf (core: Core): number {
  const meta = mapAt(core, '_root', 'meta')
  const s = meta == null ? undefined : core.get(meta, 'schema')
  return typeof s === 'number' ? s : 0
}

/** a document value Automerge stores as an object of its own (a map or a list), not a scalar */
const isObjectValue = (v: unknown): v is object => v != null && typeof v === 'object' && !A.isImmutableString(v) && !(v instanceof Uint8Array) && !(v instanceof Date)

/** Writes a document value (from toDoc) at obj[prop], as Automerge's proxies would. */
export function putValue (core: Core, obj: string, prop: string, v: unknown): void {
  if (isObjectValue(v)) core.putObjectFromHydrate(obj, prop, v)
  else core.put(obj, prop, ...scalar(v) as [never, Parameters<Core['put']>[3]])
}

/** Inserts a document value (from toDoc) into the list `list` at `index`. */
export function insertValue (core: Core, list: string, index: number, v: unknown): void {
  if (isObjectValue(v)) core.insertObjectFromHydrate(list, index, v)
  else core.insert(list, index, ...scalar(v) as [never, Parameters<Core['put']>[3]])
}

function scalar (v: unknown): [unknown, Parameters<Core['put']>[3]] {
  if (v === null) return [null, 'null']
  if (A.isImmutableString(v)) return [v.toString(), 'str']
  if (v instanceof Uint8Array) return [v, 'bytes']
  if (v instanceof Date) return [v.getTime(), 'timestamp']
  switch (typeof v) {
    case 'boolean': return [v, 'boolean']
    case 'number': return [v, Number.isInteger(v) ? 'int' : 'f64']
    // plain strings would be collaborative text: toDoc makes them ImmutableStrings
    default: throw new RangeError(`cannot store a ${typeof v} in the document`)
  }
}
