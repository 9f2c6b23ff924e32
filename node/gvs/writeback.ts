// The object store's background writeback (object-store.ts). A writer that never
// flushes (a copy without --flush, a guest whose disk cache is `unsafe`) would leave
// every object it wrote named in the write-intent log until the store stops, and the
// start after a crash reads each of them in full (ObjectStore.recover). So when
// something waits for an fsync and no flush ran for `everyMs`, the store flushes by
// itself and the objects it synced leave the log. An fsync error it meets is owed to
// the next flush of the object's volume (store-syncs.ts), as a disk reports a failed
// writeback to the next fsync.
export const WRITEBACK_MS = 10_000

export class Writeback {
  private readonly due: () => boolean
  private readonly run: () => Promise<void>
  private readonly everyMs: number
  private timer?: NodeJS.Timeout
  private lastFlush = performance.now()
  private running = false

  /** due: whether anything waits for an fsync; run: the flush; everyMs 0: never */
  constructor (due: () => boolean, run: () => Promise<void>, everyMs = WRITEBACK_MS) {
    this.due = due
    this.run = run
    this.everyMs = everyMs
  }

  start (): void {
    if (this.everyMs <= 0 || this.timer != null) return
    this.timer = setInterval(() => { void this.tick() }, this.everyMs)
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
    try { await this.run() } finally {
      this.running = false
      this.flushed()
    }
  }
}
