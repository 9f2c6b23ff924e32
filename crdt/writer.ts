// Typed writes. A Writer collects operations and validates each one as it is asked
// for (throwing InvalidObjectError before anything touches the document); the
// Replica then applies them all to the document's core as one Automerge change.
// Reads inside a writer see the document as it was before the change.
import { keyOf, labelKey, snapshotOf, validateObject, isLabelKey, isLabelValue, type Draft, type Kind, type Objects, type Snapshot } from './schema.ts'
import type { Reader } from './reader.ts'
import { futureOverride } from './conflicts.ts'
import { toDoc, putValue, insertValue, mapAt, listAt } from './values.ts'
import type { Core } from './backend.ts'

export class InvalidObjectError extends Error {
  override name = 'InvalidObjectError'
}

export class NotFoundError extends Error {
  override name = 'NotFoundError'
}

type Op =
  | { op: 'put', kind: Kind, key: string, value: unknown }
  | { op: 'fields', kind: Kind, key: string, fields: Record<string, unknown> }
  | { op: 'del', kind: Kind, key: string }
  | { op: 'nested', kind: Kind, key: string, field: string, sub: string, value: unknown }
  | { op: 'nestedDel', kind: Kind, key: string, field: string, sub: string }
  /** a list field's tail: `drop` items off its front, `items` appended; `whole` is written instead if the list is not `length` long (not the list the tail was taken from) */
  | { op: 'listTail', kind: Kind, key: string, field: string, length: number, drop: number, items: unknown[], whole: unknown[] }

export class Writer {
  readonly by: string
  readonly at: number
  readonly reader: Reader
  readonly ops: Op[] = []

  constructor (reader: Reader, by: string, at: number) {
    this.reader = reader
    this.by = by
    this.at = at
  }

  /** objects as this change has them so far (null: removed in it), by `kind\0key` */
  private readonly latest = new Map<string, unknown>()

  /**
   * An object as this change has it so far: what an earlier put or update of this
   * writer made of it, else the document's (the reader's). Two updates of one object in
   * one change (the VM manager batches its updates) each build on the one before, so
   * neither loses the other's fields or log events.
   */
  current<K extends Kind> (kind: K, key: string): Objects[K] | undefined {
    const k = `${kind}\u0000${key}`
    if (this.latest.has(k)) return (this.latest.get(k) ?? undefined) as Objects[K] | undefined
    return this.reader.get(kind, key)?.value
  }

  private check (kind: Kind, key: string, value: unknown): void {
    const problem = validateObject(kind, key, value)
    if (problem != null) throw new InvalidObjectError(`${kind} "${key}": ${problem}`)
  }

  /** Creates or replaces a whole object (a new value for the conflict rule to weigh). */
  put<K extends Kind> (kind: K, draft: Draft<K>): Objects[K] {
    const value = { ...draft, at: this.at, by: this.by } as Objects[K]
    const key = keyOf(kind, value)
    this.check(kind, key, value)
    this.ops.push({ op: 'put', kind, key, value })
    this.latest.set(`${kind}\u0000${key}`, value)
    return value
  }

  /**
   * Changes some fields of an existing object. Uncontested objects get field-level
   * writes (so concurrent edits of different fields both survive); a contested one is
   * rewritten whole from the value the rule picked, which settles the contest.
   * `keepStamp`: an uncontested object keeps its `at` and `by` (an event another node
   * appends to a lease's log: the left-behind rule reads the holder's `at`, rv42).
   */
  update<K extends Kind> (kind: K, key: string, patch: Partial<Draft<K>>, opts: { keepStamp?: boolean } = {}): Objects[K] {
    const cur = this.reader.get(kind, key)
    const base = this.current(kind, key)
    if (cur == null || base == null) throw new NotFoundError(`${kind} "${key}" does not exist`)
    const keep = opts.keepStamp === true && !cur.contested
    const value = { ...base, ...patch, ...(keep ? {} : { at: this.at, by: this.by }) } as Objects[K]
    this.check(kind, key, value)
    this.latest.set(`${kind}\u0000${key}`, value)
    if (cur.contested) {
      this.ops.push({ op: 'put', kind, key, value })
    } else {
      const fields: Record<string, unknown> = keep ? {} : { at: this.at, by: this.by }
      const tails: Op[] = []
      // a tail is taken from the value before this change: one earlier in it (a put, an
      // update from the same read) would have it spliced twice, so the value goes whole
      const first = !this.ops.some(o => o.kind === kind && o.key === key)
      for (const [f, v] of Object.entries(patch)) {
        if (v === undefined) continue
        const old = (cur.value as Record<string, unknown>)[f]
        // a log that only gained items at its end (and lost some at its front: it is
        // bounded) is changed in place: a log of 32 events is not written again for
        // each new one, and events appended at once on two nodes both stay
        const tail = first && APPEND_LISTS[kind]?.includes(f) === true && Array.isArray(v) && Array.isArray(old) ? listTail(old, v) : null
        if (tail != null) tails.push({ op: 'listTail', kind, key, field: f, length: (old as unknown[]).length, ...tail, whole: v as unknown[] })
        else fields[f] = v
      }
      this.ops.push({ op: 'fields', kind, key, fields }, ...tails)
    }
    return value
  }

  /** Deletes an object (every concurrent value this agent has seen); false if absent. */
  remove (kind: Kind, key: string): boolean {
    if (this.reader.candidates(kind, key).length === 0) return false
    this.ops.push({ op: 'del', kind, key })
    this.latest.set(`${kind}\u0000${key}`, null)
    return true
  }

  /**
   * Settles a contest that a value stamped in the future would win (see
   * futureOverride): writes the value that should win again, stamped now. False if
   * there is nothing (any more) to settle.
   */
  settleFuture (kind: Kind, key: string, now: number, boundMs: number): boolean {
    const pick = futureOverride(kind, this.reader.candidates(kind, key), now, boundMs)
    if (pick == null) return false
    const value = { ...pick, at: this.at, by: this.by }
    this.check(kind, key, value)
    this.ops.push({ op: 'put', kind, key, value })
    return true
  }

  setLabel (node: string, key: string, value: string): void {
    if (!isLabelKey(key)) throw new InvalidObjectError(`label key "${key}" must be 1-63 letters, digits, ".", "_", "-" or "/", starting and ending with a letter or digit`)
    if (!isLabelValue(value)) throw new InvalidObjectError('label value must be at most 256 characters, without control characters (C0, DEL or C1) or lone surrogates')
    this.put('nodeLabels', { node, key, value })
  }

  removeLabel (node: string, key: string): boolean {
    return this.remove('nodeLabels', labelKey(node, key))
  }

  /** Adds a snapshot to a volume in its own map entry, so concurrent snapshots all survive. */
  addSnapshot (volumeId: string, snap: Omit<Snapshot, 'at' | 'by'>): Snapshot {
    const cur = this.reader.get('volumes', volumeId)
    if (cur == null) throw new NotFoundError(`volumes "${volumeId}" does not exist`)
    const value: Snapshot = { ...snap, at: this.at, by: this.by }
    this.check('volumes', volumeId, { ...cur.value, snapshots: { ...cur.value.snapshots, [snap.name]: value } })
    if (cur.contested) {
      this.ops.push({ op: 'put', kind: 'volumes', key: volumeId, value: { ...cur.value, snapshots: { ...cur.value.snapshots, [snap.name]: value } } })
    } else {
      this.ops.push({ op: 'nested', kind: 'volumes', key: volumeId, field: 'snapshots', sub: snap.name, value })
    }
    return value
  }

  /**
   * Records that a layer of the volume was folded into the layer above it (its `merged`
   * map): an entry of its own once the map exists, so layers folded concurrently all
   * stay folded, and the `layers` field, which a snapshot taken meanwhile writes, is left
   * alone. The first entry writes the map whole: two nodes writing a first entry at once
   * keep one, and the other layer is folded again (harmless: the layer above it already
   * has its objects).
   */
  mergeLayer (volumeId: string, layer: string, into: string): void {
    const cur = this.reader.get('volumes', volumeId)
    if (cur == null) throw new NotFoundError(`volumes "${volumeId}" does not exist`)
    const merged = { ...cur.value.merged, [layer]: into }
    this.check('volumes', volumeId, { ...cur.value, merged })
    if (cur.contested) this.ops.push({ op: 'put', kind: 'volumes', key: volumeId, value: { ...cur.value, merged } })
    else if (cur.value.merged == null) this.ops.push({ op: 'fields', kind: 'volumes', key: volumeId, fields: { merged } })
    else this.ops.push({ op: 'nested', kind: 'volumes', key: volumeId, field: 'merged', sub: layer, value: into })
  }

  /**
   * Removes one snapshot of a volume: its map entry only, so snapshots added
   * concurrently (here or on another node) survive, as they would not a new map.
   */
  removeSnapshot (volumeId: string, name: string): void {
    const cur = this.reader.get('volumes', volumeId)
    if (cur == null) throw new NotFoundError(`volumes "${volumeId}" does not exist`)
    if (snapshotOf(cur.value, name) == null) throw new NotFoundError(`volume "${cur.value.path}" has no snapshot "${name}"`)
    const snapshots = Object.fromEntries(Object.entries(cur.value.snapshots).filter(([k]) => k !== name))
    this.check('volumes', volumeId, { ...cur.value, snapshots })
    if (cur.contested) this.ops.push({ op: 'put', kind: 'volumes', key: volumeId, value: { ...cur.value, snapshots } })
    else this.ops.push({ op: 'nestedDel', kind: 'volumes', key: volumeId, field: 'snapshots', sub: name })
  }
}

/**
 * The list fields written in place when they only gain items at their end: logs, where
 * concurrent appends should all stay. (A volume's `writesGivenUp` is written whole and
 * read by a union rule, conflicts.ts: two appends spliced at once at its bound of 64
 * would make one list of 65, which the schema refuses, rv26.) Any other list is written whole (last writer
 * wins): two nodes rewriting a volume's `layers` at once must not merge into one list.
 */
const APPEND_LISTS: Partial<Record<Kind, readonly string[]>> = { leases: ['log'] }

/**
 * How `next` follows from `prev` by dropping items off its front (not all of them) and
 * appending: `{drop, items}`, or null if it does not (or nothing was appended).
 */
export function listTail (prev: readonly unknown[], next: readonly unknown[]): { drop: number, items: unknown[] } | null {
  for (let drop = 0; drop < Math.max(1, prev.length); drop++) {
    const kept = prev.length - drop
    if (kept > next.length) continue
    let same = true
    for (let i = 0; i < kept && same; i++) same = sameValue(prev[drop + i], next[i])
    if (same) return kept === next.length && drop === 0 ? null : { drop, items: next.slice(kept) }
  }
  return null
}

/** plain JSON values equal (object keys in any order) */
function sameValue (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a == null || b == null || typeof a !== 'object' || typeof b !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => sameValue(x, (b as unknown[])[i]))
  const ka = Object.keys(a).filter(k => (a as Record<string, unknown>)[k] !== undefined)
  const kb = Object.keys(b).filter(k => (b as Record<string, unknown>)[k] !== undefined)
  return ka.length === kb.length && ka.every(k => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}

/**
 * Applies collected operations to the document's core (the caller commits them as
 * one change, or rolls them back if this throws). `ids`: each collection's object id.
 */
export function applyOps (core: Core, ids: ReadonlyMap<string, { id: string }>, ops: Op[]): void {
  for (const o of ops) {
    const coll = ids.get(o.kind)?.id
    if (coll == null) throw new Error(`the document has no collection "${o.kind}"`)
    switch (o.op) {
      case 'put': putValue(core, coll, o.key, toDoc(o.value)); break
      case 'del': core.delete(coll, o.key); break
      case 'fields': {
        const obj = mapAt(core, coll, o.key)
        if (obj == null) throw new Error(`${o.kind} "${o.key}" is not in the document`)
        for (const [f, v] of Object.entries(o.fields)) putValue(core, obj, f, toDoc(v))
        break
      }
      case 'nested': {
        const obj = mapAt(core, coll, o.key)
        const sub = obj == null ? null : mapAt(core, obj, o.field)
        if (sub == null) throw new Error(`${o.kind} "${o.key}" has no ${o.field}`)
        putValue(core, sub, o.sub, toDoc(o.value))
        break
      }
      case 'listTail': {
        const obj = mapAt(core, coll, o.key)
        if (obj == null) throw new Error(`${o.kind} "${o.key}" is not in the document`)
        const list = listAt(core, obj, o.field)
        // written otherwise meanwhile (an earlier op of this change): the whole value
        if (list == null || core.length(list) !== o.length) { putValue(core, obj, o.field, toDoc(o.whole)); break }
        if (o.drop > 0) core.splice(list, 0, o.drop)
        for (const item of o.items) insertValue(core, list, core.length(list), toDoc(item))
        break
      }
      case 'nestedDel': {
        const obj = mapAt(core, coll, o.key)
        const sub = obj == null ? null : mapAt(core, obj, o.field)
        if (sub == null) throw new Error(`${o.kind} "${o.key}" has no ${o.field}`)
        core.delete(sub, o.sub)
        break
      }
    }
  }
}
