// A local copy of the blocks a node's writer of a volume wrote or read, so that the
// node a VM runs on reads its disk at local speed, not a third of it (with R = 2 on 3
// nodes) through the network and both ends' ciphers. Longhorn calls this data
// locality; here it is a cache beside the replicas, never one of them: it counts
// nothing towards R, is never flushed, and a restart starts it empty.
//
// One cache per volume and writer epoch on a node (`<data-dir>/gvs-cache/`, one sparse
// file each, at the volume's own offsets), shared by the sessions of that epoch there.
// A cached block is served only while it is known to hold what the replicas hold:
// - it is used only while a session on this node holds the volume at that epoch (a
//   VM's disk, or a plain export's writer whose claim passed: writers.ts), so every
//   other writer must ask this node first or be a second writer, which the grid
//   refuses anyway; every write of that epoch here goes through it (cached-volume.ts);
// - whatever may let another writer in empties it: another node's claim this node
//   does not refuse, a fence at a newer epoch (and no cache is made below it again), a
//   change of the live nodes (a partition);
// - each block carries the CRC-32 of what was put there, checked on every read: a
//   block that fails is dropped and read from the replicas, never served.
// The cache file is read and written in place, without awaiting (requests up to
// IN_PLACE_READ; larger ones pass it by), so its blocks and checksums are never seen
// half-updated. All of a node's caches together take at most `budget` bytes of disk
// (blocks ever written to a file count until the file is emptied) and a bounded index;
// past it, new blocks are simply not cached.
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync, unlinkSync, writeSync } from 'node:fs'
import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { CHECK_BLOCK } from './checksums.ts'
import { OBJECT_SIZE } from './placement.ts'
import { readBuffers } from './buffer-pool.ts'
import { IN_PLACE_READ } from './file-io.ts'

/** per object: a checksum per block, whether it is cached, whether it ever took space in the file */
interface ObjectBlocks { sums: Uint32Array, cached: Uint8Array, stored: Uint8Array, count: number }

export interface CacheStats { hits: number, misses: number, damaged: number, drops: number }

const GiB = 2 ** 30
/** the index an object takes (its sums and flags, about 6 KiB): entries are bounded to one per MiB of budget */
const BUDGET_PER_OBJECT = 1024 * 1024

/** the disk all of a node's caches may take and take, the objects they index, and what they served since start */
export class CacheBudget {
  limit: number
  used = 0
  objects = 0
  /** set while the disk is short of room: nothing new is cached */
  paused = false
  readonly stats: CacheStats = { hits: 0, misses: 0, damaged: 0, drops: 0 }
  constructor (limit: number) { this.limit = limit }
  get maxObjects (): number { return Math.max(64, Math.floor(this.limit / BUDGET_PER_OBJECT)) }
}

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
  /** writes in flight per object: no fill lands over one */
  private readonly busy = new Map<number, number>()
  /** writes started, and drops: a fill planned before either moved is stale */
  private started = 0
  private era = 0
  /** the live nodes' generation the cache was filled under (CachedVolume) */
  generation: number | null = null
  private closed = false
  /** the disk this cache's file takes (its blocks ever written since it was last emptied) */
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
    if (this.fd == null || length === 0 || length > IN_PLACE_READ) { this.stats.misses++; return null }
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
    if (done < buf.length) { readBuffers.give(buf); this.drop(); this.stats.misses++; return null }
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

  /** a write (or zero) of [offset, offset+length) begins: the cache drops those blocks, and no fill lands until it ended */
  beginWrite (offset: number, length: number): void {
    this.started++
    for (const i of this.objectsOf(offset, length)) this.busy.set(i, (this.busy.get(i) ?? 0) + 1)
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
    if (this.closed || length > IN_PLACE_READ) return null
    for (const i of this.objectsOf(offset, length)) if ((this.busy.get(i) ?? 0) > 0) return null
    return `${this.era}/${this.started}`
  }

  /** caches a read's data if no write began or ran on the volume since planFill */
  fill (plan: string | null, offset: number, data: Uint8Array): void {
    if (plan == null || plan !== this.planFill(offset, data.length)) return
    this.put(offset, data)
  }

  /** drops every block (the file is emptied, its space given back); the cache goes on, empty */
  drop (): void {
    this.era++
    this.stats.drops++
    this.budget.used -= this.bytes
    this.budget.objects -= this.objects.size
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
    if (this.closed || this.budget.paused || data.length > IN_PLACE_READ) return
    const bs = this.blockSize
    const first = Math.ceil(offset / bs)
    const end = Math.floor((offset + data.length) / bs)
    if (end <= first) return
    // only as many blocks as the budget allows, from the start: a block that never took
    // space in the file takes a block more, an object not indexed yet an entry more
    let last = first
    let fresh = 0
    let entries = 0
    let counted = -1
    for (; last < end; last++) {
      const i = Math.floor(last / this.perObject)
      const o = this.objects.get(i)
      if (o == null && counted !== i) {
        if (this.budget.objects + entries + 1 > this.budget.maxObjects) break
        entries++
        counted = i
      }
      if (o?.stored[last % this.perObject] !== 1) {
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
      if (o == null) {
        o = { sums: new Uint32Array(this.perObject), cached: new Uint8Array(this.perObject), stored: new Uint8Array(this.perObject), count: 0 }
        this.objects.set(i, o)
        this.budget.objects++
      }
      const k = b % this.perObject
      const at = (b - first) * bs
      o.sums[k] = crc32(bytes.subarray(at, at + bs))
      if (o.cached[k] !== 1) { o.cached[k] = 1; o.count++ }
      if (o.stored[k] !== 1) { o.stored[k] = 1; this.bytes += bs; this.budget.used += bs }
    }
  }

  private forgetRange (offset: number, length: number): void {
    const bs = this.blockSize
    const end = Math.ceil((offset + length) / bs)
    for (let b = Math.floor(offset / bs); b < end; b++) this.forget(b)
  }

  /** the block is no longer cached (its space in the file stays taken until the file is emptied) */
  private forget (b: number): void {
    const o = this.objects.get(Math.floor(b / this.perObject))
    if (o?.cached[b % this.perObject] !== 1) return
    o.cached[b % this.perObject] = 0
    o.count--
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
  /** per volume, the newest epoch fenced in here: no cache is made below it again */
  private readonly fenced = new Map<string, number>()
  private seq = 0
  private ready = false
  private closed = false
  /** why the cache is off, if it could not be set up */
  failed: string | null = null

  constructor (init: { dir: string, budgetBytes: number }) {
    this.dir = init.dir
    this.budget = new CacheBudget(init.budgetBytes)
  }

  get enabled (): boolean { return this.budget.limit > 0 && !this.closed && this.failed == null }

  /** empties the directory (what a run that crashed left there); a failure turns the cache off, named in `failed` */
  start (): void {
    try {
      rmSync(this.dir, { recursive: true, force: true })
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      this.ready = true
    } catch (err) {
      this.failed = (err as Error).message
    }
  }

  /** the cache of volume `id` at `epoch` (made on first use), or null when caching is off or the epoch was fenced out */
  of (id: string, epoch: number): VolumeCache | null {
    if (!this.enabled || epoch < (this.fenced.get(id) ?? 0)) return null
    const key = `${id}#${epoch}`
    let c = this.caches.get(key)
    if (c == null) {
      if (!this.ready) this.start()
      if (!this.enabled) return null
      c = new VolumeCache(this.budget, { file: join(this.dir, `${this.seq++}.cache`), volume: id, epoch })
      this.caches.set(key, c)
    }
    return c
  }

  /** a newer writer was fenced in at `epoch`: the volume's caches of older epochs go, and none is made again */
  fence (id: string, epoch: number): void {
    if (epoch > (this.fenced.get(id) ?? 0)) this.fenced.set(id, epoch)
    for (const [key, c] of this.caches) {
      if (c.volume !== id || c.epoch >= epoch) continue
      c.close()
      this.caches.delete(key)
    }
  }

  /** empties the volume's caches (another node is about to write it) */
  empty (id: string): void { for (const c of this.caches.values()) if (c.volume === id) c.drop() }

  /** closes every cache not named in `keep` (`id#epoch`), and forgets the fences of volumes not in `volumes` */
  retain (keep: Set<string>, volumes?: Set<string>): void {
    for (const [key, c] of this.caches) {
      if (keep.has(key)) continue
      c.close()
      this.caches.delete(key)
    }
    if (volumes != null) for (const id of this.fenced.keys()) if (!volumes.has(id)) this.fenced.delete(id)
  }

  /** empties every cache (the live nodes changed: a partition may have let another writer in) */
  dropAll (): void { for (const c of this.caches.values()) c.drop() }

  /**
   * The disk is short of room (`freeBytes` below the larger of 1 GiB and the budget):
   * every cache is emptied and nothing new is cached until there is room again, so the
   * cache never takes the space the replicas need.
   */
  room (freeBytes: number): void {
    const short = freeBytes < Math.max(GiB, this.budget.limit - this.budget.used)
    if (short && !this.budget.paused) this.dropAll()
    this.budget.paused = short
  }

  /** removes every cache and its file; no cache is made after */
  close (): void {
    this.closed = true
    for (const c of this.caches.values()) c.close()
    this.caches.clear()
    if (this.ready) try { rmSync(this.dir, { recursive: true, force: true }) } catch {}
    this.ready = false
  }

  /** checks the room left where the caches live (see room) */
  async checkRoom (): Promise<void> {
    if (!this.ready || this.closed) return
    try {
      const fs = await statfs(this.dir)
      this.room(fs.bavail * fs.bsize)
    } catch {}
  }

  sizes (): { caches: number, bytes: number, limit: number, objects: number } { return { caches: this.caches.size, bytes: this.budget.used, limit: this.budget.limit, objects: this.budget.objects } }

  /** what the node's caches served since start */
  stats (): Readonly<CacheStats> { return this.budget.stats }
}
