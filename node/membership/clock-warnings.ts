// The log's word on a member's clock: a warning once its offset has stayed past the
// bound for CLOCK_STEADY_MS, as health says it. The offset is estimated from heartbeat
// frames, and frames held up for a few seconds (a loaded machine, a stalled loop) read
// as a clock behind: a tester saw the warning under load with every clock in step.
import { CLOCK_STEADY_MS } from './views.ts'

export interface ClockWarningsInit {
  /** the member's offset now (theirs minus ours, ms) and whether it is past the bound */
  offsetOf: (peer: string) => { offsetMs: number, over: boolean } | undefined
  warn: (peer: string, offsetMs: number) => void
  /** the member's clock came back within the bound after a warning */
  back: (peer: string, offsetMs: number) => void
  steadyMs?: number
}

export class ClockWarnings {
  private readonly init: ClockWarningsInit
  /** warnings due once a crossing has lasted, by peer */
  private readonly due = new Map<string, NodeJS.Timeout>()
  private readonly warned = new Set<string>()

  constructor (init: ClockWarningsInit) {
    this.init = init
  }

  /** the detector's `clock-offset` event: the member's offset crossed the bound, either way */
  crossed (peer: string, offsetMs: number, over: boolean): void {
    if (over) {
      if (this.due.has(peer) || this.warned.has(peer)) return
      this.due.set(peer, setTimeout(() => {
        this.due.delete(peer)
        const now = this.init.offsetOf(peer)
        if (now?.over !== true) return
        this.warned.add(peer)
        this.init.warn(peer, now.offsetMs)
      }, this.init.steadyMs ?? CLOCK_STEADY_MS).unref())
      return
    }
    clearTimeout(this.due.get(peer))
    this.due.delete(peer)
    if (this.warned.delete(peer)) this.init.back(peer, offsetMs)
  }

  stop (): void {
    for (const t of this.due.values()) clearTimeout(t)
    this.due.clear()
  }
}
