// The bytes of NBD requests in flight over all sessions of one server. Each session
// bounds its own (maxInFlightBytes), but connections are many (a disk per VM, nbdcopy's
// several): without a shared bound, N clients that send large reads and never read
// the replies held N times a session's bound. A session waits while the budget is
// spent, unless nothing at all is in flight (someone must always make progress).
export class InFlightBudget {
  readonly max: number
  private used = 0
  private readonly waiters = new Set<() => void>()

  constructor (max: number) {
    this.max = max
  }

  get bytes (): number { return this.used }

  /** spent: a session reads no further request until some bytes come back */
  get spent (): boolean { return this.used > 0 && this.used >= this.max }

  take (n: number): void { this.used += n }

  give (n: number): void {
    this.used -= n
    if (this.waiters.size === 0) return
    const all = [...this.waiters]
    this.waiters.clear()
    for (const w of all) w()
  }

  /** resolves at the next give (whoever gives) */
  async next (): Promise<void> {
    await new Promise<void>(resolve => { this.waiters.add(resolve) })
  }
}
