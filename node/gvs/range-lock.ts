// Locks on ranges of one object, so that requests to different blocks of an object run
// at once (nbdcopy and a guest keep dozens of requests in flight, mostly in the same
// 4 MiB object) while requests to the same blocks keep their order: a read shares its
// blocks with other reads, a write has its blocks to itself. Waiting is first come,
// first served: an operation waits for every earlier one it conflicts with, so a
// stream of reads cannot starve a write, and two writes to one block land in the
// order they were issued.

/** a held or waiting range: blocks [start, end) of one key */
export interface Span { start: number, end: number, exclusive: boolean }

/** whether two spans may not run at once: they overlap and one of them writes */
export const conflicts = (a: Span, b: Span): boolean =>
  (a.exclusive || b.exclusive) && a.start < b.end && b.start < a.end

interface Entry extends Span { done: Promise<void> }

export class RangeLock {
  private readonly keys = new Map<string, Entry[]>()

  /** runs fn once no earlier conflicting span of `key` is held or waiting */
  async run<T> (key: string, span: Span, fn: () => Promise<T>): Promise<T> {
    let list = this.keys.get(key)
    if (list == null) { list = []; this.keys.set(key, list) }
    const before = list.filter(e => conflicts(e, span)).map(async e => { await e.done })
    let release!: () => void
    const entry: Entry = { ...span, done: new Promise<void>(resolve => { release = resolve }) }
    list.push(entry)
    try {
      if (before.length > 0) await Promise.all(before)
      return await fn()
    } finally {
      const l = this.keys.get(key)
      if (l != null) {
        const i = l.indexOf(entry)
        if (i >= 0) l.splice(i, 1)
        if (l.length === 0) this.keys.delete(key)
      }
      release()
    }
  }

  /** spans held or waiting, over all keys (for tests) */
  get size (): number {
    let n = 0
    for (const l of this.keys.values()) n += l.length
    return n
  }
}
