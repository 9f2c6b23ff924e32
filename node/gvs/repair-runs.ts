// The repairs one node runs (service.ts): one per volume at a time, over every object set
// the volume reads (its layers), all sharing one copy-rate cap whatever the volume, with
// the progress of the one running and the last report of each (health.ts shows both).
import type { Volume } from '../../crdt/index.ts'
import type { ReplicaTransport } from './replication.ts'
import { OBJECT_SIZE } from './placement.ts'
import { DEFAULT_REPAIR_RATE, Repairer, mergeReports, type RepairReport } from './repair.ts'
import { TokenBucket } from './token-bucket.ts'
import { layersOf, placementKeyOf } from './volumes.ts'
import { shadowed } from './shadowed.ts'
import type { GvsMetrics } from './metrics.ts'
import type { LastRepair, RepairProgressView } from './health.ts'
import type { RepairsFile } from './repairs-file.ts'
import type { WriteInterval } from './write-intervals.ts'

export interface RepairRunsComponents {
  /** this node's id */
  self: string
  transport: ReplicaTransport
  /** the object's holders over the live members */
  holders: (key: string, replicas: number) => string[]
  /** the live nodes, where copies may be */
  nodes: () => string[]
  metrics: GvsMetrics | null
  /** after a repair, before it counts as done: its volume's copies are listed again */
  repaired: (v: Volume) => Promise<void>
  /** where the last repairs are kept across restarts (none: in memory only) */
  file?: RepairsFile
  /** whether every member places as this node does (placement-check.ts): surplus copies are freed only then */
  agreed?: () => Promise<boolean>
  /**
   * after a repair with scrub: the objects of the volume it found damaged on every copy
   * ("LAYER/INDEX"), for the document (every node shows the volume degraded, not only
   * this one); the set replaces the one recorded, so what a scrub found sound is cleared
   */
  unsound?: (v: Volume, objects: string[]) => Promise<void>
  /** a node's name, for what the reports say */
  nameOf?: (node: string) => string
  /** a volume's write intervals in force (write-intervals.ts; may throw: this node cannot tell) */
  intervals?: (volumeId: string) => WriteInterval[]
  /** a repair that began at `startedAt` in placement `generation` ended healthy: every object is on its holders there */
  intervalsRepaired?: (volumeId: string, startedAt: number, generation: number) => Promise<void>
  /** the placement generation now (moves on when the live nodes change) */
  generation?: () => number
}

export interface RepairRunsInit {
  objectSize: number
  /** the copy-rate cap (default DEFAULT_REPAIR_RATE; 0: none) */
  bytesPerSecond?: number
  /** how long a surplus copy goes unused before it is freed (default RETIRE_QUIET_MS) */
  retireQuietMs?: number
}

/** a repair this node runs now */
interface Running { view: RepairProgressView, background: boolean, stop: () => void, done: Promise<RepairReport> }

export class RepairRuns {
  private readonly c: RepairRunsComponents
  private readonly init: RepairRunsInit
  private readonly running = new Map<string, Running>()
  /** the last repair of each volume this node ran */
  readonly last = new Map<string, LastRepair>()
  /** one copy-rate cap for every repair this node runs, whatever the volume */
  private bucket?: TokenBucket

  constructor (components: RepairRunsComponents, init: RepairRunsInit) {
    this.c = components
    this.init = init
    for (const [id, r] of components.file?.load() ?? []) this.last.set(id, r)
  }

  /** forgets the last repairs of volumes that are gone (`keep`: the volumes there are) */
  async forget (keep: ReadonlySet<string>): Promise<void> {
    const gone = [...this.last.keys()].filter(id => !keep.has(id))
    if (gone.length === 0) return
    for (const id of gone) this.last.delete(id)
    await this.c.file?.save(this.last).catch(() => {})
  }

  /** the copy-rate cap every repair of this node shares (none: no cap) */
  private sharedBucket (): TokenBucket | undefined {
    const rate = this.init.bytesPerSecond ?? DEFAULT_REPAIR_RATE
    if (rate <= 0) return undefined // no cap
    this.bucket ??= new TokenBucket({ rate, burst: OBJECT_SIZE })
    return this.bucket
  }

  /** the repairer of one layer of the volume (also what takes its inventory) */
  repairer (v: Volume, layer: string): Repairer {
    const ivs = this.c.intervals
    return this.layerRepairer({ layer, placementKey: placementKeyOf(v), replicas: v.replicas, sizeBytes: v.sizeBytes }, ivs == null ? undefined : () => ivs(v.id))
  }

  /** the repairer of one layer placed by `placementKey` (layers shared by several volumes: layer-reclaim.ts) */
  layerRepairer (l: { layer: string, placementKey: string, replicas: number, sizeBytes: number }, intervals?: () => WriteInterval[]): Repairer {
    return new Repairer({ transport: this.c.transport, holders: this.c.holders, nodes: this.c.nodes, agreed: this.c.agreed, nameOf: this.c.nameOf, intervals }, {
      volume: l.layer, placementKey: l.placementKey, replicas: l.replicas, objects: Math.ceil(l.sizeBytes / this.init.objectSize), objectSize: this.init.objectSize, bytesPerSecond: this.init.bytesPerSecond, bucket: this.sharedBucket(), retireQuietMs: this.init.retireQuietMs
    })
  }

  /** the repair of this volume running here, if any */
  progress (id: string): RepairProgressView | null { return this.running.get(id)?.view ?? null }

  isRunning (id: string): boolean { return this.running.has(id) }

  /** a member changed: the background repairs' plans are stale */
  stopBackground (): void { for (const r of this.running.values()) if (r.background) r.stop() }

  /** stops every repair (ended() waits for them) */
  stopAll (): void { for (const r of this.running.values()) r.stop() }

  /** once every repair running now has ended */
  async ended (): Promise<void> {
    await Promise.allSettled([...this.running.values()].map(async r => await r.done))
  }

  /** the objects of these damaged copies ("LAYER/INDEX") that nothing reads any more (shadowed.ts) */
  private async unread (v: Volume, damaged: ReadonlyArray<{ layer: string, index: number }>): Promise<Set<string>> {
    const out = new Set<string>()
    for (const k of new Set(damaged.map(d => `${d.layer}/${d.index}`))) {
      const slash = k.lastIndexOf('/')
      if (await shadowed({ transport: this.c.transport, holders: this.c.holders }, v, k.slice(0, slash), Number(k.slice(slash + 1)))) out.add(k)
    }
    return out
  }

  /**
   * Repairs every object set the volume reads (its layers) towards their placement,
   * with `scrub` first verifying every copy and rewriting damaged ones. One repair of a
   * volume at a time on this node: a second call joins the running one.
   */
  async repair (v: Volume, opts: { background?: boolean, scrub?: boolean } = {}): Promise<RepairReport> {
    const cur = this.running.get(v.id)
    if (cur != null) return await cur.done
    const view: RepairProgressView = { node: this.c.self, startedAt: Date.now(), done: 0, total: 0, bytes: 0, failed: 0 }
    const generation = this.c.generation?.() ?? 0
    const active = new Set<Repairer>()
    let stopped = false
    const run = async (): Promise<RepairReport> => {
      const scrubbed: LastRepair['scrubbed'] = []
      if (opts.scrub === true) {
        for (const layer of layersOf(v)) {
          const r = this.repairer(v, layer)
          for (const f of await r.scrub()) scrubbed.push({ layer, ...f, ...(this.c.nameOf != null ? { name: this.c.nameOf(f.node) } : {}) })
        }
      }
      const reports: RepairReport[] = []
      for (const layer of layersOf(v)) {
        if (stopped) break
        const r = this.repairer(v, layer)
        active.add(r)
        const base = { ...view }
        r.on('progress', p => { Object.assign(view, { done: base.done + p.done, total: base.total + p.total, bytes: base.bytes + p.bytes, failed: base.failed + p.failed }) })
        const rep = await r.run()
        active.delete(r)
        reports.push(rep)
        Object.assign(view, { done: base.done + rep.done, total: base.total + rep.total, bytes: base.bytes + rep.bytes, failed: base.failed + rep.failed })
      }
      const report = mergeReports(v.id, reports)
      // a damaged copy scrub could not rewrite (no sound copy of it anywhere it looked) is
      // a failure of this repair, and stays in the volume's health until a scrub finds
      // otherwise: a repair without scrub does not look at the data, so it carries it on.
      // Unsound (unreadable) only when some block is damaged on every copy: one whose
      // every block is sound somewhere reads fine, its copies were just not rewritten
      // a damaged copy nothing reads any more (copied up above it since, its snapshot
      // deleted) is no failure: the layer's objects go when it is folded away
      const unread = await this.unread(v, scrubbed.filter(s => !s.healed))
      const checked = scrubbed.filter(s => s.healed || !unread.has(`${s.layer}/${s.index}`))
      const unhealed = checked.filter(s => !s.healed)
      report.failed += unhealed.length
      for (const s of unhealed) report.errors.push(`scrub: object ${s.index} of ${s.layer} on ${s.name ?? s.node} is damaged and was not rewritten: ${s.error ?? 'unknown why'}`)
      const carried = opts.scrub === true ? unhealed : (this.last.get(v.id)?.scrubbed ?? []).filter(s => !s.healed)
      const objects = (ss: typeof carried): string[] => [...new Set(ss.map(s => `${s.layer}/${s.index}`))].sort()
      const unreadable = objects(carried.filter(s => s.readable !== true))
      const unsound = unreadable.length
      const unrewritten = objects(carried.filter(s => s.readable === true)).filter(k => !unreadable.includes(k)).length
      if (unrewritten > 0) report.health = 'degraded'
      if (report.failed > 0 || unsound > 0) report.health = 'degraded'
      // every object on its holders now: where earlier writes went is recorded no more
      if (report.health === 'healthy' && !stopped) await this.c.intervalsRepaired?.(v.id, view.startedAt, generation).catch(() => {})
      this.c.metrics?.repairBytes.inc(report.bytes)
      this.c.metrics?.repairFailed.inc(report.failed)
      this.c.metrics?.surplusFreed.inc(report.freed)
      // the document's record is what every node shows, and what a sound scrub through any
      // node clears: once it took the finding, this node's count stops adding to it
      const prev = this.last.get(v.id)
      const recorded = opts.scrub === true
        ? this.c.unsound != null && await this.c.unsound(v, unreadable).then(() => true, () => false)
        : prev?.unsoundRecorded === true
      this.last.set(v.id, {
        node: this.c.self, at: Date.now(), copied: Math.max(0, report.done - report.failed + unhealed.length), failed: report.failed, ...(report.unavailable != null ? { unavailable: report.unavailable, unavailableWhy: report.unavailableWhy } : {}), bytes: report.bytes, lost: report.plan.lost.length, ...(report.plan.short.length > 0 ? { short: report.plan.short.length } : {}), errors: report.errors, lostObjects: report.plan.lost, unsound, ...(recorded && unsound > 0 ? { unsoundRecorded: true as const } : {}), ...(opts.scrub === true ? { scrubbedAt: view.startedAt } : prev?.scrubbedAt != null ? { scrubbedAt: prev.scrubbedAt } : {}), ...(unrewritten > 0 ? { unrewritten } : {}), freed: report.freed, scrubbed: opts.scrub === true ? checked : carried
      })
      // a failed write is logged by the file; the repair itself stands
      await this.c.file?.save(this.last).catch(() => {})
      await this.c.repaired(v)
      return report
    }
    const done = run().finally(() => {
      this.running.delete(v.id)
      this.c.metrics?.volumesUnhealthy.set([...this.last.values()].filter(r => r.failed > 0 || r.lost > 0).length)
    })
    this.running.set(v.id, { view, background: opts.background === true, stop: () => { stopped = true; for (const r of active) r.stop() }, done })
    return await done
  }
}
