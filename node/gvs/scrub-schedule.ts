// The scrub on a schedule: this node's copies are scrubbed every `intervalMs` at a
// phase set by the node id (nextScrubAt), or now when asked; the last report is kept
// in <data-dir>/gvs-scrub.json so a restart neither forgets it nor scrubs again at once.
import { readFile } from 'node:fs/promises'
import { writeFileDurable } from '../durable-file.ts'
import type { Logger } from '../log.ts'
import type { ObjectStore } from './object-store.ts'
import type { ReplicaTransport } from './replication.ts'
import type { GvsMetrics } from './metrics.ts'
import { nextScrubAt } from './health.ts'
import { Scrubber, type ScrubProgress, type ScrubReport } from './scrub.ts'

export interface ScrubScheduleComponents {
  self: string
  log: Logger
  transport: ReplicaTransport
  store: Pick<ObjectStore, 'volumes' | 'list' | 'objectSize'>
  metrics: GvsMetrics | null
  file: string
  sources: (layer: string, index: number) => string[]
  /**
   * For the document: objects the scrub found damaged here and on every other copy it
   * looked at (unreadable), and those of `watched` it found sound here (readable again:
   * rewritten since), with when the scrub started
   */
  unsound?: (objects: Array<{ layer: string, index: number }>, sound: string[], startedAt: number) => Promise<void>
  /** objects recorded as damaged on every copy ("LAYER/INDEX"), for the scrub to look out for */
  watched?: () => ReadonlySet<string>
  /** a node's name, for what the report says */
  nameOf?: (node: string) => string
  /** how far the document reads a layer (bytes); objects past it are left unchecked */
  endOf?: (layer: string) => number | undefined
}

export interface ScrubStatus {
  intervalMs: number
  /** when the next scheduled scrub starts (ms), or null when none is scheduled */
  next: number | null
  running: ScrubProgress | null
  last: ScrubReport | null
  /** the last scrub that ended in an error, when it did after `last` (bb41: `vol scrub --now` waited for ever) */
  failed?: { startedAt: number, at: number, error: string }
}

export class ScrubSchedule {
  private readonly c: ScrubScheduleComponents
  private readonly intervalMs: number
  private readonly rate: number | undefined
  private timer: ReturnType<typeof setTimeout> | null = null
  private next: number | null = null
  private current: { scrubber: Scrubber, done: Promise<ScrubReport> } | null = null
  private progress: ScrubProgress | null = null
  last: ScrubReport | null = null
  private failed: { startedAt: number, at: number, error: string } | null = null
  private on = false

  constructor (components: ScrubScheduleComponents, init: { intervalMs: number, bytesPerSecond?: number }) {
    this.c = components
    this.intervalMs = init.intervalMs
    this.rate = init.bytesPerSecond
  }

  async start (): Promise<void> {
    this.on = true
    this.last = null
    try {
      const r = asScrubReport(JSON.parse(await readFile(this.c.file, 'utf8')))
      if (r != null) this.last = r
      else this.c.log.warn('the last scrub\'s record is not one: ignored (the next scrub writes a new one)', { file: this.c.file })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.c.log.warn('the last scrub\'s record cannot be read: ignored (the next scrub writes a new one)', { file: this.c.file, err: (err as Error).message })
    }
    this.plan()
  }

  async stop (): Promise<void> {
    this.on = false
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = null
    this.current?.scrubber.stop()
    await this.current?.done.catch(() => {})
  }

  status (): ScrubStatus {
    const failed = this.failed != null && this.failed.at > (this.last?.finishedAt ?? 0) ? { failed: this.failed } : {}
    return { intervalMs: this.intervalMs, next: this.next, running: this.progress, last: this.last, ...failed }
  }

  private plan (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = null
    this.next = null
    if (!this.on || !(this.intervalMs > 0)) return
    const now = Date.now()
    const at = nextScrubAt(this.c.self, this.intervalMs, now, this.last?.startedAt ?? null)
    this.next = at
    // timers hold at most ~24.8 days; a longer wait is re-planned when it fires
    this.timer = setTimeout(() => { void this.now().catch(() => {}) }, Math.min(at - now, 2 ** 31 - 1))
    this.timer.unref?.()
  }

  /** scrubs this node's copies now (joins a running scrub) */
  async now (): Promise<ScrubReport> {
    if (this.current != null) return await this.current.done
    if (this.timer != null) clearTimeout(this.timer)
    this.next = null
    const scrubber = new Scrubber({
      transport: this.c.transport,
      layers: async () => await this.c.store.volumes(),
      objects: async layer => await this.c.store.list(layer),
      sources: this.c.sources,
      objectSize: this.c.store.objectSize,
      watched: this.c.watched,
      nameOf: this.c.nameOf,
      endOf: this.c.endOf
    }, { bytesPerSecond: this.rate })
    let seen = { objects: 0, bad: 0, repaired: 0 }
    scrubber.on('progress', p => {
      this.progress = p
      // counters move as the scrub goes, not only at its end
      this.c.metrics?.scrubObjects.inc(p.objects - seen.objects)
      this.c.metrics?.scrubBad.inc(p.bad - seen.bad)
      this.c.metrics?.scrubRepaired.inc(p.repaired - seen.repaired)
      seen = { objects: p.objects, bad: p.bad, repaired: p.repaired }
    })
    // running from its start, not from its first progress event
    const startedAt = Date.now()
    this.progress = { startedAt, objects: 0, total: 0, bytes: 0, bad: 0, repaired: 0 }
    const done = (async () => {
      const r = await scrubber.run().catch((err: unknown) => {
        // said where it is asked for, and logged: a scheduled scrub's failure was dropped
        const error = err instanceof Error ? err.message : String(err)
        this.failed = { startedAt, at: Date.now(), error }
        this.c.log.error('the scrub of this node\'s copies failed', { error })
        throw err
      })
      this.last = r
      this.c.metrics?.scrubLast.set(r.finishedAt / 1000)
      if (r.bad > 0) this.c.log.warn('scrub found damaged copies', { bad: r.bad, repaired: r.repaired, unrepaired: r.unrepaired.map(u => `${u.layer}/${u.index}: ${u.error}`) })
      else this.c.log.info('scrub found every copy sound', { objects: r.objects })
      if (r.pastEnd != null) this.c.log.info('objects past the end of every volume that reads them, as this node\'s document has the volumes, were left unchecked (a volume grown on another node whose size has not reached this one yet, or files put there by hand)', { count: r.pastEnd.count, first: r.pastEnd.first.join(',') })
      await writeFileDurable(this.c.file, JSON.stringify(r))
        .catch(err => { this.c.log.warn('could not record the scrub', { error: String(err) }) })
      const everyCopy = r.unrepaired.filter(u => u.everyCopy === true)
      if (everyCopy.length > 0 || (r.sound?.length ?? 0) > 0) await this.c.unsound?.(everyCopy, r.sound ?? [], r.startedAt).catch(err => { this.c.log.warn('could not record the objects damaged on every copy', { error: String(err) }) })
      return r
    })().finally(() => {
      this.current = null
      this.progress = null
      this.plan()
    })
    this.current = { scrubber, done }
    return await done
  }
}

/** a scrub record read back from disk, if it is one (what the API shows of it must not fail on a damaged file) */
export function asScrubReport (x: unknown): ScrubReport | null {
  if (x == null || typeof x !== 'object') return null
  const r = x as Record<string, unknown>
  const times = ['startedAt', 'finishedAt'].every(k => Number.isFinite(r[k]) && !Number.isNaN(new Date(r[k] as number).getTime()))
  const counts = ['objects', 'total', 'bytes', 'bad', 'repaired'].every(k => Number.isSafeInteger(r[k]) && (r[k] as number) >= 0)
  const ok = times && counts && Array.isArray(r.unrepaired) && r.layers != null && typeof r.layers === 'object' && !Array.isArray(r.layers)
  return ok ? x as ScrubReport : null
}
