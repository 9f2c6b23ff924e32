// The object store's background writeback (object-store.ts). A writer that never
// flushes (a copy without --flush, a guest whose disk cache is `unsafe`) would leave
// every object it wrote named in the write-intent log until the store stops, and the
// start after a crash reads each of them in full (ObjectStore.recover). So when
// something waits for an fsync and no flush ran for `everyMs`, the store flushes by
// itself and the objects it synced leave the log. An fsync error it meets is owed to
// the next flush of the object's volume (store-syncs.ts), as a disk reports a failed
// writeback to the next fsync.
import type { Logger } from '../log.ts'

export const WRITEBACK_MS = 10_000

export class Writeback {
  private readonly due: () => boolean
  private readonly run: () => Promise<void>
  private readonly log: Pick<Logger, 'warn'>
  private readonly everyMs: number
  /** the last run failed: the next failure is not logged again */
  private failing = false
  private timer?: NodeJS.Timeout
  private lastFlush = performance.now()
  private running = false

  /** due: whether anything waits for an fsync; run: the flush; everyMs 0: never */
  constructor (due: () => boolean, run: () => Promise<void>, log: Pick<Logger, 'warn'>, everyMs = WRITEBACK_MS) {
    this.due = due
    this.run = run
    this.log = log
    this.everyMs = everyMs
  }

  start (): void {
    if (this.everyMs <= 0 || this.timer != null) return
    // checked often, so the wait after the last flush is about `everyMs`, not up to twice it
    this.timer = setInterval(() => { void this.tick() }, Math.min(this.everyMs, 1000))
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** a flush ran (a writer's, or this one's) */
  flushed (): void { this.lastFlush = performance.now() }

  /** flushes if something waits and no flush ran for a period */
  async tick (): Promise<void> {
    if (this.running || performance.now() - this.lastFlush < this.everyMs || !this.due()) return
    this.running = true
    try {
      await this.run()
      this.failing = false
    } catch (err) {
      // once per run of failures (a directory whose fsync keeps failing is tried each time)
      if (!this.failing) this.log.warn('a background flush failed: the next flush of the volume reports it', { err: (err as Error).message })
      this.failing = true
    } finally {
      this.running = false
      this.flushed()
    }
  }
}
