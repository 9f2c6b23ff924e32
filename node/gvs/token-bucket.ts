// A token bucket: at most `rate` bytes per second on average, with bursts of at most
// `burst` bytes. Repair takes its copies' bytes from one, so that copying objects to
// new holders leaves the disks and links most of their time for the VMs' own I/O.
// The arithmetic is a pure function of the time (wait); TokenBucket.take is the shell
// that sleeps.
import { setTimeout as sleep } from 'node:timers/promises'

export interface BucketState { tokens: number, at: number }

/**
 * Takes n bytes from a bucket that held `s.tokens` at time `s.at` (ms): the state after,
 * and how long to wait before using them (the bucket may go into debt, which later
 * takers wait out, so a request larger than the burst still passes, once).
 */
export function take (s: BucketState, n: number, now: number, rate: number, burst: number): { state: BucketState, waitMs: number } {
  if (!(rate > 0) || !Number.isFinite(rate)) return { state: { tokens: burst, at: now }, waitMs: 0 }
  const refilled = Math.min(burst, s.tokens + (now - s.at) * rate / 1000)
  const left = refilled - n
  return { state: { tokens: left, at: now }, waitMs: left >= 0 ? 0 : -left / rate * 1000 }
}

export interface TokenBucketInit {
  /** bytes per second; 0 or Infinity: no limit */
  rate: number
  /** bytes that may go at once after a quiet spell; default one second's worth */
  burst?: number
}

export class TokenBucket {
  readonly rate: number
  readonly burst: number
  private state: BucketState
  private readonly now: () => number

  constructor (init: TokenBucketInit, now: () => number = () => performance.now()) {
    if (!(init.rate >= 0)) throw new Error(`token bucket rate ${init.rate} is not a non-negative number of bytes per second`)
    this.rate = init.rate
    this.burst = init.burst ?? (Number.isFinite(init.rate) ? init.rate : 0)
    this.now = now
    this.state = { tokens: this.burst, at: now() }
  }

  /** resolves once n bytes may go (at once when the bucket holds them) */
  async take (n: number, signal?: AbortSignal): Promise<void> {
    const r = take(this.state, n, this.now(), this.rate, this.burst)
    this.state = r.state
    if (r.waitMs > 0) await sleep(r.waitMs, undefined, { signal })
  }
}
