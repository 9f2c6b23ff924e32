// A local copy of the blocks a VM's disk wrote or read, on the node the VM runs on, so
// that it reads its disk at local speed, not a third of it (with R = 2 on 3 nodes)
// through the network and both ends' ciphers. Longhorn calls this data locality; here
// it is a cache beside the replicas, never one of them: it counts nothing towards R, is
// never flushed, and a restart starts it empty.
//
// One cache per volume and writer epoch on a node (`<data-dir>/gvs-cache/`, one sparse
// file at a time each, at the volume's own offsets), shared by the sessions of that
// epoch there. A cached block is served only while it is known to hold what the
// replicas hold:
// - it serves only a VM's disk on its holder's node: an epoch this node fenced in for
//   the VM (exports.ts), unique to this holder (crdt/placement/volume-epoch.ts), and
//   only while a session of the VM is open (writers.ts): another run of the VM writes
//   with another epoch and fences this one out first, a plain export is refused while
//   the document names the VM (GvsService.vmUsing), and every write of this run goes
//   through it (cached-volume.ts). When the VM's last session ends it is emptied (a
//   plain export may write the volume before the VM runs here again);
// - whatever may let another writer in empties it or closes it: a fence at a newer
//   epoch (none is made below it again), this node's store knowing a newer writer
//   epoch than the cache's (checked every second: a fence that did not reach it, a
//   restart), a write the replicas refused as stale, another node's claim this node
//   does not refuse, a change of the live nodes;
// - each block carries the CRC-32 of what was put there, checked on every read: a
//   block that fails is dropped and read from the replicas, never served.
// The cache file is read and written in place, without awaiting (requests up to
// IN_PLACE_READ; larger ones pass it by), so its blocks and checksums are never seen
// half-updated. An emptied cache starts a new file and the old one is removed off the
// event loop (freeing a sparse file's scattered blocks takes seconds). All of a node's
// caches together take at most `budget` bytes of disk (blocks ever written to a file
// count until that file is removed) and a bounded index; past it, the fullest cache
// starts again empty (at most every FULL_EVERY_MS), so a VM that ran a long time caches
// what it uses now, not only what it touched first.
import { close, mkdirSync, openSync, readdirSync, renameSync, writeSync } from 'node:fs'
import { rm, statfs, unlink } from 'node:fs/promises'
import { promisify } from 'node:util'
import { basename, dirname, join } from 'node:path'
import { crc32 } from 'node:zlib'
import { CHECK_BLOCK } from './checksums.ts'
import { OBJECT_SIZE } from './placement.ts'
import { readBuffers } from './buffer-pool.ts'
import { IN_PLACE_READ, readFullySync } from './file-io.ts'
import { RangeLock } from './range-lock.ts'
import { CacheBudget, GiB, type CacheStats } from './cache-budget.ts'

const closeFd = promisify(close)

/** per object: a checksum per block, whether it is cached, whether it ever took space in the file */
interface ObjectBlocks { sums: Uint32Array, cached: Uint8Array, stored: Uint8Array, count: number }

export interface VolumeCacheInit {
  /** a new file's name, for each file the cache starts */
  file: () => string
  volume: string
  epoch: number
  objectSize?: number
  blockSize?: number
}

export class VolumeCache {
  readonly volume: string
  readonly epoch: number
  /** overlapping writes through any device over this cache run one at a time, in the order issued (cached-volume.ts) */
  readonly writes = new RangeLock()
  private readonly nextFile: () => string
  private file: string
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
    this.nextFile = init.file
    this.file = init.file()
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
    // (past the file's end it reads zeros, which only a block cached as zeros matches)
    const buf = readBuffers.take((end - first) * bs)
    try { readFullySync(this.fd, buf, first * bs) } catch { readBuffers.give(buf); this.drop(); this.stats.misses++; return null }
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

  /**
   * Drops every block; the cache goes on, empty, in a new file. The old file is removed
   * off the event loop (its space counts until it is gone: a failed removal keeps it
   * counted, on the safe side).
   */
  drop (): void {
    this.era++
    this.budget.objects -= this.objects.size
    this.objects.clear()
    const fd = this.fd
    const file = this.file
    const bytes = this.bytes
    this.fd = null
    this.bytes = 0
    if (fd == null) { this.budget.used -= bytes; return }
    this.file = this.nextFile()
    this.budget.track((async () => {
      try { await unlink(file) } finally { await closeFd(fd) }
      this.budget.used -= bytes
    })())
  }

  /** drops everything: nothing is cached any more */
  close (): void {
    if (this.closed) return
    this.drop()
    this.closed = true
  }

  get isClosed (): boolean { return this.closed }

  /** the disk its file takes */
  get size (): number { return this.bytes }

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
    if (last < end) this.budget.full()
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
    this.budget.onFull = () => {
      let fullest: VolumeCache | null = null
      for (const c of this.caches.values()) if (fullest == null || c.size > fullest.size) fullest = c
      if (fullest != null && fullest.size > 0) fullest.drop()
    }
  }

  get enabled (): boolean { return this.budget.limit > 0 && !this.closed && this.failed == null }

  /**
   * Starts an empty directory: what a run that crashed left there is moved aside and
   * removed off the event loop (freeing sparse files' scattered blocks takes seconds).
   * A failure turns the cache off, named in `failed`.
   */
  start (): void {
    try {
      const parent = dirname(this.dir)
      const aside = `${basename(this.dir)}.old-`
      for (const name of readdirSync(parent)) if (name.startsWith(aside)) this.removeAside(join(parent, name))
      try {
        const old = join(parent, `${aside}${Date.now()}`)
        renameSync(this.dir, old)
        this.removeAside(old)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      this.ready = true
    } catch (err) {
      this.failed = (err as Error).message
    }
  }

  private removeAside (path: string): void { this.budget.track(rm(path, { recursive: true, force: true })) }

  /** the cache of volume `id` at `epoch` (made on first use), or null when caching is off or the epoch was fenced out */
  of (id: string, epoch: number): VolumeCache | null {
    if (!this.enabled || epoch < (this.fenced.get(id) ?? 0)) return null
    const key = `${id}#${epoch}`
    let c = this.caches.get(key)
    if (c == null) {
      if (!this.ready) this.start()
      if (!this.enabled) return null
      c = new VolumeCache(this.budget, { file: () => join(this.dir, `${this.seq++}.cache`), volume: id, epoch })
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

  /** empties the volume's caches (of one epoch, or all: another node is about to write it) */
  empty (id: string, epoch?: number): void { for (const c of this.caches.values()) if (c.volume === id && (epoch == null || c.epoch === epoch)) c.drop() }

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
   * The disk is short of room (less free than 1 GiB more than the caches may still
   * take): every cache is emptied and nothing new is cached until there is room again,
   * so the cache never takes the space the replicas need.
   */
  room (freeBytes: number): void {
    const short = freeBytes < GiB + Math.max(0, this.budget.limit - this.budget.used)
    if (short && !this.budget.paused) this.dropAll()
    this.budget.paused = short
  }

  /** removes every cache and its file; no cache is made after */
  close (): void {
    this.closed = true
    for (const c of this.caches.values()) c.close()
    this.caches.clear()
    if (this.ready) {
      // aside, and removed off the event loop (what a stop leaves is removed at the next start)
      try {
        const old = join(dirname(this.dir), `${basename(this.dir)}.old-${Date.now()}`)
        renameSync(this.dir, old)
        this.removeAside(old)
      } catch {}
    }
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

  sizes (): { caches: number, bytes: number, limit: number, objects: number, paused: boolean } {
    return { caches: this.caches.size, bytes: this.budget.used, limit: this.budget.limit, objects: this.budget.objects, paused: this.budget.paused }
  }

  /** once the old files of the caches emptied so far are removed */
  async removed (): Promise<void> { await Promise.all([...this.budget.removing]) }

  /** what the node's caches served since start */
  stats (): Readonly<CacheStats> { return this.budget.stats }
}
