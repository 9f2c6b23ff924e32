// The bytes of NBD requests in flight over all sessions of one server. Each session
// bounds its own (maxInFlightBytes), but connections are many (a disk per VM, nbdcopy's
// several): without a shared bound, N clients that send large reads and never read
// the replies held N times a session's bound. A request takes its bytes before it costs
// memory (its payload read, its read served), in arrival order: the first waiter is
// admitted as soon as it fits, and nobody behind it passes it (else small requests
// kept a large one waiting for ever). Nothing in flight at all: the first goes,
// whatever its size. So at most the budget plus one request are held. A session that
// holds bytes others wait for and makes no progress is cut off (session.ts, stallMs).
interface Waiter { n: number, admit: () => void }

export class InFlightBudget {
  readonly max: number
  private used = 0
  private readonly queue: Waiter[] = []

  constructor (max: number) {
    this.max = max
  }

  get bytes (): number { return this.used }

  /** requests waiting for bytes: someone is held up by what is in flight */
  get waiting (): number { return this.queue.length }

  private fits (n: number): boolean { return this.used === 0 || this.used + n <= this.max }

  /**
   * Takes `n` bytes, at once or in turn. Resolves true once taken, false when `gone`
   * resolved first (the client went; nothing is taken then).
   */
  async take (n: number, gone: Promise<void>): Promise<boolean> {
    if (this.queue.length === 0 && this.fits(n)) {
      this.used += n
      return true
    }
    let admitted = false
    let w: Waiter | undefined
    const turn = new Promise<void>(resolve => {
      w = { n, admit: () => { admitted = true; resolve() } }
      this.queue.push(w)
    })
    await Promise.race([turn, gone])
    if (admitted) return true
    this.queue.splice(this.queue.indexOf(w!), 1)
    this.admit()
    return false
  }

  give (n: number): void {
    this.used -= n
    this.admit()
  }

  /** admits waiters from the head while they fit */
  private admit (): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.n)) {
      const w = this.queue.shift()!
      this.used += w.n
      w.admit()
    }
  }
}
