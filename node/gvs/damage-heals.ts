// A copy here found damaged (a read's checksum, a failed fsync: the store's 'damaged'
// event) is rewritten from a sound copy soon (healCopy, scrub.ts), not at the next
// scrub; the request that found it has already gone to another copy (service.ts). One
// with a block damaged on every copy is recorded in the document, as a scrub records it.
import type { Logger } from '../log.ts'
import { healCopyDetail, type ScrubberComponents } from './scrub.ts'

/** how long after a damaged copy is reported it is rewritten (the reporting request fails over first) */
const HEAL_DELAY_MS = 200
/** a copy reported as the store started is tried this many times, this far apart (its sources may not be heard from yet) */
const START_TRIES = 6
const START_RETRY_MS = 5000

export interface DamageHealsComponents extends Pick<ScrubberComponents, 'transport' | 'sources'> {
  /** the store's object size: a copy damaged everywhere is assembled of the copies' sound blocks */
  objectSize?: number
  log: Logger
  /** whether the service runs: a report before it does waits for `running`, one while it stops is left to repair and scrub */
  started: () => boolean
  /**
   * a heal found some block damaged on every copy ("LAYER/INDEX"): recorded as a scrub's
   * finding is, so every node shows the volume degraded while its reads fail (EIO), not
   * only this node's status; a sound scrub clears it
   */
  unsound?: (objects: string[]) => Promise<void>
}

export class DamageHeals {
  private readonly c: DamageHealsComponents
  /** damaged copies being rewritten now (layer/index) */
  private readonly healing = new Set<string>()
  /** reported before the service ran: healed at `running` */
  private readonly deferred = new Map<string, [string, number]>()
  /** the service stops: a report is left to repair and scrub */
  private stopping = false

  constructor (components: DamageHealsComponents) { this.c = components }

  /** The service runs: the copies reported while it started are rewritten now. */
  running (): void {
    const waiting = [...this.deferred.values()]
    this.deferred.clear()
    for (const [layer, index] of waiting) this.soon(layer, index, START_TRIES)
  }

  /** The service stops: nothing more is deferred. */
  stop (): void {
    this.stopping = true
    this.deferred.clear()
  }

  /**
   * Rewrites the copy soon. One heal per object at a time; a heal that finds no sound
   * copy is logged and left to repair and scrub.
   */
  soon (layer: string, index: number, tries = 1): void {
    const key = `${layer}/${index}`
    // found as the store starts (an object a crash left written): healed once the service runs
    if (!this.c.started()) { if (!this.stopping) this.deferred.set(key, [layer, index]); return }
    if (this.healing.has(key)) return
    this.healing.add(key)
    const log = this.c.log
    let again = false
    const timer = setTimeout(() => {
      void healCopyDetail({ transport: this.c.transport, sources: this.c.sources, objectSize: this.c.objectSize }, layer, index)
        .then(async ({ error: why, everyCopy }) => {
          if (why == null) log.info('a damaged copy was rewritten from a sound one', { volume: layer, index })
          else if (tries > 1 && !everyCopy) again = true
          else log.warn('a damaged copy could not be rewritten yet (repair and scrub try again)', { volume: layer, index, why })
          if (everyCopy) await this.c.unsound?.([key]).catch(err => { log.warn('could not record an object damaged on every copy', { volume: layer, index, err: (err as Error).message }) })
        }, err => { log.warn('healing a damaged copy failed', { volume: layer, index, err: (err as Error).message }) })
        .finally(() => {
          this.healing.delete(key)
          if (!again) return
          // found at start, before the members were heard again: asked again a little later
          const later = setTimeout(() => { this.soon(layer, index, tries - 1) }, START_RETRY_MS)
          later.unref()
        })
    }, HEAL_DELAY_MS)
    timer.unref()
  }
}
