// A copy here found damaged (a read's checksum, a failed fsync: the store's 'damaged'
// event) is rewritten from a sound copy soon (healCopy, scrub.ts), not at the next
// scrub; the request that found it has already gone to another copy (service.ts). One
// with a block damaged on every copy is recorded in the document, as a scrub records it.
import type { Logger } from '../log.ts'
import { healCopyDetail, type ScrubberComponents } from './scrub.ts'

/** how long after a damaged copy is reported it is rewritten (the reporting request fails over first) */
const HEAL_DELAY_MS = 200

export interface DamageHealsComponents extends Pick<ScrubberComponents, 'transport' | 'sources'> {
  /** the store's object size: a copy damaged everywhere is assembled of the copies' sound blocks */
  objectSize?: number
  log: Logger
  /** whether the service runs: a report while it stops is left to repair and scrub */
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

  constructor (components: DamageHealsComponents) { this.c = components }

  /**
   * Rewrites the copy soon. One heal per object at a time; a heal that finds no sound
   * copy is logged and left to repair and scrub.
   */
  soon (layer: string, index: number): void {
    const key = `${layer}/${index}`
    if (!this.c.started() || this.healing.has(key)) return
    this.healing.add(key)
    const log = this.c.log
    const timer = setTimeout(() => {
      void healCopyDetail({ transport: this.c.transport, sources: this.c.sources, objectSize: this.c.objectSize }, layer, index)
        .then(async ({ error: why, everyCopy }) => {
          if (why == null) log.info('a damaged copy was rewritten from a sound one', { volume: layer, index })
          else log.warn('a damaged copy could not be rewritten yet (repair and scrub try again)', { volume: layer, index, why })
          if (everyCopy) await this.c.unsound?.([key]).catch(err => { log.warn('could not record an object damaged on every copy', { volume: layer, index, err: (err as Error).message }) })
        }, err => { log.warn('healing a damaged copy failed', { volume: layer, index, err: (err as Error).message }) })
        .finally(() => { this.healing.delete(key) })
    }, HEAL_DELAY_MS)
    timer.unref()
  }
}
