// When the volume store's background pass (repairs, frees, folds: service.ts
// reconcile) runs: every `periodMs`, and `delayMs` after a change of the live members
// (sooner wins). A change while a pass runs has another follow it, since that pass
// planned over the members as they were. A `periodMs` of 0 runs nothing at all.
export interface BackgroundPassInit {
  periodMs: number
  /** after a membership change (a death found, a node back) */
  delayMs: number
  run: () => Promise<void>
  failed: (err: unknown) => void
}

export class BackgroundPass {
  private readonly init: BackgroundPassInit
  private timer: NodeJS.Timeout | null = null
  private dueAt = Infinity
  private running: Promise<void> | null = null
  private again = false
  private started = false

  constructor (init: BackgroundPassInit) { this.init = init }

  start (): void {
    this.started = true
    this.wake(Math.min(this.init.periodMs, this.init.delayMs))
  }

  /** stops the timer and waits for a pass that runs */
  async stop (): Promise<void> {
    this.started = false
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = null
    await this.running
  }

  /** the live members changed: a pass soon, or right after the one that runs */
  changed (): void {
    if (this.running != null) this.again = true
    this.wake(this.init.delayMs)
  }

  /** runs a pass in `ms` (or sooner, if one is due sooner) */
  private wake (ms: number): void {
    if (!this.started || !(ms >= 0) || !(this.init.periodMs > 0)) return
    const at = Date.now() + ms
    if (this.running != null || at >= this.dueAt) return
    if (this.timer != null) clearTimeout(this.timer)
    this.dueAt = at
    this.timer = setTimeout(() => {
      this.timer = null
      this.dueAt = Infinity
      this.running = this.init.run().catch(this.init.failed)
      void this.running.finally(() => {
        this.running = null
        if (this.again) { this.again = false; this.wake(this.init.delayMs) } else this.wake(this.init.periodMs)
      })
    }, ms)
    this.timer.unref?.()
  }
}
