// Typed, validated reads of one version of the document. Every concurrent value of an
// object is validated; invalid ones (an older or buggy writer) are skipped and
// reported through `onInvalid`, never thrown; the conflict rule picks among the rest.
// Resolved objects are cached across versions (ResolvedCache): the Replica drops
// exactly the entries a change touched, so a read after a write costs what changed.
// A Reader belongs to one version: get a fresh one from the Replica after a change.
import { createHash } from 'node:crypto'
import { KINDS, validateObject, type Kind, type NodeLabel, type Objects } from './schema.ts'
import { canonical, resolve, type Resolved } from './conflicts.ts'
import { objectValues, keysAt } from './values.ts'
import type { Core } from './backend.ts'

export type InvalidHandler = (kind: Kind, key: string, problem: string) => void

export type Counts = { [K in Kind]: number } & {
  /** objects with more than one valid concurrent value (resolved by a rule) */
  contested: number
  /** concurrent values skipped because they fail the schema */
  invalid: number
}

export class StaleReaderError extends Error {
  override name = 'StaleReaderError'
}

/** `valid`: every valid concurrent value, kept only for contested objects (DVMM reads every claim of a contested lease at each step) */
interface Entry { value?: Resolved<Objects[Kind]>, invalid: number, valid?: Array<Objects[Kind]> }

/** absent entries a kind keeps at least before a sweep (ResolvedCache.absentSet) */
const SWEEP_AFTER = 1024

/** Resolved objects by kind and key, shared by the Readers of successive versions. */
export class ResolvedCache {
  private readonly m = new Map<Kind, Map<string, Entry>>()
  /** sorted keys per kind; undefined when a change may have added or removed one */
  readonly keys = new Map<Kind, string[]>()
  /**
   * keys whose entry was read from more than one concurrent value: Automerge's patches
   * describe only the value it shows itself, so a change to another of them (a field
   * update of a claim the conflict rule picks, a causal overwrite of one of them) can
   * come without a patch naming the key. The Replica drops these after every merge.
   */
  private readonly multi = new Map<Kind, Set<string>>()
  /**
   * entries of keys without a value (a removed VM's lease read again) set since the
   * kind's last sweep: no change names such a key again, so they would stay for good
   * (one per removed object and kind, on every agent); swept once they outnumber the
   * kind's entries, at least SWEEP_AFTER, so a sweep costs O(1) per entry set
   */
  private readonly absentSet = new Map<Kind, number>()
  digest?: string

  kind (k: Kind): Map<string, Entry> {
    let e = this.m.get(k)
    if (e == null) this.m.set(k, e = new Map())
    return e
  }

  /** Records an entry read from `values` concurrent values (see `multi`). */
  set (kind: Kind, key: string, e: Entry, values: number): void {
    const byKey = this.kind(kind)
    byKey.set(key, e)
    if (values === 0) {
      const n = (this.absentSet.get(kind) ?? 0) + 1
      this.absentSet.set(kind, n)
      if (n > Math.max(SWEEP_AFTER, byKey.size - n)) this.sweep(kind, byKey)
    }
    let s = this.multi.get(kind)
    if (values > 1) {
      if (s == null) this.multi.set(kind, s = new Set())
      s.add(key)
    } else {
      s?.delete(key)
    }
  }

  /** Drops the kind's entries of keys without a value (read again from the document when asked). */
  private sweep (kind: Kind, byKey: Map<string, Entry>): void {
    for (const [key, e] of byKey) if (e.value == null && e.invalid === 0) byKey.delete(key)
    this.absentSet.delete(kind)
  }

  /** Drops every entry read from more than one concurrent value. */
  invalidateMulti (): void {
    for (const [kind, keys] of this.multi) for (const key of keys) this.invalidate(kind, key)
    this.multi.clear()
  }

  invalidate (kind: string, key: string): void {
    this.multi.get(kind as Kind)?.delete(key)
    this.m.get(kind as Kind)?.delete(key)
    this.keys.delete(kind as Kind)
    this.digest = undefined
  }

  /** Sets an object's entry from its values, validated already (after invalidate). */
  prime (kind: Kind, key: string, valid: Array<Objects[Kind]>): void {
    this.set(kind, key, { value: resolve(kind, valid), invalid: 0, ...(valid.length > 1 ? { valid } : {}) }, valid.length)
  }

  clear (): void {
    this.multi.clear()
    this.absentSet.clear()
    this.m.clear()
    this.keys.clear()
    this.digest = undefined
  }
}

export class Reader {
  private readonly core: Core
  private readonly ids: ReadonlyMap<string, { id: string }>
  private readonly onInvalid: InvalidHandler
  private readonly cache: ResolvedCache
  stale = false

  /** `ids`: the object id of each collection (from the document's lineage) */
  constructor (core: Core, ids: ReadonlyMap<string, { id: string }>, onInvalid: InvalidHandler = () => {}, cache = new ResolvedCache()) {
    this.core = core
    this.ids = ids
    this.onInvalid = onInvalid
    this.cache = cache
  }

  private check (): void {
    if (this.stale) throw new StaleReaderError('this Reader is for an older version of the document')
  }

  /** Every valid concurrent value of one object (usually one), each a fresh array. */
  candidates<K extends Kind> (kind: K, key: string): Array<Objects[K]> {
    const e = this.entry(kind, key)
    if (e.valid != null) return [...e.valid] as Array<Objects[K]>
    return e.value == null ? [] : [e.value.value as Objects[K]]
  }

  private load<K extends Kind> (kind: K, key: string): { valid: Array<Objects[K]>, invalid: number } {
    this.check()
    const collId = this.ids.get(kind)?.id
    const valid: Array<Objects[K]> = []
    let invalid = 0
    if (collId == null) return { valid, invalid }
    for (const v of objectValues(this.core, collId, kind, key)) {
      const problem = validateObject(kind, key, v)
      if (problem == null) {
        valid.push(v as Objects[K])
      } else {
        invalid++
        this.onInvalid(kind, key, problem)
      }
    }
    return { valid, invalid }
  }

  private entry (kind: Kind, key: string): Entry {
    this.check()
    const byKey = this.cache.kind(kind)
    let e = byKey.get(key)
    if (e == null) {
      const { valid, invalid } = this.load(kind, key)
      e = { value: resolve(kind, valid), invalid, ...(valid.length > 1 ? { valid } : {}) }
      this.cache.set(kind, key, e, valid.length + invalid)
    }
    return e
  }

  get<K extends Kind> (kind: K, key: string): Resolved<Objects[K]> | undefined {
    return this.entry(kind, key).value as Resolved<Objects[K]> | undefined
  }

  private keysOf (kind: Kind): string[] {
    this.check()
    let keys = this.cache.keys.get(kind)
    if (keys == null) {
      const collId = this.ids.get(kind)?.id
      keys = collId == null ? [] : keysAt(this.core, collId).sort()
      this.cache.keys.set(kind, keys)
    }
    return keys
  }

  /** All objects of a kind, by key, sorted by key. */
  all<K extends Kind> (kind: K): Map<string, Resolved<Objects[K]>> {
    const m = new Map<string, Resolved<Objects[K]>>()
    for (const key of this.keysOf(kind)) {
      const r = this.entry(kind, key).value
      if (r != null) m.set(key, r as Resolved<Objects[K]>)
    }
    return m
  }

  list<K extends Kind> (kind: K): Array<Objects[K]> {
    return [...this.all(kind).values()].map(r => r.value)
  }

  /** The operator labels stored for one node. */
  labelsOf (node: string): Record<string, string> {
    const out: Record<string, string> = {}
    const prefix = node + '/'
    for (const key of this.keysOf('nodeLabels')) {
      if (!key.startsWith(prefix)) continue
      const r = this.entry('nodeLabels', key).value as Resolved<NodeLabel> | undefined
      if (r != null) out[r.value.key] = r.value.value
    }
    return out
  }

  label (node: string, key: string): Resolved<NodeLabel> | undefined {
    return this.get('nodeLabels', `${node}/${key}`)
  }

  counts (): Counts {
    const c = { contested: 0, invalid: 0 } as Counts
    for (const k of KINDS) {
      c[k] = 0
      for (const key of this.keysOf(k)) {
        const e = this.entry(k, key)
        if (e.value != null) c[k]++
        if (e.value?.contested === true) c.contested++
        c.invalid += e.invalid
      }
    }
    return c
  }

  /** A hash of the resolved content: equal on two agents iff they read the same objects. */
  digest (): string {
    if (this.cache.digest == null) {
      const h = createHash('sha256')
      for (const k of KINDS) for (const [key, r] of this.all(k)) h.update(`${k}\0${key}\0${canonical(r.value)}\n`)
      this.cache.digest = h.digest('hex')
    }
    return this.cache.digest
  }
}
