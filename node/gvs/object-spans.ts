// The spans of objects the object store (object-store.ts) holds: check blocks of one
// object, shared for reads and exclusive for writes (range-lock.ts), with a count per
// object of the exclusive ones held or waiting, so that a read takes its fast path
// (no lock at all) only where no write is.
import { RangeLock, type Span } from './range-lock.ts'

export class ObjectSpans {
  private readonly blockSize: number
  /** per object: requests to different blocks run at once, to the same blocks in order */
  private readonly ranges = new RangeLock()
  /** per object, its exclusive spans held or waiting: a read takes the fast path only where there are none */
  private readonly writers = new Map<string, number>()

  constructor (blockSize: number) { this.blockSize = blockSize }

  /** the check blocks under [offset, offset+length): shared for reads, exclusive for writes */
  span (offset: number, length: number, exclusive: boolean): Span {
    const start = Math.floor(offset / this.blockSize)
    return { start, end: Math.max(start + 1, Math.ceil((offset + length) / this.blockSize)), exclusive }
  }

  /** every block of an object: for whole-object reads, creation checks, removal */
  static whole (exclusive: boolean): Span { return { start: 0, end: Number.MAX_SAFE_INTEGER, exclusive } }

  /** whether an exclusive span of the object at `key` is held or waiting */
  written (key: string): boolean { return this.writers.has(key) }

  /** runs fn under a span of the object at `key`, counting the exclusive ones */
  async run<T> (key: string, span: Span, fn: () => Promise<T>): Promise<T> {
    if (!span.exclusive) return await this.ranges.run(key, span, fn)
    // counted before the span is taken (no await in between), uncounted after it ends
    this.writers.set(key, (this.writers.get(key) ?? 0) + 1)
    try {
      return await this.ranges.run(key, span, fn)
    } finally {
      const left = this.writers.get(key)! - 1
      if (left === 0) this.writers.delete(key)
      else this.writers.set(key, left)
    }
  }
}
