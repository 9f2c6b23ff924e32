// What the volume store holds on this node's disk (its objects with their side files,
// epochs and logs, and the VM disk cache), measured by walking its directories now and
// then: the advert's free disk counts it off the capacity given (`--capacity disk=`),
// which said 4.0 GiB free of 4.0 GiB while 560 MiB of copies were held there.
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'

/** how often the store's directories are walked again, at least */
export const USAGE_EVERY_MS = 30_000
/** and at most one part in this of the time goes to walking (a large store's walk lstat()s every object file) */
const WALK_SHARE = 20

/** when the next walk starts after one that took `tookMs` (pure) */
export const nextWalkIn = (everyMs: number, tookMs: number): number => Math.max(everyMs, WALK_SHARE * tookMs)

/** bytes the files under `dir` take on disk (allocated blocks: a sparse object counts what it holds); 0 when it is absent */
export async function bytesUnder (dir: string): Promise<number> {
  let names: string[]
  try { names = await readdir(dir) } catch { return 0 }
  let total = 0
  for (const n of names) {
    const p = join(dir, n)
    try {
      const s = await lstat(p)
      total += s.isDirectory() ? await bytesUnder(p) : s.blocks * 512
    } catch { /* gone meanwhile */ }
  }
  return total
}

export class StoreUsage {
  private readonly dirs: readonly string[]
  private readonly everyMs: number
  /** called when a measure differs from the last (the advert is sent again) */
  private readonly changed: () => void
  private last: number | null = null
  private timer: NodeJS.Timeout | null = null
  private measuring: Promise<void> | null = null
  private stopped = false

  constructor (dirs: readonly string[], changed: () => void, everyMs = USAGE_EVERY_MS) {
    this.dirs = dirs
    this.changed = changed
    this.everyMs = everyMs
  }

  /** bytes held, as last measured (null before the first measure) */
  bytes (): number | null { return this.last }

  /** measures now (one walk at a time) */
  async measure (): Promise<void> {
    this.measuring ??= (async () => {
      let total = 0
      for (const d of this.dirs) total += await bytesUnder(d)
      // an advert for each change of a mebibyte or more, not for every log append
      const moved = this.last == null || Math.abs(total - this.last) >= 2 ** 20
      this.last = total
      if (moved) this.changed()
    })().finally(() => { this.measuring = null })
    await this.measuring
  }

  start (): void {
    this.stopped = false
    const walk = (): void => {
      const t0 = Date.now()
      void this.measure().finally(() => {
        if (this.stopped) return
        this.timer = setTimeout(walk, nextWalkIn(this.everyMs, Date.now() - t0))
        this.timer.unref()
      })
    }
    walk()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = null
    await this.measuring
  }
}
