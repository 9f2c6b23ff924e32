// The scheduled scrub of one node: every object this node holds is read from disk and
// checked against its checksums, at a capped byte rate (so VM I/O keeps going); a bad
// copy is rewritten from a sound copy on another live node (one that verifies clean
// just before it is read). Each node scrubs only its own copies, so the grid's scrub
// costs each disk one read of what it holds, and no object is read over the network
// unless it is bad. The schedule itself is `nextScrubAt` (health.ts).
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ReplicaTransport } from './replication.ts'
import { pace } from './repair.ts'
import { NO_VERSION, compareVersions, formatVersion, type Version } from './versions.ts'
import { CHECK_BLOCK } from './checksums.ts'
import { assembleObject, type CheckedCopy } from './assemble.ts'

export interface ScrubProgress { startedAt: number, objects: number, total: number, bytes: number, bad: number, repaired: number }

export interface ScrubReport extends ScrubProgress {
  finishedAt: number
  /** bad copies that could not be rewritten: no sound copy was reachable */
  /** `volume`: the layer as users name it (the API adds it) */
  unrepaired: Array<{ layer: string, index: number, error: string, everyCopy?: true, volume?: string }>
  /** per object set (layer): what was checked and found */
  layers: Record<string, { objects: number, bad: number, repaired: number }>
  /** set when the scrub was stopped before it was through */
  stopped?: boolean
  /** of the objects `watched` named ("LAYER/INDEX"), those this node's copy of was found sound or rewritten sound */
  sound?: string[]
  /** objects past the end of every volume that reads their layer ("LAYER/INDEX", the first few) and how many: read by nothing, so neither checked nor rewritten */
  pastEnd?: { count: number, first: string[] }
}

export interface ScrubberComponents {
  /** this node's store, as the replica protocol's local short cut reaches it */
  transport: ReplicaTransport
  /** the object sets this node holds, and their objects */
  layers: () => Promise<string[]>
  objects: (layer: string) => Promise<number[]>
  /** other live nodes to take a sound copy from, best first (the object's holders) */
  sources: (layer: string, index: number) => string[]
  objectSize: number
  /** objects whose soundness the caller wants to hear of ("LAYER/INDEX": the document's unsound ones), read at the start */
  watched?: () => ReadonlySet<string>
  /** a node's name, for what the report says (default: its id) */
  nameOf?: (node: string) => string
  /** how far the document reads a layer (bytes, layerEnds); undefined: not known (every object checked) */
  endOf?: (layer: string) => number | undefined
}

export interface ScrubberEvents { progress: [ScrubProgress] }

export class Scrubber extends EventEmitter<ScrubberEvents> {
  private readonly c: ScrubberComponents
  private readonly rate: number
  private stopped = false

  constructor (components: ScrubberComponents, init: { bytesPerSecond?: number } = {}) {
    super()
    this.c = components
    this.rate = init.bytesPerSecond ?? 50e6
  }

  stop (): void { this.stopped = true }

  async run (now = Date.now()): Promise<ScrubReport> {
    const work: Array<[string, number[]]> = []
    for (const layer of await this.c.layers()) work.push([layer, await this.c.objects(layer)])
    const p: ScrubProgress = { startedAt: now, objects: 0, total: work.reduce((s, [, xs]) => s + xs.length, 0), bytes: 0, bad: 0, repaired: 0 }
    const report: ScrubReport = { ...p, finishedAt: now, unrepaired: [], layers: {} }
    const self = this.c.transport.self
    const watched = this.c.watched?.() ?? new Set<string>()
    const sound: string[] = []
    const pastEnd = { count: 0, first: [] as string[] }
    const started = Date.now()
    for (const [layer, indexes] of work) {
      const per = report.layers[layer] = { objects: 0, bad: 0, repaired: 0 }
      const end = this.c.endOf?.(layer)
      for (const index of indexes) {
        if (this.stopped) { report.stopped = true; break }
        // no sound copy of it exists anywhere to rewrite it from (bb41: a stray file past
        // a volume's end was "could not be rewritten yet" at every scrub)
        if (end != null && index * this.c.objectSize >= end) {
          if (pastEnd.count++ < 5) pastEnd.first.push(`${layer}/${index}`)
          p.total-- // not checked: the progress counts to what is
          continue
        }
        await sleep(pace(p.bytes, this.rate, Date.now() - started))
        let bad: number[]
        try {
          bad = (await this.c.transport.call(self, { op: 'verify', volume: layer, index })).reply.bad ?? []
        } catch { continue } // removed meanwhile (a destroyed volume): nothing to check
        p.objects++
        per.objects++
        p.bytes += this.c.objectSize
        let ok = bad.length === 0
        if (!ok) {
          p.bad++
          per.bad++
          const h = await healCopyDetail(this.c, layer, index, bad)
          ok = h.error == null
          if (ok) { p.repaired++; per.repaired++ } else report.unrepaired.push({ layer, index, error: h.error!, ...(h.everyCopy ? { everyCopy: true as const } : {}) })
        }
        if (ok && watched.has(`${layer}/${index}`)) sound.push(`${layer}/${index}`)
        this.emit('progress', { ...p })
      }
    }
    return { ...report, ...p, finishedAt: Date.now(), ...(sound.length > 0 ? { sound } : {}), ...(pastEnd.count > 0 ? { pastEnd } : {}) }
  }
}

/**
 * What a scrub report found of one volume's copies here: the sums over every layer its
 * stack or its snapshots' read, or read before a fold (`merged`: a layer folded after the
 * scrub went by was still the volume's when it was checked, and `vol info` said "none of
 * its copies checked yet" for a day; CI). Between a fold and the freeing of the folded
 * layer both hold copies of its objects, and a scrub then checks, and counts, both. Null
 * when the scrub saw none of them. Pure.
 */
export function scrubOfVolume (report: Pick<ScrubReport, 'layers'>, v: { id: string, layers?: readonly string[], snapshots: Record<string, { layers?: readonly string[] }> }): { objects: number, bad: number, repaired: number } | null {
  const layers = new Set([...(v.layers ?? [v.id]), ...Object.values(v.snapshots).flatMap(s => s.layers ?? [v.id])])
  const out = { objects: 0, bad: 0, repaired: 0 }
  let seen = false
  for (const l of layers) {
    const x = report.layers[l]
    if (x != null) { seen = true; out.objects += x.objects; out.bad += x.bad; out.repaired += x.repaired }
  }
  return seen ? out : null
}

/** what healing a copy needs; with `objectSize`, a copy damaged everywhere is assembled block by block (assemble.ts) */
export type HealComponents = Pick<ScrubberComponents, 'transport' | 'sources' | 'nameOf'> & { objectSize?: number, blockSize?: number }

/**
 * Rewrites this node's copy of one object from a sound one on another live node, the
 * newest first (each verified just before it is read), or, when every copy it looked
 * at is damaged, from one assembled of their sound blocks; null when healed, else why
 * not. The scrub uses it for each bad copy it finds, and the service as soon as a read
 * or a failed fsync reports a copy damaged.
 */
export async function healCopy (c: HealComponents, layer: string, index: number): Promise<string | null> {
  return (await healCopyDetail(c, layer, index)).error
}

/**
 * healCopy, saying also whether every copy it looked at was damaged with some block
 * damaged on all of them (the object is unreadable there). `bad`: this copy's damaged
 * blocks, when the caller has just verified it.
 */
export async function healCopyDetail (c: HealComponents, layer: string, index: number, bad?: readonly number[]): Promise<{ error: string | null, everyCopy: boolean }> {
  const name = (n: string): string => c.nameOf?.(n) ?? n
  let damaged = 0
  /** sources whose copy could not be looked at (down, an error): it may be sound */
  let unknown = 0
  const why: string[] = []
  const self = c.transport.self
  const others = c.sources(layer, index).filter(n => n !== self)
  /** a node's copy's version (absent: none there; null: it could not be read) */
  const stat = async (n: string): Promise<Version | 'absent' | null> => {
    try {
      const r = (await c.transport.call(n, { op: 'stat', volume: layer, index })).reply
      return r.present === false ? 'absent' : r.version ?? NO_VERSION
    } catch { return null }
  }
  // this copy's version (null: its side file cannot say): a source older than it would
  // undo writes it took, which its holders' writer counts on
  const [here, ...looks] = await Promise.all([stat(self), ...others.map(stat)])
  const mine = here === 'absent' ? NO_VERSION : here
  const versions = new Map(others.map((n, i) => [n, looks[i] ?? null]))
  /** the damaged copies looked at, with their damaged blocks */
  const checked: CheckedCopy[] = []
  const rank = (n: string): Version => { const v = versions.get(n); return v == null || v === 'absent' ? NO_VERSION : v }
  for (const src of [...others].sort((a, b) => compareVersions(rank(b), rank(a)))) {
    const seen = versions.get(src)
    // a node without a copy says nothing of the object's other copies
    if (seen === 'absent') { why.push(`${name(src)}: no copy`); continue }
    // a node whose version could not be read may hold an older copy; tried only when this one's cannot be read either
    if (seen === null && mine !== null) { why.push(`${name(src)}: its copy's version could not be read`); unknown++; continue }
    if (seen != null && mine != null && compareVersions(seen, mine) < 0) { why.push(`${name(src)}: its copy (${formatVersion(seen)}) is older than this one (${formatVersion(mine)})`); continue }
    try {
      const v = await c.transport.call(src, { op: 'verify', volume: layer, index })
      if ((v.reply.bad ?? []).length > 0) { why.push(`${name(src)}: its copy is damaged too`); damaged++; checked.push({ node: src, bad: v.reply.bad! }); continue }
      const r = await c.transport.call(src, { op: 'get', volume: layer, index })
      // a node without a copy says nothing of the object's other copies
      if (r.data == null) { why.push(`${name(src)}: no copy`); continue }
      const put = await c.transport.call(self, { op: 'put', volume: layer, index, epoch: r.reply.epoch ?? 0, version: r.reply.version ?? NO_VERSION, replace: true }, r.data)
      // kept: the copy here is newer than the one read (written since, or the source lagged)
      if (put.reply.present === true) { why.push(`${name(src)}: its copy (${formatVersion(r.reply.version ?? NO_VERSION)}) is older than this one`); continue }
      return { error: null, everyCopy: false }
    } catch (err) { why.push(`${name(src)}: ${(err as Error).message}`); unknown++ }
  }
  let readable = false
  if (c.objectSize != null && checked.length > 0) {
    // every block sound on some copy (this one's included) makes the object whole again
    let mine: readonly number[] | null = bad ?? null
    try { mine ??= (await c.transport.call(self, { op: 'verify', volume: layer, index })).reply.bad ?? [] } catch (err) { why.push(`verifying this copy failed: ${(err as Error).message}`) }
    const a = mine == null ? null : await assembleObject(c.transport, layer, index, [{ node: self, bad: mine }, ...checked], { objectSize: c.objectSize, blockSize: c.blockSize ?? CHECK_BLOCK }, name)
    if (a != null && 'error' in a) { readable = a.readable; why.push(`no whole copy could be made of the copies' sound blocks: ${a.error}`) }
    if (a != null && !('error' in a)) {
      readable = true
      try {
        // replace: rewrites the equal version; a write that landed since (newer) stays
        const put = await c.transport.call(self, { op: 'put', volume: layer, index, epoch: 0, version: a.version, replace: true }, a.data)
        if (put.reply.present !== true) return { error: null, everyCopy: false }
        why.push(`the copy assembled of the copies' sound blocks (${formatVersion(a.version)}) is older than this one`)
      } catch (err) { why.push(`writing the copy assembled of the copies' sound blocks failed: ${(err as Error).message}`) }
    }
  }
  return { error: why.length === 0 ? 'no other live node to copy from' : why.join('; '), everyCopy: damaged > 0 && unknown === 0 && !readable }
}
