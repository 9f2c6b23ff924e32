// Repair and scrub of one volume. The decisions are pure: planRepair compares where
// each object is (an inventory gathered from the live nodes) with where placement
// wants it, and says what to copy where, what is surplus and what is lost; a token
// bucket (token-bucket.ts) says when the next copy may go, so copying stays under a
// byte rate and VM I/O keeps going. The Repairer is the imperative shell: inventory,
// copies from the bucket (a few at once, so one copy's round trips do not idle the
// rest of the rate), progress.
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { TokenBucket } from './token-bucket.ts'
import { listObjects, type ReplicaTransport } from './replication.ts'
import { GvsError } from './errors.ts'
import { OBJECT_SIZE, objectKey } from './placement.ts'
import { NO_VERSION, compareVersions, newest, type Version } from './versions.ts'
import { RETIRE_QUIET_MS } from './object-uses.ts'
import { unheard, unheardError, unheardObjects, type WriteInterval } from './write-intervals.ts'
import { CHECK_BLOCK } from './checksums.ts'
import { assembleObject } from './assemble.ts'

/** object index -> the live nodes that hold its newest copy (versions.ts) */
export type Inventory = ReadonlyMap<number, readonly string[]>

export interface Copy { index: number, to: string, from: readonly string[], why: string }
export interface RepairPlan {
  copies: Copy[]
  /** copies on nodes that are no longer holders: freed only once the holders have it */
  surplus: Array<{ index: number, node: string }>
  /** objects no live node holds: their data is gone (more than R-1 holders lost) */
  lost: number[]
  /** objects that will have fewer than R copies even after the copies */
  short: number[]
}

export type VolumeHealth = 'healthy' | 'degraded' | 'repairing'

/**
 * What to copy where so that every object's newest copy sits on its placement's
 * holders. `stale`: nodes that hold an older copy (they missed writes while away): on a
 * holder it is replaced like a missing one, elsewhere it is surplus.
 */
export function planRepair (inventory: Inventory, wanted: (index: number) => readonly string[], replicas: number, stale: Inventory = new Map()): RepairPlan {
  const plan: RepairPlan = { copies: [], surplus: [], lost: [], short: [] }
  for (const [index, have] of [...inventory].sort((a, b) => a[0] - b[0])) {
    const want = wanted(index)
    if (have.length === 0) { plan.lost.push(index); continue }
    const haveSet = new Set(have)
    // sources: holders first (they took the latest writes), then any other copy
    const from = [...want.filter(n => haveSet.has(n)), ...have.filter(n => !want.includes(n))]
    for (const to of want) {
      if (!haveSet.has(to)) plan.copies.push({ index, to, from, why: `object ${index} belongs on ${to} by placement and is missing there` })
    }
    for (const n of have) if (!want.includes(n)) plan.surplus.push({ index, node: n })
    for (const n of stale.get(index) ?? []) if (!want.includes(n)) plan.surplus.push({ index, node: n })
    if (want.length < replicas) plan.short.push(index)
  }
  return plan
}

/** a volume is healthy when nothing needs copying and every object has R holders */
export function healthOf (plan: RepairPlan, running: boolean): VolumeHealth {
  if (plan.copies.length === 0 && plan.lost.length === 0 && plan.short.length === 0) return 'healthy'
  return running ? 'repairing' : 'degraded'
}

/** milliseconds to wait before the next copy so `bytes` done in `elapsedMs` stays at or under `rate` bytes/s */
export function pace (bytes: number, rate: number, elapsedMs: number): number {
  if (!(rate > 0) || !Number.isFinite(rate)) return 0
  return Math.max(0, bytes / rate * 1000 - elapsedMs)
}

export interface RepairProgress { volume: string, done: number, total: number, bytes: number, failed: number }
export interface RepairReport extends RepairProgress {
  plan: RepairPlan
  health: VolumeHealth
  errors: string[]
  /** surplus copies freed (retired) by this run */
  freed: number
  /** objects left alone as unavailable: every holder of a write interval of theirs is down (write-intervals.ts), with why for the first */
  unavailable?: number
  unavailableWhy?: string
}

/** one report of several object sets (a volume's layers) */
export function mergeReports (volume: string, rs: readonly RepairReport[]): RepairReport {
  const plan: RepairPlan = { copies: [], surplus: [], lost: [], short: [] }
  const out: RepairReport = { volume, done: 0, total: 0, bytes: 0, failed: 0, plan, health: 'healthy', errors: [], freed: 0 }
  for (const r of rs) {
    out.freed += r.freed
    out.done += r.done
    out.total += r.total
    out.bytes += r.bytes
    out.failed += r.failed
    out.errors.push(...r.errors)
    if ((r.unavailable ?? 0) > 0) { out.unavailable = (out.unavailable ?? 0) + r.unavailable!; out.unavailableWhy ??= r.unavailableWhy }
    if (r.health !== 'healthy') out.health = r.health
    plan.copies.push(...r.plan.copies)
    plan.surplus.push(...r.plan.surplus)
    plan.lost.push(...r.plan.lost)
    plan.short.push(...r.plan.short)
  }
  return out
}

export interface RepairerComponents {
  transport: ReplicaTransport
  holders: (key: string, replicas: number) => string[]
  /** the nodes to ask for their inventory: the live members */
  nodes: () => string[]
  /**
   * whether every member that may read or write places objects as this node does now
   * (placement-check.ts); surplus copies are freed only then. Absent: never freed.
   */
  agreed?: () => Promise<boolean>
  /** a node's name, for what the report says (default: its id) */
  nameOf?: (node: string) => string
  /**
   * the volume's write intervals in force (write-intervals.ts): an object none of whose
   * holders in one of them listed its copies may have its newest copy only there, and
   * is not copied (that would spread an older copy), nor its surplus freed. It may
   * throw (this node may not tell at all: no majority): nothing is copied then.
   * Default: none.
   */
  intervals?: () => WriteInterval[]
}

/**
 * The default repair rate: 32 MiB/s, eight objects a second. Measured in bench/gvs.ts
 * (R=2 on 3 agents, one killed): a VM's 4 KiB random reads kept most of their IOPS
 * while repair ran at this rate, where an unlimited repair took the link from them.
 */
export const DEFAULT_REPAIR_RATE = 32 * 1024 * 1024

export interface RepairerInit {
  volume: string
  replicas: number
  /** copy rate cap in bytes per second (default DEFAULT_REPAIR_RATE; 0: no cap) */
  bytesPerSecond?: number
  /** a bucket shared with other repairs (all volumes of a node under one cap); overrides bytesPerSecond */
  bucket?: TokenBucket
  /** copies in flight at once (default 2) */
  concurrency?: number
  /** the volume's size in objects; objects beyond are not expected */
  objects?: number
  /** what objects are placed by, when not the object set's own name (layers of a clone or snapshot) */
  placementKey?: string
  /** how long a surplus copy must have gone unused before it is freed (default RETIRE_QUIET_MS) */
  retireQuietMs?: number
  /** the stores' object size and checksum block (defaults OBJECT_SIZE, CHECK_BLOCK): scrub assembles a copy damaged everywhere block by block */
  objectSize?: number
  blockSize?: number
}

/** what a scrub found of one damaged copy; `readable`: not rewritten, but every block of the object is sound on some copy (reads succeed) */
export interface ScrubFinding { index: number, node: string, blocks: number[], healed: boolean, error?: string, readable?: true }

export interface RepairerEvents { progress: [RepairProgress] }

/** the waits before each further look at the wanted holders an inventory still found behind, if no more than SETTLING_MAX */
const SETTLING_LOOKS_MS = [500, 1000]
const SETTLING_MAX = 64

export class Repairer extends EventEmitter<RepairerEvents> {
  private readonly c: RepairerComponents
  private readonly init: RepairerInit
  private stopped = false

  constructor (components: RepairerComponents, init: RepairerInit) {
    super()
    this.c = components
    this.init = init
  }

  private name (node: string): string { return this.c.nameOf?.(node) ?? node }

  stop (): void { this.stopped = true }

  /** where placement wants object i */
  private wanted (i: number): string[] {
    return this.c.holders(objectKey(this.init.placementKey ?? this.init.volume, i), this.init.replicas)
  }

  /**
   * The objects whose every holder in some write interval in force is outside `listed`
   * (the nodes that answered an inventory): unavailable, wherever copies of them are
   * (write-intervals.ts). Null when this node cannot tell (no majority).
   */
  async unavailable (listed: readonly string[]): Promise<number[] | null> {
    let intervals: WriteInterval[]
    try { intervals = this.c.intervals?.() ?? [] } catch { return null }
    return await unheardObjects(intervals, this.init.placementKey ?? this.init.volume, this.init.objects ?? 0, this.init.replicas, n => listed.includes(n))
  }

  /** where the newest copy of every object of the volume is, and where older ones are, as the live nodes report it */
  async inventory (): Promise<{ inventory: Map<number, string[]>, stale: Map<number, string[]>, versions: Map<number, Map<string, Version>>, errors: string[], listed: string[], unlisted: string[] }> {
    const all = new Map<number, Array<{ node: string, version: Version }>>()
    const errors: string[] = []
    /** the nodes that answered, and those asked that did not */
    const listed: string[] = []
    const unlisted: string[] = []
    await Promise.all(this.c.nodes().map(async node => {
      try {
        const held = await listObjects(this.c.transport, node, this.init.volume)
        listed.push(node)
        for (const { index: i, version } of held) {
          if (this.init.objects != null && i >= this.init.objects) continue
          const l = all.get(i) ?? []
          l.push({ node, version })
          all.set(i, l)
        }
      } catch (err) { unlisted.push(node); errors.push(`inventory of ${this.name(node)}: ${(err as Error).message}`) }
    }))
    const inventory = new Map<number, string[]>()
    const stale = new Map<number, string[]>()
    /** wanted holders the first look found behind (they answered: no error), for the later looks */
    const settling: Array<{ i: number, node: string, top: Version, behind: boolean }> = []
    await Promise.all([...all].map(async ([i, copies]) => {
      const top = newest(copies.map(c => c.version))
      const current = copies.filter(c => compareVersions(c.version, top) === 0).map(c => c.node)
      inventory.set(i, current)
      // a write in flight reaches the holders a moment apart (and a new object its
      // holders), and a list can fall in between: a copy behind, or a holder without
      // one, is short only if a second look still finds it behind the newest of the first
      const wanted = this.wanted(i)
      const behind = copies.filter(c => compareVersions(c.version, top) < 0).map(c => c.node)
      const absent = wanted.filter(n => listed.includes(n) && !copies.some(c => c.node === n))
      await Promise.all([...behind, ...absent].map(async node => {
        const now = await this.probe(node, i)
        if (now != null && compareVersions(now, top) >= 0) current.push(node)
        else if (now !== undefined && wanted.includes(node)) settling.push({ i, node, top, behind: behind.includes(node) })
        else if (behind.includes(node)) stale.set(i, [...stale.get(i) ?? [], node])
      }))
    }))
    // Under load a write's copy to its second holder came after both looks (bb23: a
    // volume said degraded for an inventory's 5 s while writes ran): a few wanted
    // holders still behind are looked at twice more, over 1.5 s. Only a few: a write in
    // flight touches a few objects, and a node back from a restart, behind on every
    // object, would cost a look per object twice more (and the API's 3 s wait with it)
    let left = settling.length <= SETTLING_MAX ? settling : []
    for (const wait of SETTLING_LOOKS_MS) {
      if (left.length === 0 || this.stopped) break
      await sleep(wait)
      const still: typeof left = []
      await Promise.all(left.map(async s => {
        const now = await this.probe(s.node, s.i)
        if (now != null && compareVersions(now, s.top) >= 0) inventory.get(s.i)!.push(s.node)
        // a holder that failed to answer is not asked again (a hung one would cost its timeout twice)
        else if (now !== undefined) still.push(s)
      }))
      left = still
    }
    for (const s of settling) if (s.behind && !inventory.get(s.i)!.includes(s.node)) stale.set(s.i, [...stale.get(s.i) ?? [], s.node])
    const versions = new Map([...all].map(([i, copies]) => [i, new Map(copies.map(c => [c.node, c.version]))]))
    return { inventory, stale, versions, errors, listed, unlisted }
  }

  /** the version of object `i` on `node` (null: it has none), or undefined if it did not answer */
  private async probe (node: string, i: number): Promise<Version | null | undefined> {
    try {
      const r = (await this.c.transport.call(node, { op: 'stat', volume: this.init.volume, index: i, probe: true })).reply
      return r.present === true ? r.version ?? NO_VERSION : null
    } catch {
      return undefined
    }
  }

  /** plan, then copy at the paced rate; a failed copy is reported and left for the next run */
  async run (): Promise<RepairReport> {
    const { inventory, stale, versions, errors, listed } = await this.inventory()
    let intervals: WriteInterval[]
    try { intervals = this.c.intervals?.() ?? [] } catch (err) {
      errors.push((err as Error).message)
      // one attempt, failed: `done - failed` stays the copies made (none)
      return { volume: this.init.volume, done: 1, total: 1, bytes: 0, failed: 1, plan: { copies: [], surplus: [], lost: [], short: [] }, health: 'degraded', errors, freed: 0 }
    }
    // objects whose newest copy may be only on holders of an earlier placement that did not list: left as they are
    const pkey = this.init.placementKey ?? this.init.volume
    const blocked = new Map<number, string[][]>()
    // with the objects found nowhere that answered: written where nobody answers now, perhaps
    const candidates = new Set([...inventory.keys(), ...await unheardObjects(intervals, pkey, this.init.objects ?? 0, this.init.replicas, n => listed.includes(n))])
    for (const i of candidates) {
      const sets = unheard(intervals, pkey, i, this.init.replicas, n => listed.includes(n))
      if (sets.length > 0) blocked.set(i, sets)
    }
    const blockedWhy = [...blocked].slice(0, 3).map(([i, sets]) => unheardError(this.init.volume, `object ${i} is not repaired`, sets, this.c.nameOf).message)
    errors.push(...blockedWhy)
    if (blocked.size > 3) errors.push(`and ${blocked.size - 3} more objects like it`)
    const plan = planRepair(new Map([...inventory].filter(([i]) => !blocked.has(i))), i => this.wanted(i), this.init.replicas, stale)
    const progress: RepairProgress = { volume: this.init.volume, done: 0, total: plan.copies.length, bytes: 0, failed: 0 }
    const rate = this.init.bytesPerSecond ?? DEFAULT_REPAIR_RATE
    // the burst is one object per copy in flight: enough to keep them going, never a flood
    const concurrency = Math.max(1, this.init.concurrency ?? 2)
    const bucket = this.init.bucket ?? new TokenBucket({ rate, burst: OBJECT_SIZE })
    let next = 0
    /** objects a copy of failed: their surplus copies are kept */
    const failed = new Set<number>()
    const worker = async (): Promise<void> => {
      while (!this.stopped && next < plan.copies.length) {
        const copy = plan.copies[next++]!
        try {
          // read after the copy: `progress.bytes += await ...` read it before, and the
          // workers running at the same time lost each other's bytes
          const bytes = await this.copy(copy, false, bucket)
          progress.bytes += bytes
        } catch (err) {
          progress.failed++
          failed.add(copy.index)
          errors.push(`object ${copy.index} to ${this.name(copy.to)}: ${(err as Error).message}`)
        }
        progress.done++
        this.emit('progress', { ...progress })
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, plan.copies.length) }, worker))
    const freed = this.stopped ? 0 : await this.freeSurplus(plan, versions, failed, bucket)
    // each object left as it is counts as one attempted and failed copy: `done - failed` stays the copies made
    progress.total += blocked.size
    progress.done += blocked.size
    progress.failed += blocked.size
    const health: VolumeHealth = progress.failed === 0 && plan.lost.length === 0 && plan.short.length === 0 ? 'healthy' : 'degraded'
    return { ...progress, plan, health, errors, freed, ...(blocked.size > 0 ? { unavailable: blocked.size, unavailableWhy: blockedWhy[0] } : {}) }
  }

  /**
   * Frees copies on nodes that are no longer holders (a node that took objects over
   * while another was away, or an old copy of a node back from missing writes): they
   * take disk for ever otherwise. A copy goes only when all of these hold:
   * - its node handed out a mark (`mark`) before the agreement below;
   * - every member places objects as this node does (`agreed`): none takes the copy's
   *   node for a holder, so none writes to it or reads it as one;
   * - the object has its R holders by this node's placement now, none of this pass's
   *   copies of it failed, and each holder has it, sound (verify, between two stats
   *   that agree), at a version at least the copy's;
   * - on the copy's node, inside the object's exclusive hold (`retire`): the copy is
   *   still at the version the inventory listed, and no client used it since the mark
   *   (nor for the quiet spell). A node whose placement changed after the agreement
   *   settles the object before it uses the copy, which looks at the copy: a use after
   *   the mark (object-uses.ts). However long this pass takes.
   * The verify reads each holder's copy whole: it is paced by the repair's byte rate.
   * Errors keep the copy for a later pass. Returns how many went.
   */
  private async freeSurplus (plan: RepairPlan, versions: ReadonlyMap<number, ReadonlyMap<string, Version>>, failed: ReadonlySet<number>, bucket?: TokenBucket): Promise<number> {
    if (plan.surplus.length === 0 || this.c.agreed == null) return 0
    const marks = new Map<string, string>()
    await Promise.all([...new Set(plan.surplus.map(s => s.node))].map(async node => {
      // a node of an earlier release answers `invalid`: its copies stay
      try { const m = (await this.c.transport.call(node, { op: 'mark' })).reply.mark; if (m != null) marks.set(node, m) } catch {}
    }))
    if (marks.size === 0 || !(await this.c.agreed())) return 0
    const short = new Set(plan.short)
    const checked = new Map<number, Promise<Version | null>>()
    let freed = 0
    for (const { index, node } of plan.surplus) {
      if (this.stopped) break
      const version = versions.get(index)?.get(node)
      const since = marks.get(node)
      const want = this.wanted(index)
      if (version == null || since == null || failed.has(index) || short.has(index) || want.includes(node) || want.length < this.init.replicas) continue
      try {
        // the holders are checked once per object, whatever number of surplus copies it has
        let held = checked.get(index)
        if (held == null) checked.set(index, held = this.holdersHave(index, want, bucket))
        const oldest = await held
        if (oldest == null || compareVersions(oldest, version) < 0) continue
        // retired only at this version: a copy a write moved on since is not the one the holders were checked against
        const r = (await this.c.transport.call(node, { op: 'retire', volume: this.init.volume, index, version, since, quietMs: this.init.retireQuietMs ?? RETIRE_QUIET_MS })).reply
        if (r.present !== true && r.count === 1) freed++
      } catch {
        // a node that did not answer: the copy stays
      }
    }
    return freed
  }

  /** the oldest version among the holders' copies of the object, if every holder has one, sound (null otherwise) */
  private async holdersHave (index: number, holders: readonly string[], bucket?: TokenBucket): Promise<Version | null> {
    const stat = async (h: string): Promise<Version | null> => {
      const st = (await this.c.transport.call(h, { op: 'stat', volume: this.init.volume, index, probe: true })).reply
      return st.present === true ? st.version ?? NO_VERSION : null
    }
    const looks = await Promise.all(holders.map(async h => {
      const before = await stat(h)
      if (before == null) return null
      await bucket?.take(OBJECT_SIZE)
      const bad = (await this.c.transport.call(h, { op: 'verify', volume: this.init.volume, index })).reply.bad
      // verify answers nothing bad for an absent copy too: still there, and the one verified
      const after = await stat(h)
      return bad != null && bad.length === 0 && after != null && compareVersions(after, before) >= 0 ? before : null
    }))
    if (looks.some(v => v == null)) return null
    return looks.reduce<Version>((a, v) => compareVersions(v!, a) < 0 ? v! : a, looks[0]!)
  }

  /** one object from the first source that has a sound copy; bytes moved */
  private async copy (c: Copy, replace = false, bucket?: TokenBucket): Promise<number> {
    const why: string[] = []
    for (const src of c.from) {
      let r
      try {
        r = await this.c.transport.call(src, { op: 'get', volume: this.init.volume, index: c.index })
      } catch (err) { why.push((err as Error).message); continue }
      if (r.data == null) { why.push(`${this.name(src)}: absent`); continue }
      // the copy's bytes go when the bucket has them (the get before it is bounded
      // by the copies in flight)
      await bucket?.take(r.data.length)
      try {
        // replaces only an older copy there (replace: also an equal one, as a damaged copy needs)
        await this.c.transport.call(c.to, { op: 'put', volume: this.init.volume, index: c.index, epoch: r.reply.epoch ?? 0, version: r.reply.version ?? NO_VERSION, replace }, r.data)
      } catch (err) {
        // the new holder refused it (its disk full, say): another source's copy fares no
        // better, and the fault is the target's, not the sources' (bb33: "no source could
        // supply", each cause once per source)
        const e = err as Error
        throw new GvsError(e instanceof GvsError ? e.code : 'unavailable', `the new holder could not take the copy: ${e.message}`, { transient: e instanceof GvsError && e.transient })
      }
      return r.data.length
    }
    throw new GvsError('unavailable', `no source could supply object ${c.index}: ${why.join('; ')}`)
  }

  /**
   * Scrub: verify every copy of every object on its holders; a damaged copy is
   * rewritten from a sound one, or, when every copy is damaged, from one assembled
   * block by block from the copies' sound blocks (assemble.ts). Returns the objects
   * found damaged and whether each was healed.
   */
  async scrub (): Promise<ScrubFinding[]> {
    const { inventory } = await this.inventory()
    const found: ScrubFinding[] = []
    for (const [index, nodes] of [...inventory].sort((a, b) => a[0] - b[0])) {
      const verdicts = await Promise.all(nodes.map(async node => {
        try { return { node, bad: (await this.c.transport.call(node, { op: 'verify', volume: this.init.volume, index })).reply.bad ?? [] } } catch { return { node, bad: null } }
      }))
      const checked = verdicts.flatMap(v => v.bad != null ? [{ node: v.node, bad: v.bad }] : [])
      const damaged = checked.filter(v => v.bad.length > 0)
      if (damaged.length === 0) continue
      const sound = checked.filter(v => v.bad.length === 0).map(v => v.node)
      if (sound.length > 0) {
        for (const v of damaged) {
          try {
            await this.copy({ index, to: v.node, from: sound, why: 'scrub found damaged blocks' }, true)
            found.push({ index, node: v.node, blocks: v.bad, healed: true })
          } catch (err) {
            found.push({ index, node: v.node, blocks: v.bad, healed: false, error: (err as Error).message })
          }
        }
        continue
      }
      const a = await assembleObject(this.c.transport, this.init.volume, index, checked, { objectSize: this.init.objectSize ?? OBJECT_SIZE, blockSize: this.init.blockSize ?? CHECK_BLOCK }, n => this.name(n))
      if ('error' in a) {
        const unanswered = verdicts.filter(x => x.bad == null).map(x => this.name(x.node))
        const error = `no sound copy to rewrite it from: every copy checked (${checked.map(x => this.name(x.node)).join(', ')}) is damaged${unanswered.length > 0 ? `, and ${unanswered.join(', ')} did not answer` : ''}, and no whole copy could be made of their sound blocks: ${a.error}`
        for (const v of damaged) found.push({ index, node: v.node, blocks: v.bad, healed: false, error, ...(a.readable ? { readable: true as const } : {}) })
        continue
      }
      for (const v of damaged) {
        try {
          // replace: rewrites the equal version; a write that landed since (newer) stays
          const kept = (await this.c.transport.call(v.node, { op: 'put', volume: this.init.volume, index, epoch: 0, version: a.version, replace: true }, a.data)).reply.present === true
          if (kept) found.push({ index, node: v.node, blocks: v.bad, healed: false, readable: true, error: 'a write landed on it while a sound copy was assembled from the copies\' sound blocks: not rewritten (the next scrub checks it again)' })
          else found.push({ index, node: v.node, blocks: v.bad, healed: true })
        } catch (err) {
          found.push({ index, node: v.node, blocks: v.bad, healed: false, readable: true, error: `a sound copy was assembled from the copies' sound blocks, but writing it failed: ${(err as Error).message}` })
        }
      }
    }
    return found
  }
}
