// A local copy of the blocks a node's writer of a volume wrote or read, so that the
// node a VM runs on reads its disk at local speed, not a third of it (with R = 2 on 3
// nodes) through the network and both ends' ciphers. Longhorn calls this data
// locality; here it is a cache beside the replicas, never one of them: it counts
// nothing towards R, is never flushed, and a restart starts it empty.
//
// One cache per volume and writer epoch on a node (`<data-dir>/gvs/cache/`, one sparse
// file each, at the volume's own offsets), shared by the sessions of that epoch there.
// A cached block is served only while it is known to hold what the replicas hold:
// - every write of the volume at that epoch on this node goes through it (it is in the
//   device the exports hand out: cached-volume.ts), and updates or drops its blocks;
// - whatever may let another writer in drops it whole: another node claiming the
//   volume (writers.ts), a fence at a newer epoch, a change of the live nodes (a
//   partition), the epoch's device being dropped;
// - each block carries the CRC-32 of what was put there, checked on every read: a
//   block that fails is dropped and read from the replicas, never served.
// The cache file is read and written in place, without awaiting: its blocks and their
// checksums can never be seen half-updated. All of a node's caches together keep at
// most `budget` bytes; past it, new blocks are simply not cached.
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync, unlinkSync, writeSync } from 'node:fs'
import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { CHECK_BLOCK } from './checksums.ts'
import { OBJECT_SIZE } from './placement.ts'
import { readBuffers } from './buffer-pool.ts'

/** what one object's blocks hold in the cache: a checksum per block, 0/1 whether it is cached */
interface ObjectBlocks { sums: Uint32Array, cached: Uint8Array, count: number }

export interface CacheStats { hits: number, misses: number, damaged: number, drops: number }

/** the bytes all of a node's caches may hold and how many they do, and what they served since start */
export class CacheBudget {
  limit: number
  used = 0
  readonly stats: CacheStats = { hits: 0, misses: 0, damaged: 0, drops: 0 }
  constructor (limit: number) { this.limit = limit }
}

const GiB = 2 ** 30

/** without a setting: 8 GiB, but at most a tenth of the free space where the cache lives (none if that cannot be read) */
export async function defaultCacheBytes (dir: string): Promise<number> {
  try {
    const fs = await statfs(dir)
    return Math.min(8 * GiB, Math.floor(fs.bavail * fs.bsize / 10))
  } catch { return 0 }
}

export interface VolumeCacheInit {
  file: string
  volume: string
  epoch: number
  objectSize?: number
  blockSize?: number
}

export class VolumeCache {
  readonly volume: string
  readonly epoch: number
  private readonly file: string
  private readonly budget: CacheBudget
  private readonly objectSize: number
  private readonly blockSize: number
  private readonly perObject: number
  private fd: number | null = null
  private readonly objects = new Map<number, ObjectBlocks>()
  /** writes in flight, and writes started, per object: a fill must not land over either */
  private readonly busy = new Map<number, number>()
  private readonly started = new Map<number, number>()
  /** bumped at every drop: a fill planned before one is stale */
  private era = 0
  private closed = false
  /** the bytes this cache holds */
  private bytes = 0
  /** counted for the node (CacheBudget.stats) */
  private readonly stats: CacheStats

  constructor (budget: CacheBudget, init: VolumeCacheInit) {
    this.budget = budget
    this.stats = budget.stats
    this.file = init.file
    this.volume = init.volume
    this.epoch = init.epoch
    this.objectSize = init.objectSize ?? OBJECT_SIZE
    this.blockSize = init.blockSize ?? CHECK_BLOCK
    this.perObject = this.objectSize / this.blockSize
  }

  /**
   * The bytes [offset, offset+length) if every block under them is cached and sound;
   * null otherwise (a block that fails its checksum is dropped first).
   */
  read (offset: number, length: number): Uint8Array | null {
    if (this.fd == null || length === 0) { this.stats.misses++; return null }
    const bs = this.blockSize
    const first = Math.floor(offset / bs)
    const end = Math.ceil((offset + length) / bs)
    for (let b = first; b < end; b++) {
      const o = this.objects.get(Math.floor(b / this.perObject))
      if (o?.cached[b % this.perObject] !== 1) { this.stats.misses++; return null }
    }
    // a reused buffer (the NBD session gives it back once sent): reading into fresh
    // memory costs a page fault per page, more than the read itself (buffer-pool.ts)
    const buf = readBuffers.take((end - first) * bs)
    let done = 0
    try {
      while (done < buf.length) {
        const n = readSync(this.fd, buf, done, buf.length - done, first * bs + done)
        if (n === 0) break
        done += n
      }
    } catch {
      done = -1
    }
    if (done < buf.length) { readBuffers.give(buf); this.drop(); return null }
    let bad = false
    for (let b = first; b < end; b++) {
      const o = this.objects.get(Math.floor(b / this.perObject))!
      const at = (b - first) * bs
      if (crc32(buf.subarray(at, at + bs)) !== o.sums[b % this.perObject]) { this.forget(b); bad = true }
    }
    if (bad) { readBuffers.give(buf); this.stats.damaged++; this.stats.misses++; return null }
    this.stats.hits++
    const from = offset - first * bs
    return from === 0 && length === buf.length ? buf : buf.subarray(from, from + length)
  }

  /** a write (or zero) of [offset, offset+length) begins: the cache drops those blocks, and no fill lands there until it ended */
  beginWrite (offset: number, length: number): void {
    for (const i of this.objectsOf(offset, length)) {
      this.busy.set(i, (this.busy.get(i) ?? 0) + 1)
      this.started.set(i, (this.started.get(i) ?? 0) + 1)
    }
    this.forgetRange(offset, length)
  }

  /** the write ended; `data`: what the replicas now hold there (absent: it failed or zeroed, the blocks stay dropped) */
  endWrite (offset: number, length: number, data?: Uint8Array): void {
    for (const i of this.objectsOf(offset, length)) {
      const n = (this.busy.get(i) ?? 1) - 1
      if (n === 0) this.busy.delete(i); else this.busy.set(i, n)
    }
    if (data != null) this.put(offset, data)
  }

  /** before a read from the replicas: what must still hold for its data to be cached after (null: it will not be) */
  planFill (offset: number, length: number): string | null {
    if (this.closed) return null
    const marks: number[] = [this.era]
    for (const i of this.objectsOf(offset, length)) {
      if ((this.busy.get(i) ?? 0) > 0) return null
      marks.push(this.started.get(i) ?? 0)
    }
    return marks.join()
  }

  /** caches a read's data if no write began or ran on its objects since planFill */
  fill (plan: string | null, offset: number, data: Uint8Array): void {
    if (plan == null || plan !== this.planFill(offset, data.length)) return
    this.put(offset, data)
  }

  /** drops every block (the file is emptied, its space given back); the cache goes on, empty */
  drop (): void {
    this.era++
    this.stats.drops++
    this.budget.used -= this.bytes
    this.bytes = 0
    this.objects.clear()
    if (this.fd != null) try { ftruncateSync(this.fd, 0) } catch {}
  }

  /** drops everything and removes the file: nothing is cached any more */
  close (): void {
    if (this.closed) return
    this.drop()
    this.closed = true
    if (this.fd != null) {
      try { closeSync(this.fd) } catch {}
      this.fd = null
      try { unlinkSync(this.file) } catch {}
    }
  }

  /** stores the whole blocks of data at offset (partial ones at its ends stay as they are: dropped, by beginWrite) */
  private put (offset: number, data: Uint8Array): void {
    if (this.closed) return
    const bs = this.blockSize
    const first = Math.ceil(offset / bs)
    const end = Math.floor((offset + data.length) / bs)
    if (end <= first) return
    let last = first
    // only as many blocks as the budget allows, from the start
    let fresh = 0
    for (; last < end; last++) {
      if (this.objects.get(Math.floor(last / this.perObject))?.cached[last % this.perObject] !== 1) {
        if (this.budget.used + (fresh + 1) * bs > this.budget.limit) break
        fresh++
      }
    }
    if (last === first) return
    const from = first * bs - offset
    const bytes = data.subarray(from, from + (last - first) * bs)
    try {
      this.fd ??= openSync(this.file, 'w+', 0o600)
      let done = 0
      while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, first * bs + done)
    } catch {
      // a full or failing disk: the cache gives up what it holds, the I/O itself went to the replicas
      this.drop()
      return
    }
    for (let b = first; b < last; b++) {
      const i = Math.floor(b / this.perObject)
      let o = this.objects.get(i)
      if (o == null) { o = { sums: new Uint32Array(this.perObject), cached: new Uint8Array(this.perObject), count: 0 }; this.objects.set(i, o) }
      const at = (b - first) * bs
      o.sums[b % this.perObject] = crc32(bytes.subarray(at, at + bs))
      if (o.cached[b % this.perObject] !== 1) {
        o.cached[b % this.perObject] = 1
        o.count++
        this.bytes += bs
        this.budget.used += bs
      }
    }
  }

  private forgetRange (offset: number, length: number): void {
    const bs = this.blockSize
    const end = Math.ceil((offset + length) / bs)
    for (let b = Math.floor(offset / bs); b < end; b++) this.forget(b)
  }

  private forget (b: number): void {
    const i = Math.floor(b / this.perObject)
    const o = this.objects.get(i)
    if (o?.cached[b % this.perObject] !== 1) return
    o.cached[b % this.perObject] = 0
    this.bytes -= this.blockSize
    this.budget.used -= this.blockSize
    if (--o.count === 0) this.objects.delete(i)
  }

  private objectsOf (offset: number, length: number): number[] {
    const out: number[] = []
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.objectSize)
    for (let i = Math.floor(offset / this.objectSize); i <= last; i++) out.push(i)
    return out
  }
}

/**
 * A node's caches: one per volume id and writer epoch, under `dir`, which is emptied
 * at start (a cache never outlives the run that filled it: another node may have
 * written the volume meanwhile).
 */
export class LocalCaches {
  readonly budget: CacheBudget
  private readonly dir: string
  private readonly caches = new Map<string, VolumeCache>()
  private seq = 0
  private ready = false

  constructor (init: { dir: string, budgetBytes: number }) {
    this.dir = init.dir
    this.budget = new CacheBudget(init.budgetBytes)
  }

  get enabled (): boolean { return this.budget.limit > 0 }

  /** empties the directory (what a run that crashed left there) */
  start (): void {
    rmSync(this.dir, { recursive: true, force: true })
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    this.ready = true
  }

  /** the cache of volume `id` at `epoch` (made on first use), or null when caching is off */
  of (id: string, epoch: number): VolumeCache | null {
    if (!this.enabled) return null
    const key = `${id}#${epoch}`
    let c = this.caches.get(key)
    if (c == null) {
      if (!this.ready) this.start()
      c = new VolumeCache(this.budget, { file: join(this.dir, `${this.seq++}.cache`), volume: id, epoch })
      this.caches.set(key, c)
    }
    return c
  }

  /** drops the caches of a volume (all epochs, or those older than `below`) */
  dropVolume (id: string, below = Infinity): void {
    for (const [key, c] of this.caches) {
      if (c.volume !== id || c.epoch >= below) continue
      c.close()
      this.caches.delete(key)
    }
  }

  /** closes every cache not named in `keep` (`id#epoch`) */
  retain (keep: Set<string>): void {
    for (const [key, c] of this.caches) {
      if (keep.has(key)) continue
      c.close()
      this.caches.delete(key)
    }
  }

  /** empties every cache (the live nodes changed: a partition may have let another writer in) */
  dropAll (): void { for (const c of this.caches.values()) c.drop() }

  /** removes every cache and its file */
  close (): void {
    for (const c of this.caches.values()) c.close()
    this.caches.clear()
    if (this.ready) rmSync(this.dir, { recursive: true, force: true })
    this.ready = false
  }

  sizes (): { caches: number, bytes: number, limit: number } { return { caches: this.caches.size, bytes: this.budget.used, limit: this.budget.limit } }

  /** what the node's caches served since start */
  stats (): Readonly<CacheStats> { return this.budget.stats }
}
