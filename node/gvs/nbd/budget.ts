// The bytes of NBD requests in flight over all sessions of one server. Each session
// bounds its own (maxInFlightBytes), but connections are many (a disk per VM, nbdcopy's
// several): without a shared bound, N clients that send large reads and never read
// the replies held N times a session's bound. A request waits for its bytes before it
// costs memory (its payload read, its read served), unless nothing at all is in flight
// (someone must always make progress): at most the budget plus one request are held. A
// client that stops reading holds its part until its session cuts it off (stallMs).
export class InFlightBudget {
  readonly max: number
  private used = 0
  private readonly waiters = new Set<() => void>()

  constructor (max: number) {
    this.max = max
  }

  get bytes (): number { return this.used }

  /** takes `n` bytes when a request of that size may start now (within the budget, or nothing else in flight) */
  tryTake (n: number): boolean {
    if (this.used !== 0 && this.used + n > this.max) return false
    this.used += n
    return true
  }

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
