// When the volume store's background pass (repairs, frees, folds: service.ts
// reconcile) runs: every `periodMs`, and `delayMs` after a change of the live members
// (sooner wins). A change while a pass runs has another follow it, since that pass
// planned over the members as they were. A `periodMs` of 0 runs nothing at all. A
// pass that left copies unmade (a node back whose volume store was not serving yet: a
// tester saw `degraded` for the 30 s to the next pass) has the next one sooner, after
// `retryMs`, doubling while passes keep failing, up to `periodMs`.
export interface BackgroundPassInit {
  periodMs: number
  /** after a membership change (a death found, a node back) */
  delayMs: number
  /** after a pass that left copies unmade (absent: the period) */
  retryMs?: number
  /** true: it left copies unmade, to be retried soon */
  run: () => Promise<boolean | undefined>
  failed: (err: unknown) => void
}

export class BackgroundPass {
  private readonly init: BackgroundPassInit
  private timer: NodeJS.Timeout | null = null
  private dueAt = Infinity
  private running: Promise<void> | null = null
  private again = false
  private started = false
  /** the wait after the next pass that fails (retryMs, doubled by each failing pass) */
  private retry = 0

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

  /** when the next pass is due after one that did (not) leave copies unmade */
  private retryIn (unmade: boolean): number {
    if (!unmade || this.init.retryMs == null) { this.retry = 0; return this.init.periodMs }
    this.retry = Math.min(this.init.periodMs, this.retry === 0 ? this.init.retryMs : this.retry * 2)
    return this.retry
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
      let unmade = false
      this.running = this.init.run().then(r => { unmade = r === true }, this.init.failed)
      void this.running.finally(() => {
        this.running = null
        const retryIn = this.retryIn(unmade)
        if (this.again) { this.again = false; this.wake(this.init.delayMs) } else this.wake(retryIn)
      })
    }, ms)
    this.timer.unref?.()
  }
}
