// Room kept free on a store's disk for what must still be written once object data has
// filled it, as Ceph keeps its full ratio: a new writer's epoch (a fence, a few bytes
// per volume) and the write-intent log. Without it, one node whose disk filled (with
// the copies a repair brought there) refused every new writer's fence, of every volume,
// whether it held copies of it or not, and no client could start writing anywhere.
// Object writes and copies in are refused (no-space) once they would eat into the
// reserve: the smaller of 64 MiB and 1 % of the file system, at least 1 MiB.
import { statfs } from 'node:fs/promises'
import { GvsError } from './errors.ts'

const MiB = 2 ** 20
/** how long a reading of the file system's free space holds (bytes admitted since are counted off it) */
const REFRESH_MS = 500

export interface FsSpace { bavail: number, bsize: number, blocks: number }

/** the reserve for a file system of this many bytes (pure) */
export const reserveFor = (total: number): number => Math.max(MiB, Math.min(64 * MiB, Math.floor(total / 100)))

/** bytes as KiB under 1 MiB, else MiB to a tenth, rounded down (never more than there is) */
const size = (b: number): string => b < MiB ? `${Math.floor(Math.max(0, b) / 1024)} KiB` : `${Math.floor(b / MiB * 10) / 10} MiB`

/**
 * Why `bytes` of object data do not fit, `free` being free on the file system and
 * `reserve` kept for writer epochs and the intent log (pure). The reserve is said as
 * part of what is free only when it is: with less free, the disk is short of the
 * reserve itself (it used to read "0 MiB free ..., 4 MiB of it kept").
 */
export function noRoomWhy (free: number, reserve: number, bytes: number): string {
  if (free <= 0) return `disk full (nothing free on the store's file system; object data stops ${size(reserve)} short of full, kept for writer epochs and the intent log)`
  if (free <= reserve) return `disk full (${size(free)} free on the store's file system, ${free < reserve ? 'less than' : 'just'} the ${size(reserve)} object data leaves free for writer epochs and the intent log)`
  return `disk full (${size(free)} free on the store's file system, ${size(reserve)} of it kept for writer epochs and the intent log: ${size(free - reserve)} left for object data, ${size(bytes)} asked)`
}

export class DiskRoom {
  private readonly dir: string
  private readonly stat: (dir: string) => Promise<FsSpace>
  private readonly now: () => number
  private reading: { at: number, free: number, reserve: number } | null = null
  private refreshing: Promise<void> | null = null
  /** bytes admitted since the last reading */
  private admitted = 0

  constructor (dir: string, opts: { statfs?: (dir: string) => Promise<FsSpace>, now?: () => number } = {}) {
    this.dir = dir
    this.stat = opts.statfs ?? (async d => await statfs(d))
    this.now = opts.now ?? Date.now
  }

  private async refresh (): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const s = await this.stat(this.dir)
        this.reading = { at: this.now(), free: s.bavail * s.bsize, reserve: reserveFor(s.blocks * s.bsize) }
        this.admitted = 0
      } catch {
        // the store's own writes say what is wrong with its disk; no reading, no refusal
        this.reading = null
      }
    })().finally(() => { this.refreshing = null })
    await this.refreshing
  }

  /**
   * Bytes object data may still take on the store's file system (what statfs gives an
   * unprivileged writer, less the reserve), as last read (at most REFRESH_MS old: an
   * older reading is read again in the background); null before the first reading.
   */
  available (): number | null {
    if (this.reading == null || this.now() - this.reading.at >= REFRESH_MS) void this.refresh()
    const r = this.reading
    return r == null ? null : Math.max(0, r.free - this.admitted - r.reserve)
  }

  /** resolves once the disk has been read (at least once) */
  async ready (): Promise<void> { if (this.reading == null) await this.refresh() }

  /** Throws no-space if `bytes` more of object data would eat into the reserve. */
  async admit (bytes: number, what: string): Promise<void> {
    if (this.reading == null || this.now() - this.reading.at >= REFRESH_MS) await this.refresh()
    const r = this.reading
    if (r == null) return
    const left = r.free - this.admitted
    if (left - bytes < r.reserve) {
      throw new GvsError('no-space', `${what}: ${noRoomWhy(left, r.reserve, bytes)}`)
    }
    this.admitted += bytes
  }
}
