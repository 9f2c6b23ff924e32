// The spans of objects the object store (object-store.ts) holds: check blocks of one
// object, shared for reads and exclusive for writes (range-lock.ts), with a count per
// object of the exclusive ones held or waiting, so that a read takes its fast path
// (no lock at all) only where no write is. Above them, a volume's directory as a
// whole: its removal waits for every request under it that began before, and holds
// back every one that comes while it runs (a fold's or a repair's copy landing in a
// directory being removed left it not empty, and the removal failed).
import { RangeLock, type Span } from './range-lock.ts'

interface DirRequests {
  /** requests under the directory that began and have not ended */
  running: number
  /** a removal of the directory waiting for them or running: later requests wait for it */
  removal: Promise<void> | null
  /** called when `running` falls to 0 while a removal waits */
  drained: (() => void) | null
}

export class ObjectSpans {
  private readonly blockSize: number
  /** per object: requests to different blocks run at once, to the same blocks in order */
  private readonly ranges = new RangeLock()
  /** per object, its exclusive spans held or waiting: a read takes the fast path only where there are none */
  private readonly writers = new Map<string, number>()
  /** per volume directory with a request or a removal in progress */
  private readonly dirs = new Map<string, DirRequests>()

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

  /** runs fn under a span of the object at `p.data`, in the volume directory `p.dir`, counting the exclusive ones */
  async run<T> (p: { dir: string, data: string }, span: Span, fn: () => Promise<T>): Promise<T> {
    // an exclusive span is counted before anything is waited for (a removal ahead of it,
    // its range), uncounted after it ends: a read behind it must not take the fast path
    if (span.exclusive) this.writers.set(p.data, (this.writers.get(p.data) ?? 0) + 1)
    try {
      let d = this.dirs.get(p.dir)
      // a request that comes while the directory is removed runs after the removal (on what is left: nothing)
      while (d?.removal != null) {
        await d.removal
        d = this.dirs.get(p.dir)
      }
      if (d == null) this.dirs.set(p.dir, d = { running: 0, removal: null, drained: null })
      d.running++
      try {
        // taken before any await when no removal is in the way: overlapping requests run in the order they came
        return await this.ranges.run(p.data, span, fn)
      } finally {
        if (--d.running === 0) {
          if (d.drained != null) d.drained()
          else if (d.removal == null) this.dirs.delete(p.dir)
        }
      }
    } finally {
      if (span.exclusive) {
        const left = this.writers.get(p.data)! - 1
        if (left === 0) this.writers.delete(p.data)
        else this.writers.set(p.data, left)
      }
    }
  }

  /**
   * Runs `fn` (the removal of the volume directory `dir`) once every request under it
   * that began before has ended, holding back those that come meanwhile until it ends.
   */
  async removing<T> (dir: string, fn: () => Promise<T>): Promise<T> {
    let d = this.dirs.get(dir)
    while (d?.removal != null) {
      await d.removal
      d = this.dirs.get(dir)
    }
    if (d == null) this.dirs.set(dir, d = { running: 0, removal: null, drained: null })
    const entry = d
    let done!: () => void
    entry.removal = new Promise(resolve => { done = resolve })
    try {
      if (entry.running > 0) await new Promise<void>(resolve => { entry.drained = resolve })
      entry.drained = null
      return await fn()
    } finally {
      entry.removal = null
      if (entry.running === 0) this.dirs.delete(dir)
      done()
    }
  }
}
