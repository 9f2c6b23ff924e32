// What all of a node's VM disk caches (local-cache.ts) may take together: bytes of disk
// (blocks ever written to a cache file count until that file is removed), index entries,
// and what they served since start. Past the budget the fullest cache starts again
// empty, at most every FULL_EVERY_MS.
import { statfs } from 'node:fs/promises'

export interface CacheStats { hits: number, misses: number, damaged: number }

export const GiB = 2 ** 30
/** the index an object takes (its sums and flags, about 6 KiB): entries are bounded to one per MiB of budget */
const BUDGET_PER_OBJECT = 1024 * 1024
/** the least time between two emptyings for want of budget (CacheBudget.full) */
const FULL_EVERY_MS = 5000

/** the disk all of a node's caches may take and take, the objects they index, and what they served since start */
export class CacheBudget {
  limit: number
  used = 0
  objects = 0
  /** set while the disk is short of room: nothing new is cached */
  paused = false
  /** emptied caches' old files being removed */
  readonly removing = new Set<Promise<void>>()
  readonly stats: CacheStats = { hits: 0, misses: 0, damaged: 0 }
  /** told when blocks could not be cached for want of budget or index entries (LocalCaches empties the fullest cache) */
  onFull?: () => void
  private fullAt = -Infinity
  constructor (limit: number) { this.limit = limit }

  /**
   * The budget is spent: the fullest cache starts again, empty, so what is read and
   * written now can be cached (blocks a cache dropped, trimmed or rewritten elsewhere
   * keep their space until its file is emptied). At most once per FULL_EVERY_MS: the
   * emptied file's space comes back only once its removal ends.
   */
  full (): void {
    const now = performance.now()
    if (now - this.fullAt < FULL_EVERY_MS) return
    this.fullAt = now
    this.onFull?.()
  }

  /** a removal off the event loop, awaited by LocalCaches.removed (it never rejects) */
  track (removal: Promise<unknown>): void {
    const p = removal.then(() => {}, () => {})
    this.removing.add(p)
    void p.finally(() => { this.removing.delete(p) })
  }
  get maxObjects (): number { return Math.max(64, Math.floor(this.limit / BUDGET_PER_OBJECT)) }
}

/** without a setting: 8 GiB, but at most a tenth of the free space where the cache lives (none if that cannot be read) */
export async function defaultCacheBytes (dir: string): Promise<number> {
  try {
    const fs = await statfs(dir)
    return Math.min(8 * GiB, Math.floor(fs.bavail * fs.bsize / 10))
  } catch { return 0 }
}
