// One node's share of the volume store: objects as files under <dir>/objects/<volume>/,
// each with a side file of block checksums (checksums.ts) verified on every read, and
// per volume the newest writer epoch seen, kept durably in <dir>/epochs/<volume>.
// The side file ends in the object's version (versions.ts): the highest (epoch, seq)
// of the writes applied, which tells a copy that missed writes from a current one.
//
// Semantics, as a disk's: a write returns once the data is in the page cache (written);
// flush() and FUA writes return once it is on stable storage (fsync of the data, the
// side file and, for a new object, its directory). An absent object reads as zeros
// (thin provisioning). A block whose checksum fails is reported ('damaged' event) and
// the read fails: damaged data is never served. A full disk fails the write with a
// 'no-space' error, and the checksums of the blocks it touched are recomputed from what
// did land so that the failure does not also make them read as damaged. An object an
// fsync failed on counts as damaged until rewritten (store-syncs.ts).
import { EventEmitter } from 'node:events'
import { mkdir, readdir, rm, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { GvsError, fromFsError } from './errors.ts'
import { CHECK_BLOCK } from './checksums.ts'
import { OBJECT_SIZE } from './placement.ts'
import { OpenObjects, type ObjectPaths, type OpenObject } from './open-objects.ts'
import { RangeLock, type Span } from './range-lock.ts'
import { readBuffers } from './buffer-pool.ts'
import { NO_VERSION, compareVersions, encodeVersion, newer, type Version } from './versions.ts'
import { IN_PLACE_READ, ignoreEnoent, readVersion, syncPath, writeFully } from './file-io.ts'
import { StoreSyncs, type Fsync } from './store-syncs.ts'
import { createObject, readChecked, readNow, writeRange, writeWhole, type Geometry } from './object-files.ts'
import { WriterEpochs } from './epochs.ts'
import type { Logger } from '../log.ts'

/** volume (or object-set) names as stored on disk: safe as one path component */
export const STORE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}$/

export interface DamageReport { volume: string, index: number, blocks: number[], path: string }

export interface ObjectStoreEvents {
  damaged: [DamageReport]
}

export interface ObjectStoreComponents {
  log: Logger
  /** fsync by path (default file-io.ts syncPath): a test wraps it to watch or fail fsyncs */
  fsync?: Fsync
}
export interface ObjectStoreInit {
  /** the store's root, e.g. <data-dir>/gvs */
  dir: string
  objectSize?: number
  blockSize?: number
}

export interface WriteOptions {
  /** the writer's epoch: rejected when older than the newest seen for the volume */
  epoch: number
  /** force unit access: on stable storage before returning */
  fua?: boolean
  /** the write's version: the object's version becomes it if it is higher */
  version?: Version
}

/** a whole object and its version: what a copy carries */
export interface ObjectCopy { data: Uint8Array, version: Version }

export class ObjectStore extends EventEmitter<ObjectStoreEvents> {
  readonly dir: string
  /** <dir>/objects, where each volume has its directory */
  private readonly objectsDir: string
  readonly objectSize: number
  readonly blockSize: number
  private readonly sumBytes: number
  private readonly geometry: Geometry
  private readonly log: Logger
  private readonly epochs: WriterEpochs
  private readonly locks = new Map<string, Promise<unknown>>()
  /** per object: requests to different blocks run at once, to the same blocks in order */
  private readonly ranges = new RangeLock()
  /** per object, its exclusive spans held or waiting: a read takes the fast path only where there are none */
  private readonly writers = new Map<string, number>()
  /** what is written but not yet synced, flushes in progress, objects an fsync failed on */
  private readonly syncs: StoreSyncs
  private readonly open = new OpenObjects()

  constructor (components: ObjectStoreComponents, init: ObjectStoreInit) {
    super()
    this.log = components.log
    this.syncs = new StoreSyncs(components.fsync ?? syncPath, data => { this.lostObject(data) })
    this.dir = init.dir
    this.objectsDir = join(init.dir, 'objects')
    this.objectSize = init.objectSize ?? OBJECT_SIZE
    this.blockSize = init.blockSize ?? CHECK_BLOCK
    if (this.objectSize % this.blockSize !== 0) throw new Error(`object size ${this.objectSize} is not a multiple of the check block ${this.blockSize}`)
    this.sumBytes = this.objectSize / this.blockSize * 4
    this.geometry = { objectSize: this.objectSize, blockSize: this.blockSize, sumBytes: this.sumBytes }
    this.epochs = new WriterEpochs(join(this.dir, 'epochs'))
  }

  async start (): Promise<void> {
    await mkdir(join(this.dir, 'objects'), { recursive: true })
    await mkdir(join(this.dir, 'epochs'), { recursive: true })
  }

  async stop (): Promise<void> {
    await this.flush()
    await this.open.closeAll()
  }

  private volDir (volume: string): string {
    if (!STORE_NAME.test(volume)) throw new GvsError('invalid', `volume name "${volume}" is not valid: letters, digits and ._:@+- only, starting with a letter or digit`)
    return join(this.dir, 'objects', volume)
  }

  private paths (volume: string, index: number): { dir: string, data: string, sums: string } {
    if (!Number.isSafeInteger(index) || index < 0) throw new GvsError('invalid', `object index ${index} is not a non-negative integer`)
    const dir = this.volDir(volume)
    const data = join(dir, index.toString(16).padStart(8, '0'))
    return { dir, data, sums: `${data}.sum` }
  }

  private checkRange (offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.objectSize) {
      throw new GvsError('invalid', `range ${offset}+${length} is outside an object of ${this.objectSize} bytes`)
    }
  }

  /** runs fn with the mutex of `key` held (epoch records, object creation) */
  private async locked<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(key, tail)
    try {
      return await run
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key)
    }
  }

  /** runs fn under a span of the object at `key` (range-lock.ts), counting the exclusive ones */
  private async ranged<T> (key: string, span: Span, fn: () => Promise<T>): Promise<T> {
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

  /** the check blocks under [offset, offset+length): shared for reads, exclusive for writes */
  private span (offset: number, length: number, exclusive: boolean): Span {
    const start = Math.floor(offset / this.blockSize)
    return { start, end: Math.max(start + 1, Math.ceil((offset + length) / this.blockSize)), exclusive }
  }

  /** every block of an object: for whole-object reads, creation checks, removal */
  private static whole (exclusive: boolean): Span { return { start: 0, end: Number.MAX_SAFE_INTEGER, exclusive } }

  // ---- epochs ----

  /** the newest writer epoch this store has seen for the volume (0: none) */
  async epoch (volume: string): Promise<number> {
    this.volDir(volume)
    return await this.epochs.get(volume)
  }

  /**
   * Admits a writer with this epoch: a newer one is recorded durably before any of its
   * writes lands, an older one is rejected (invariant 3). `learnOnly`: a copy (repair,
   * a move) only teaches a newer epoch; its version decides whether it lands.
   */
  async fence (volume: string, epoch: number, opts: { learnOnly?: boolean } = {}): Promise<void> {
    this.volDir(volume)
    await this.epochs.admit(volume, epoch, opts.learnOnly === true)
  }

  // ---- data ----

  /** `length` bytes at `offset` of the object: zeros where nothing was written */
  async read (volume: string, index: number, offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length)
    const p = this.paths(volume, index)
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
    const span = this.span(offset, length, false)
    // the common case, an object open and no write to it held or waiting: read and
    // check at once, without an await (nothing else runs meanwhile, so nothing needs
    // holding), instead of through the range lock and the object's hold
    if (span.end - span.start <= IN_PLACE_READ / this.blockSize && !this.writers.has(p.data)) {
      const o = this.open.hit(p.data)
      if (o != null) {
        const { data, bad } = readNow(o, this.blockSize, offset, length)
        if (bad.length > 0) this.damaged(volume, index, bad, p.data)
        return data
      }
    }
    return await this.ranged(p.data, span, async () => await this.withObject(p, false, async o => {
      if (o == null) return new Uint8Array(length)
      const { first, data, bad } = await readChecked(o, this.blockSize, offset, length)
      if (bad.length > 0) this.damaged(volume, index, bad, p.data)
      const from = offset - first * this.blockSize
      return data.subarray(from, from + length)
    }))
  }

  async has (volume: string, index: number): Promise<boolean> {
    return (await this.stat(volume, index)).present
  }

  /** whether the object is here, and its version (NO_VERSION when absent) */
  async stat (volume: string, index: number): Promise<{ present: boolean, version: Version }> {
    const p = this.paths(volume, index)
    return await this.ranged(p.data, ObjectStore.whole(false), async () => await this.withObject(p, false, async o =>
      o == null ? { present: false, version: NO_VERSION } : { present: true, version: o.version }))
  }

  /** runs fn with the object open (null: absent, unless create); the caller holds a range of it */
  private async withObject<T> (p: ObjectPaths, create: boolean, fn: (o: OpenObject | null) => Promise<T>): Promise<T> {
    let o = await this.open.acquire(p, this.sumBytes)
    if (o == null && create) {
      // writers to different blocks of a new object race here: one creates, under a
      // mutex, and the others find its files (create truncates, so never twice)
      await this.locked(`create:${p.data}`, async () => {
        const again = await this.open.acquire(p, this.sumBytes)
        if (again != null) { await this.open.release(again); return }
        const madeDir = await createObject(p, this.geometry)
        // the new names are synced by the next flush, or FUA write to the object,
        // whether or not the write that created it succeeds
        this.syncs.add(p.dir + '/')
        if (madeDir) this.syncs.add(this.objectsDir + '/')
      })
      o = await this.open.acquire(p, this.sumBytes)
    }
    try {
      return await fn(o)
    } finally {
      if (o != null) await this.open.release(o)
    }
  }

  /** the whole object and its version, or null when absent: what repair copies to another holder */
  async readObject (volume: string, index: number): Promise<ObjectCopy | null> {
    const p = this.paths(volume, index)
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
    return await this.ranged(p.data, ObjectStore.whole(false), async () => await this.withObject(p, false, async o => {
      if (o == null) return null
      const { data, bad } = await readChecked(o, this.blockSize, 0, this.objectSize)
      if (bad.length > 0) this.damaged(volume, index, bad, p.data)
      return { data, version: o.version }
    }))
  }

  async write (volume: string, index: number, offset: number, data: Uint8Array, opts: WriteOptions): Promise<void> {
    this.checkRange(offset, data.length)
    const p = this.paths(volume, index)
    if (data.length === 0) { await this.fence(volume, opts.epoch); return }
    // the range is taken at once (before any await), so requests to overlapping
    // blocks run in the order they were made; the writer's epoch is checked inside
    await this.ranged(p.data, this.span(offset, data.length, true), async () => {
      await this.fence(volume, opts.epoch)
      await this.writeLocked(volume, index, p, offset, data, opts)
    })
  }

  /**
   * A whole object copied in (repair, a move, scrub): it replaces the copy here only
   * if its version is higher (with `replace`, a damaged copy: also an equal one; an
   * object an fsync failed on: whatever its version).
   * The check and the write are one hold of the object, so a writer's write that landed
   * in between (a higher version) is never overwritten by the older copy. The copy
   * teaches the volume's epoch but is not refused by it: its version decides. True
   * when the copy here was kept (as new or newer).
   */
  async put (volume: string, index: number, copy: ObjectCopy, opts: { epoch: number, replace?: boolean }): Promise<boolean> {
    if (copy.data.length !== this.objectSize) throw new GvsError('invalid', `put needs a whole object of ${this.objectSize} bytes, not ${copy.data.length}`)
    const p = this.paths(volume, index)
    return await this.ranged(p.data, ObjectStore.whole(true), async () => {
      const here = await this.withObject(p, false, async o => o?.version ?? null)
      if (here != null && !this.syncs.isLost(p.data)) {
        // replace overrides only the equal-version skip: a copy read before a write
        // landed here (scrub's get, then put) is older and must not undo that write
        const c = compareVersions(here, copy.version)
        if (c > 0 || (c === 0 && opts.replace !== true)) return true
      }
      await this.fence(volume, opts.epoch, { learnOnly: true })
      await this.replaceLocked(volume, index, p, copy.data, copy.version)
      return false
    })
  }

  /** trim and write-zeroes: a whole object is deleted (thin again), a part zeroed */
  async zero (volume: string, index: number, offset: number, length: number, opts: WriteOptions): Promise<void> {
    this.checkRange(offset, length)
    const p = this.paths(volume, index)
    if (length === 0) {
      // nothing to zero: a version alone marks that copies elsewhere are behind
      // (replicated-volume.ts, a holder a write failed on that does not answer)
      await this.ranged(p.data, ObjectStore.whole(true), async () => {
        await this.fence(volume, opts.epoch)
        if (opts.version != null) await this.withObject(p, false, async o => { if (o != null) await this.setVersion(o, opts.version!, volume, index) })
      })
      if (opts.fua === true) await this.syncObject(volume, index)
      return
    }
    if (offset === 0 && length === this.objectSize) {
      await this.ranged(p.data, ObjectStore.whole(true), async () => {
        await this.fence(volume, opts.epoch)
        // the data goes (thin again), the side file stays with the zeroing's version:
        // a copy that missed it must not bring the old data back as the newer one
        if (!(await this.withObject(p, false, async o => o != null))) return
        await this.replaceLocked(volume, index, p, null, opts.version ?? NO_VERSION, false)
        if (opts.fua === true) await this.syncObject(volume, index)
      })
      return
    }
    await this.ranged(p.data, this.span(offset, length, true), async () => {
      await this.fence(volume, opts.epoch)
      // zeroing an absent object changes nothing: it already reads as zeros
      if (!(await this.withObject(p, false, async o => o != null))) return
      await this.writeLocked(volume, index, p, offset, new Uint8Array(length), opts)
    })
  }

  /**
   * One object's files (and its directory's entry for it) on stable storage, without
   * holding the object: a whole-object copy is written under its lock and synced
   * after, so reads of the object wait for the copy but not for the disk.
   */
  async syncObject (volume: string, index: number): Promise<void> {
    const p = this.paths(volume, index)
    try {
      await this.syncs.syncNow(p.data)
      await this.syncs.syncNow(p.sums)
      await this.syncNames(p)
    } catch (err) { throw fromFsError(err, `syncing object ${index} of "${volume}"`) }
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
  }

  /**
   * Everything written before this call, on stable storage: also what a flush still
   * in progress took to sync (store-syncs.ts). An fsync that fails fails this flush
   * and marks its object damaged, not dirty again.
   */
  async flush (): Promise<void> {
    try { await this.syncs.flush() } catch (err) { throw err instanceof GvsError ? err : fromFsError(err, 'flush') }
  }

  /** a new object's directory entry, and a new volume directory's, where not synced yet */
  private async syncNames (p: ObjectPaths): Promise<void> {
    // also while a flush that took them is syncing them: that flush may not have yet
    await this.syncs.syncPending([p.dir + '/', this.objectsDir + '/'])
  }

  /** the objects present for a volume, each with its version */
  async inventory (volume: string): Promise<Array<{ index: number, version: Version }>> {
    const out: Array<{ index: number, version: Version }> = []
    for (const index of await this.list(volume)) {
      const p = this.paths(volume, index)
      // the open copy when there is one (it is what the file says, and what a write
      // in flight is about to make it), else the side file's tail
      const cached = this.open.peek(p.data)
      if (cached != null) { out.push({ index, version: cached.version }); continue }
      try {
        out.push({ index, version: await readVersion(p.sums, this.sumBytes) })
      } catch (err) {
        // removed meanwhile: not present; a damaged side file counts as the oldest copy
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        out.push({ index, version: NO_VERSION })
      }
    }
    return out
  }

  /** indexes of the objects present for a volume */
  async list (volume: string): Promise<number[]> {
    let names: string[]
    try { names = await readdir(this.volDir(volume)) } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw fromFsError(err, `listing "${volume}"`)
    }
    return names.filter(n => /^[0-9a-f]{8}$/.test(n)).map(n => parseInt(n, 16)).sort((a, b) => a - b)
  }

  /** the volumes with any object here */
  async volumes (): Promise<string[]> {
    return (await readdir(join(this.dir, 'objects'))).filter(n => STORE_NAME.test(n)).sort()
  }

  /** checks every block of one object: the damaged blocks (none: sound or absent) */
  async verify (volume: string, index: number): Promise<number[]> {
    const p = this.paths(volume, index)
    return await this.ranged(p.data, ObjectStore.whole(true), async () => {
      // an fsync failed on it: what is on disk is unknown, every block counts as damaged
      if (this.syncs.isLost(p.data)) return Array.from({ length: this.objectSize / this.blockSize }, (_, b) => b)
      // a scrub reads the checksums from disk, not the cached copy
      await this.open.drop(p.data)
      return await this.withObject(p, false, async o => {
        if (o == null) return []
        const { data, bad } = await readChecked(o, this.blockSize, 0, this.objectSize)
        readBuffers.give(data)
        return bad
      })
    })
  }

  async remove (volume: string, index: number): Promise<void> {
    const p = this.paths(volume, index)
    await this.ranged(p.data, ObjectStore.whole(true), async () => { await this.removeLocked(p, false) })
  }

  async removeVolume (volume: string): Promise<void> {
    const dir = this.volDir(volume)
    await this.open.dropUnder(dir)
    this.syncs.forgetUnder(dir)
    await rm(this.volDir(volume), { recursive: true, force: true })
    await this.epochs.forget(volume)
  }

  // ---- internals ----

  private lost (volume: string, index: number): never {
    throw new GvsError('damaged', `object ${index} of volume "${volume}" is damaged: an fsync of it failed, so what is on disk is unknown (a whole copy rewrites it)`)
  }

  /** an fsync of the object's files failed (store-syncs.ts): reported as damaged, once */
  private lostObject (data: string): void {
    const volume = basename(dirname(data))
    const index = parseInt(basename(data), 16)
    const report = { volume, index, blocks: Array.from({ length: this.objectSize / this.blockSize }, (_, b) => b), path: data }
    this.log.error('an fsync of an object failed: its copy counts as damaged until rewritten', { volume, index, path: data })
    this.emit('damaged', report)
  }

  private damaged (volume: string, index: number, blocks: number[], path: string): never {
    const report = { volume, index, blocks, path }
    this.log.error('damaged object: checksum mismatch, not served', { volume, index, blocks: blocks.join(','), path })
    this.emit('damaged', report)
    throw new GvsError('damaged', `object ${index} of volume "${volume}" is damaged (blocks ${blocks.join(',')} fail their checksum)`)
  }

  private async writeLocked (volume: string, index: number, p: ObjectPaths, offset: number, bytes: Uint8Array, opts: WriteOptions): Promise<void> {
    const fua = opts.fua === true
    await this.withObject(p, true, async o => {
      if (o == null) throw new GvsError('io', `object ${p.data} could not be created`)
      const bad = await writeRange(o, this.blockSize, offset, bytes, `object ${index} of "${volume}"`)
      if (bad.length > 0) this.damaged(volume, index, bad, p.data)
      if (opts.version != null) await this.setVersion(o, opts.version, volume, index)
      if (fua) {
        try {
          // a failed fsync may have dropped earlier writes to the object too (store-syncs.ts)
          await o.data.sync().catch(err => { this.syncs.markLost(p.data); throw err })
          await o.sums.sync().catch(err => { this.syncs.markLost(p.data); throw err })
          // a new object's name too, also when a concurrent write created it
          await this.syncNames(p)
        } catch (err) { throw fromFsError(err, `syncing object ${index} of "${volume}"`) }
      } else {
        this.syncs.add(p.data)
        this.syncs.add(p.sums)
      }
    })
  }

  /**
   * Raises the object's version to v (with `force`, sets it). Writes to other blocks of
   * the object run at once: the check and the new value are taken before any await, so
   * a lower version finishing later never overwrites a higher one.
   */
  private async setVersion (o: OpenObject, v: Version, volume: string, index: number, force = false): Promise<void> {
    if (!force && !newer(v, o.version)) return
    o.version = v
    await writeFully(o.sums, encodeVersion(v), this.sumBytes).catch(err => { throw fromFsError(err, `writing the version of object ${index} of "${volume}"`) })
  }

  /**
   * The whole object becomes `data` (null: zeros) at version v (`force`: even a lower
   * one, as a copy that replaces a damaged one), written sparse (object-files.ts). The
   * caller holds the whole object. Synced by the caller (flush, syncObject) like a write.
   */
  private async replaceLocked (volume: string, index: number, p: ObjectPaths, data: Uint8Array | null, v: Version, force = true): Promise<void> {
    await this.withObject(p, true, async o => {
      if (o == null) throw new GvsError('io', `object ${p.data} could not be created`)
      try { await writeWhole(o, data, this.geometry) } catch (err) { throw fromFsError(err, `replacing object ${index} of "${volume}"`) }
      await this.setVersion(o, v, volume, index, force)
      // written whole: no longer what a failed fsync left (synced as any write is)
      this.syncs.rewritten(p.data)
      this.syncs.add(p.data)
      this.syncs.add(p.sums)
    })
  }

  private async removeLocked (p: ObjectPaths, sync: boolean): Promise<void> {
    await this.open.drop(p.data)
    try {
      // data first: a side file without data is a harmless leftover, the reverse is "damaged"
      await unlink(p.data).catch(ignoreEnoent)
      await unlink(p.sums).catch(ignoreEnoent)
      this.syncs.forget(p.data)
      this.syncs.forget(p.sums)
      this.syncs.rewritten(p.data)
      if (sync) await this.syncs.syncNow(p.dir + '/')
      else this.syncs.add(p.dir + '/')
    } catch (err) { throw fromFsError(err, `removing ${p.data}`) }
  }
}
