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
// fsync failed on counts as damaged until rewritten (store-syncs.ts). Requests hold
// spans of an object's check blocks (object-spans.ts), and under one its files are
// opened, written, versioned, replaced or removed (held-objects.ts). Each object is
// named in a log before it is first written after it was last synced, and at start
// its checksums are made true to the data a power loss left (write-intents.ts).
import { EventEmitter } from 'node:events'
import { crc32 } from 'node:zlib'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdir, opendir, readdir, rm, rmdir, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { GvsError, fromFsError, isGvsError } from './errors.ts'
import { CHECK_BLOCK } from './checksums.ts'
import { OBJECT_SIZE } from './placement.ts'
import { OpenObjects } from './open-objects.ts'
import { readBuffers } from './buffer-pool.ts'
import { NO_VERSION, compareVersions, formatVersion, type Version } from './versions.ts'
import { IN_PLACE_READ, readVersion, syncPath } from './file-io.ts'
import { StoreSyncs, type FlushScope, type Fsync } from './store-syncs.ts'
import { freshSide, readChecked, readNow, type Geometry } from './object-files.ts'
import { ObjectSpans } from './object-spans.ts'
import { HeldObjects } from './held-objects.ts'
import { WriterEpochs } from './epochs.ts'
import { FrozenLayers } from './frozen-layers.ts'
import { WriteIntents, type IntentCarried } from './write-intents.ts'
import { Writeback } from './writeback.ts'
import { inventoryOf, objectIndexes } from './store-listing.ts'
import type { Logger } from '../log.ts'
import { RepeatedLines } from '../log-repeats.ts'
import { DiskRoom, type FsSpace } from './disk-room.ts'
import { currentBootId } from '../dvmm/drivers/common.ts'

const run = promisify(execFile)

/** volume (or object-set) names as stored on disk: safe as one path component */
export const STORE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}$/

export interface DamageReport { volume: string, index: number, blocks: number[], path: string }

export interface ObjectStoreEvents {
  damaged: [DamageReport]
  /** a writer epoch was fenced in on the volume (its top layer) by a replica request */
  fenced: [{ volume: string, epoch: number }]
}

export interface ObjectStoreComponents {
  log: Logger
  /** fsync by path (default file-io.ts syncPath): a test wraps it to watch or fail fsyncs */
  fsync?: Fsync
  /** the file system's free space (default fs.statfs): a test gives a disk nearly full */
  statfs?: (dir: string) => Promise<FsSpace>
  /** this server's boot id (default /proc/sys/kernel/random/boot_id): a test restarts the server */
  bootId?: () => Promise<string | null>
}
export interface ObjectStoreInit {
  /** the store's root, e.g. <data-dir>/gvs */
  dir: string
  objectSize?: number
  blockSize?: number
  /** flush by itself when a write waited this long with no flush (writeback.ts; 0: never) */
  writebackMs?: number
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

/** a digest of a copy's block checksums (CRC-32, 8 hex digits): copies of one version that differ in it hold different data */
const digestOf = (sums: Uint8Array): string => crc32(sums).toString(16).padStart(8, '0')

export class ObjectStore extends EventEmitter<ObjectStoreEvents> {
  readonly dir: string
  /** <dir>/objects, where each volume has its directory */
  private readonly objectsDir: string
  readonly objectSize: number
  readonly blockSize: number
  private readonly sumBytes: number
  private readonly geometry: Geometry
  private readonly log: Logger
  /** an fsync failing for a while (a full disk) damages one object after another: a line a minute */
  private readonly repeats = new RepeatedLines()
  private readonly epochs: WriterEpochs
  /** the layers a snapshot froze: writes to them are refused (frozen-layers.ts) */
  readonly frozen: FrozenLayers
  /** the spans of objects held or waiting: reads share blocks, writes have them to themselves */
  private readonly spans: ObjectSpans
  /** what is written but not yet synced, flushes in progress, objects an fsync failed on */
  private readonly syncs: StoreSyncs
  private readonly open: OpenObjects
  /** what is done to an object's files under its span */
  private readonly held: HeldObjects
  /** the objects written since their last sync (write-intents.ts) */
  private readonly intents: WriteIntents
  /** room kept for writer epochs and the intent log once object data fills the disk (disk-room.ts) */
  private readonly room: DiskRoom

  /** entries of the objects directory that are no directory, already logged */
  private readonly strays = new Set<string>()
  /** the layers named since takeTouched was last called */
  private touched = new Set<string>()
  /** a write or zero landed on an object (a plain callback: called on every write, it costs no event) */
  onWritten: ((volume: string, index: number) => void) | null = null

  /** bytes object data may still take on this store's file system (DiskRoom.available) */
  available (): number | null { return this.room.available() }
  private readonly writeback: Writeback
  private readonly bootIdOf?: () => Promise<string | null>
  /** an object (its data path) with writes not yet synced, or whose sync failed: it stays named in the intent log */
  private readonly unsynced = (d: string): boolean => this.syncs.pending(d) || this.syncs.pending(`${d}.sum`) || this.syncs.isLost(d)

  constructor (components: ObjectStoreComponents, init: ObjectStoreInit) {
    super()
    this.log = components.log
    this.bootIdOf = components.bootId
    this.syncs = new StoreSyncs(components.fsync ?? syncPath, data => { this.wholeDamaged(data, 'an fsync of an object failed') })
    this.dir = init.dir
    this.objectsDir = join(init.dir, 'objects')
    this.objectSize = init.objectSize ?? OBJECT_SIZE
    this.blockSize = init.blockSize ?? CHECK_BLOCK
    if (this.objectSize % this.blockSize !== 0) throw new Error(`object size ${this.objectSize} is not a multiple of the check block ${this.blockSize}`)
    this.sumBytes = this.objectSize / this.blockSize * 4
    this.geometry = { objectSize: this.objectSize, blockSize: this.blockSize, sumBytes: this.sumBytes }
    this.epochs = new WriterEpochs(join(this.dir, 'epochs'), (volume, file, why) => {
      this.log.error(`the writer epoch file ${file} is damaged (${why}): writes to "${volume}" on this node are refused until it holds an epoch again. Write into it the volume's current epoch (vgrid vol info) once no older writer can still be running, or remove it to take the next writer's`, { volume })
    })
    this.frozen = new FrozenLayers(join(this.dir, 'frozen'))
    const fresh = freshSide(this.geometry)
    this.open = new OpenObjects(256, { freshSide: () => fresh, onIncomplete: data => { this.wholeDamaged(data, 'an object has data but no whole checksum file (a power loss cut its creation short?)') } })
    this.spans = new ObjectSpans(this.blockSize)
    this.intents = new WriteIntents(join(this.dir, 'intents'))
    this.room = new DiskRoom(this.dir, { statfs: components.statfs })
    // a first reading for the advert's free disk (the node's first adverts go out before any write)
    this.room.available()
    this.held = new HeldObjects({ open: this.open, syncs: this.syncs, geometry: this.geometry, objectsDir: this.objectsDir, damaged: (v, i, b, path) => this.damaged(v, i, b, path), intents: this.intents })
    this.writeback = new Writeback(() => this.syncs.hasDirty, async () => { await this.flushAs('store') }, this.log, init.writebackMs)
  }

  /**
   * Also syncs the file system the store is on: writes a previous run of this agent took
   * and never synced (it was killed) are in the kernel's cache, not in this run's list
   * of what a flush must sync, and a client's next flush must cover them.
   */
  async start (): Promise<void> {
    // a file in the way is named, with what to do (bb41: a bare EEXIST of mkdir)
    for (const d of [this.dir, this.objectsDir, join(this.dir, 'epochs')]) {
      await mkdir(d, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' || err.code === 'ENOTDIR' ? new GvsError('io', `${d} must be a directory of the volume store, and something else is in its way (${err.code}): move it away`) : err
      })
    }
    await this.frozen.start()
    await this.room.ready()
    try { await run('sync', ['-f', this.dir]) } catch (err) { throw new GvsError('io', `syncing the file system of ${this.dir} failed: ${(err as Error).message}`) }
    const boot = await this.bootId()
    const { objects, damaged, boot: logBoot } = await this.intents.pending()
    // the objects such a line named are not known: a power loss may have left their checksums untrue, which a read or scrub then reports
    if (damaged.length > 0) this.log.warn(`the write intents log ${join(this.dir, 'intents')} holds ${damaged.length} line${damaged.length === 1 ? '' : 's'} that name no object (damaged): skipped; objects they named are not recovered, and a read or scrub reports any of them left damaged`, { sample: JSON.stringify(damaged[0]!.slice(0, 80)) })
    // the server restarted since the log was begun (or which one cannot be told): its page cache, and with it writes never synced, may be gone
    const restarted = objects.length > 0 && (boot == null || logBoot !== boot)
    const carried: IntentCarried[] = []
    let sample: string | undefined
    for (const o of objects) {
      const index = parseInt(o.file, 16)
      // one whose lowering failed at an earlier start is lowered now, whatever the boot
      const lower = restarted || o.lower === true
      const failed = await this.recover(o.volume, index, lower ? { version: o.version } : null)
      if (failed == null) continue
      carried.push({ data: this.paths(o.volume, index).data, version: o.version, lower: failed === 'version' || o.lower === true })
      sample ??= `${o.volume}/${o.file}`
    }
    const kept = await this.intents.open(boot, carried)
    if (carried.length > 0) {
      const what = `${carried.length} object${carried.length === 1 ? '' : 's'} the write intents log named could not be recovered`
      if (kept) this.log.warn(`${what}: still named in it, and tried again at the next start`, { sample })
      else this.log.error(`${what}, and the log has no room to name ${carried.length === 1 ? 'it' : 'them'} again (its disk is full): not tried again at the next start; a read or scrub reports any left damaged`, { sample })
    }
    this.writeback.start()
  }

  /** this server's boot id (null: unknown), which changes when the server restarts */
  private async bootId (): Promise<string | null> {
    if (this.bootIdOf != null) return await this.bootIdOf()
    const id = currentBootId()
    // written into the intent log's first line: only what that line can hold
    return id != null && /^[0-9A-Za-z-]{1,64}$/.test(id) ? id : null
  }

  /**
   * An object the last run wrote and never synced: its checksums made true to the data
   * the disk kept. After a server restart (`lost`), also its version lowered to the one
   * its intent line carries (null: unknown; its epoch's start then): a power loss may
   * have kept the side file's version and not the data it counts, and a copy of that
   * version elsewhere would look no newer than this one, which would be read and kept
   * (write-intents.ts).
   */
  private async recover (volume: string, index: number, lost: { version: Version | null } | null): Promise<'checksums' | 'version' | null> {
    let paths: ReturnType<ObjectStore['paths']>
    try {
      paths = this.paths(volume, index)
    } catch (err) {
      // an entry no run of ours could have written (a damaged log): nothing to make true
      this.log.warn('the write-intent log names an object that cannot exist: skipped', { volume: volume.slice(0, 200), index, err: (err as Error).message })
      return null
    }
    let failed: 'checksums' | 'version' | null = null
    // one that cannot be checked is left as it is: a read reports it damaged, and a copy from another node rewrites it
    const fixed = await this.held.trueToData(paths).catch((err: Error) => { failed = 'checksums'; this.log.warn('an object written when the last run ended could not be checked', { volume, index, err: err.message }); return [] })
    if (lost != null) {
      try {
        const now = await this.held.versionOf(paths)
        const to = lost.version ?? { epoch: now?.epoch ?? 0, seq: 0 }
        const was = await this.held.lowerVersion(volume, index, paths, to)
        if (was != null) this.log.warn(`an object written since its last sync when the server went down had its version lowered from ${formatVersion(was)} to ${formatVersion(to)}, what its last sync made sure of: its page cache was lost, so its data may lack writes that version counts, and a copy elsewhere that has them replaces it`, { volume, index })
      } catch (err) {
        failed = 'version'
        this.log.warn('an object written when the server went down could not have its version lowered: a scrub or a copy from another node rewrites it if it lacks writes', { volume, index, err: (err as Error).message })
      }
    }
    if (fixed.length > 0) {
      // the checksums made true reach the disk before the fresh intent log forgets the object
      await this.syncObject(volume, index).catch((err: Error) => { failed ??= 'checksums'; this.log.warn('an object whose checksums were made true could not be synced', { volume, index, err: err.message }) })
      this.log.warn('an object written when the last run ended had checksums the disk did not keep with its data: made true to the data, and reported (a copy elsewhere with its version rewrites it)', { volume, index, blocks: fixed.join(',') })
      // its version may be newer than the data the disk kept: a peer's copy of that version is the sound one (healed once the service runs)
      this.emit('damaged', { volume, index, blocks: fixed, path: paths.data })
    }
    return failed
  }

  async stop (): Promise<void> {
    this.writeback.stop()
    try {
      await this.flushAs('store')
      await this.intents.settled(this.unsynced, { stopping: true })
    } finally {
      await this.open.closeAll()
      await this.intents.close()
    }
  }

  private volDir (volume: string): string {
    if (!STORE_NAME.test(volume)) throw new GvsError('invalid', `volume name "${volume}" is not valid: letters, digits and ._:@+- only, starting with a letter or digit`)
    return join(this.dir, 'objects', volume)
  }

  /** a layer about to be made or changed on disk: named (a valid name only) for takeTouched */
  private touch (volume: string): void {
    this.volDir(volume)
    this.touched.add(volume)
  }

  /**
   * The layers a write, zero, copy, epoch or freeze named since the last call (each names
   * its layer before it makes anything of it on disk): what a listing begun after may
   * lack. Reads, listings and removals do not count (rv43: inventories asked of every
   * node named every layer of the grid). Taken by the layer reclaim, whose record names
   * them (layer-reclaim.ts).
   */
  takeTouched (): Set<string> {
    const t = this.touched
    this.touched = new Set()
    return t
  }

  private paths (volume: string, index: number): { dir: string, data: string, sums: string } {
    if (!Number.isSafeInteger(index) || index < 0) throw new GvsError('invalid', `object index ${index} is not a non-negative integer`)
    const dir = this.volDir(volume)
    const data = join(dir, index.toString(16).padStart(8, '0'))
    return { dir, data, sums: `${data}.sum` }
  }

  /** throws `invalid` unless offset..offset+length lies within one object */
  checkRange (offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.objectSize) {
      throw new GvsError('invalid', `range ${offset}+${length} is outside an object of ${this.objectSize} bytes`)
    }
  }

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
    this.touch(volume)
    await this.epochs.admit(volume, epoch, opts.learnOnly === true)
  }

  /** a snapshot froze these layers: writes to them are refused from the return on (frozen-layers.ts) */
  async freeze (layers: readonly string[]): Promise<void> {
    for (const l of layers) this.volDir(l)
    for (const l of layers) this.touch(l)
    await this.frozen.add(layers)
  }

  // ---- data ----

  /** `length` bytes at `offset` of the object: zeros where nothing was written */
  async read (volume: string, index: number, offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length)
    const p = this.paths(volume, index)
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
    const span = this.spans.span(offset, length, false)
    // the common case, an object open and no write to it held or waiting: read and
    // check at once, without an await (nothing else runs meanwhile, so nothing needs
    // holding), instead of through the range lock and the object's hold
    if (span.end - span.start <= IN_PLACE_READ / this.blockSize && !this.spans.written(p.data)) {
      const o = this.open.hit(p.data)
      if (o != null) {
        const { data, bad } = readNow(o, this.blockSize, offset, length)
        if (bad.length > 0) this.damaged(volume, index, bad, p.data)
        return data
      }
    }
    return await this.spans.run(p, span, async () => await this.held.with(p, false, async o => {
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

  /**
   * Whether the object is here, and its version (NO_VERSION when absent); with `digest`,
   * also the CRC-32 of its block checksums, as of the same moment: two copies of one
   * version whose digests differ hold different data (versions.ts unifyPlan)
   */
  async stat (volume: string, index: number, opts: { digest?: boolean } = {}): Promise<{ present: boolean, version: Version, digest?: string }> {
    const p = this.paths(volume, index)
    return await this.spans.run(p, ObjectSpans.whole(false), async () => await this.held.with(p, false, async o =>
      o == null
        ? { present: false, version: NO_VERSION }
        : { present: true, version: o.version, ...(opts.digest === true ? { digest: digestOf(o.sumBuf) } : {}) }))
  }

  /** the whole object and its version (with `digest`, that of its checksums too), or null when absent: what repair copies to another holder */
  async readObject (volume: string, index: number, opts: { digest?: boolean } = {}): Promise<ObjectCopy & { digest?: string } | null> {
    const p = this.paths(volume, index)
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
    return await this.spans.run(p, ObjectSpans.whole(false), async () => await this.held.with(p, false, async o => {
      if (o == null) return null
      const { data, bad } = await readChecked(o, this.blockSize, 0, this.objectSize)
      if (bad.length > 0) this.damaged(volume, index, bad, p.data)
      return { data, version: o.version, ...(opts.digest === true ? { digest: digestOf(o.sumBuf) } : {}) }
    }))
  }

  async write (volume: string, index: number, offset: number, data: Uint8Array, opts: WriteOptions): Promise<void> {
    this.touch(volume)
    this.checkRange(offset, data.length)
    const p = this.paths(volume, index)
    if (data.length === 0) { await this.fence(volume, opts.epoch); return }
    // the range is taken at once (before any await), so requests to overlapping
    // blocks run in the order they were made; the writer's epoch is checked inside
    await this.spans.run(p, this.spans.span(offset, data.length, true), async () => {
      await this.fence(volume, opts.epoch)
      await this.room.admit(data.length, `writing object ${index} of "${volume}"`)
      await this.held.write(volume, index, p, offset, data, opts)
    })
    this.onWritten?.(volume, index)
  }

  /**
   * A whole object copied in (repair, a move, scrub): it replaces the copy here only
   * if its version is higher (with `replace`, a damaged copy, or an object an fsync
   * failed on: also an equal one; one whose side file cannot be read: whatever its version).
   * The check and the write are one hold of the object, so a writer's write that landed
   * in between (a higher version) is never overwritten by the older copy. The copy
   * teaches the volume's epoch but is not refused by it: its version decides. True
   * when the copy here was kept (as new or newer). `ifDigest`: only over a copy of the
   * same version whose checksums still have this digest (settler.ts: copies of one
   * version made alike; a write that landed since the copies were compared stays).
   */
  async put (volume: string, index: number, copy: ObjectCopy, opts: { epoch: number, replace?: boolean, ifAbsent?: boolean, ifDigest?: string }): Promise<boolean> {
    this.touch(volume)
    if (copy.data.length !== this.objectSize) throw new GvsError('invalid', `put needs a whole object of ${this.objectSize} bytes, not ${copy.data.length}`)
    const p = this.paths(volume, index)
    return await this.spans.run(p, ObjectSpans.whole(true), async () => {
      // a copy here that cannot be opened (its side file lost or torn) is as good as none
      // the digest only for a put that is conditional on it
      const held = await this.held.with(p, false, async o => o == null ? null : { version: o.version, digest: opts.ifDigest != null ? digestOf(o.sumBuf) : null }).catch((err: unknown) => {
        if (isGvsError(err, 'damaged')) return null
        throw err
      })
      const here = held?.version ?? null
      if (opts.ifDigest != null && (held == null || held.digest !== opts.ifDigest || compareVersions(held.version, copy.version) !== 0)) return true
      // a fold (layer-reclaim.ts) fills only what the layer lacks, whatever the versions
      if (here != null && opts.ifAbsent === true) return true
      if (here != null) {
        // replace overrides only the equal-version skip: a copy read before a write
        // landed here (scrub's get, then put) is older and must not undo that write.
        // A copy an fsync failed on is replaced by any copy as new, never by an older
        // one: its version still says which writes it took, and a writer that settled
        // the object counts on them (an older copy would hide the writes it lacks under
        // the next write's version)
        const c = compareVersions(here, copy.version)
        if (c > 0 || (c === 0 && opts.replace !== true && !this.syncs.isLost(p.data))) return true
      }
      await this.fence(volume, opts.epoch, { learnOnly: true })
      await this.room.admit(copy.data.length, `copying in object ${index} of "${volume}"`)
      await this.held.replace(volume, index, p, copy.data, copy.version)
      return false
    })
  }

  /** trim and write-zeroes: a whole object is deleted (thin again), a part zeroed */
  async zero (volume: string, index: number, offset: number, length: number, opts: WriteOptions): Promise<void> {
    this.touch(volume)
    this.checkRange(offset, length)
    const p = this.paths(volume, index)
    if (length === 0) {
      // nothing to zero: a version alone marks that copies elsewhere are behind
      // (replicated-volume.ts, a holder a write failed on that does not answer)
      await this.spans.run(p, ObjectSpans.whole(true), async () => {
        await this.fence(volume, opts.epoch)
        if (opts.version != null) await this.held.raiseVersion(volume, index, p, opts.version)
      })
      if (opts.fua === true) await this.syncObject(volume, index)
      return
    }
    if (offset === 0 && length === this.objectSize) {
      await this.spans.run(p, ObjectSpans.whole(true), async () => {
        await this.fence(volume, opts.epoch)
        // the data goes (thin again), the side file stays with the zeroing's version:
        // a copy that missed it must not bring the old data back as the newer one
        if (!(await this.held.with(p, false, async o => o != null))) return
        await this.held.replace(volume, index, p, null, opts.version ?? NO_VERSION, false)
        if (opts.fua === true) await this.syncObject(volume, index)
      })
      return
    }
    await this.spans.run(p, this.spans.span(offset, length, true), async () => {
      await this.fence(volume, opts.epoch)
      // zeroing an absent object changes nothing: it already reads as zeros
      if (!(await this.held.with(p, false, async o => o != null))) return
      await this.held.write(volume, index, p, offset, new Uint8Array(length), opts)
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
      await this.held.syncNames(p)
    } catch (err) { throw fromFsError(err, `syncing object ${index} of "${volume}"`) }
    if (this.syncs.isLost(p.data)) this.lost(volume, index)
  }

  /**
   * Everything written before this call, on stable storage: also what a flush still
   * in progress took to sync (store-syncs.ts). An fsync that fails fails this flush
   * and marks its object damaged, not dirty again. `volume`: the flush is that volume
   * writer's, which fails on the fsync errors met on its objects since its last flush
   * (by whichever flush: store-syncs.ts), and on no other volume's; without one (an
   * agent of an earlier release), on any volume's.
   */
  async flush (volume?: string): Promise<void> {
    await this.flushAs(volume === undefined ? 'any' : { volumeDir: this.volDir(volume) })
  }

  private async flushAs (scope: FlushScope): Promise<void> {
    this.writeback.flushed()
    try { await this.syncs.flush(scope) } catch (err) { throw err instanceof GvsError ? err : fromFsError(err, 'flush') }
    await this.intents.settled(this.unsynced).catch(err => { this.log.warn('could not shorten the write-intent log', { err: (err as Error).message }) })
  }

  /**
   * The objects present for a volume, each with its version; with `page`, only the
   * first `limit` present from index `from` on (a paged list reads the versions of its
   * page, not of the whole volume: a side file's tail each).
   */
  async inventory (volume: string, page?: { from: number, limit: number }): Promise<Array<{ index: number, version: Version }>> {
    return await inventoryOf(await this.list(volume), page, async index => {
      const p = this.paths(volume, index)
      // the open copy when there is one (it is what the file says, and what a write
      // in flight is about to make it), else the side file's tail
      const cached = this.open.peek(p.data)
      if (cached != null) return cached.version
      // removed meanwhile: not present; a damaged side file counts as the oldest copy
      return await readVersion(p.sums, this.sumBytes).catch(err => (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : NO_VERSION)
    })
  }

  /** indexes of the objects present for a volume */
  async list (volume: string): Promise<number[]> { return await objectIndexes(this.volDir(volume), volume) }

  /** the volumes with any object here */
  async volumes (): Promise<string[]> {
    const out: string[] = []
    for (const e of await readdir(this.objectsDir, { withFileTypes: true })) {
      if (!STORE_NAME.test(e.name)) continue
      // a link to a directory is one too (an operator's move to another disk)
      if (e.isDirectory() || (e.isSymbolicLink() && await stat(join(this.objectsDir, e.name)).then(x => x.isDirectory(), () => false))) { out.push(e.name); continue }
      // not a layer's directory (put there by hand): every listing of it failed, a scrub
      // with a 500 and its schedule without a word (bb41); named once, left alone
      if (this.strays.has(e.name)) continue
      this.strays.add(e.name)
      this.log.warn('a file in the object store that is no layer\'s directory: ignored (move it out of the store)', { path: join(this.objectsDir, e.name) })
    }
    return out.sort()
  }

  /** checks every block of one object: the damaged blocks (none: sound or absent) */
  async verify (volume: string, index: number): Promise<number[]> {
    const p = this.paths(volume, index)
    return await this.spans.run(p, ObjectSpans.whole(true), async () => {
      // an fsync failed on it: what is on disk is unknown, every block counts as damaged
      if (this.syncs.isLost(p.data)) return Array.from({ length: this.objectSize / this.blockSize }, (_, b) => b)
      // a scrub reads the checksums from disk, not the cached copy
      await this.open.drop(p.data)
      return await this.held.with(p, false, async o => {
        if (o == null) return []
        const { data, bad } = await readChecked(o, this.blockSize, 0, this.objectSize)
        readBuffers.give(data)
        return bad
      })
    })
  }

  async remove (volume: string, index: number): Promise<void> {
    const p = this.paths(volume, index)
    await this.spans.run(p, ObjectSpans.whole(true), async () => { await this.held.remove(p, false) })
  }

  /**
   * Frees a surplus copy (repair.ts): only while it is still at `version` and
   * `mayRemove()` (the quiet spell) holds, both checked inside the object's exclusive
   * hold, after every request to it that came first and before any that comes later.
   * A damaged or lost copy is kept (scrub's). Says whether it removed the copy, found
   * none, or kept it.
   */
  async retire (volume: string, index: number, version: Version, mayRemove: () => boolean): Promise<'removed' | 'absent' | 'kept'> {
    const p = this.paths(volume, index)
    return await this.spans.run(p, ObjectSpans.whole(true), async () => {
      if (this.syncs.isLost(p.data)) return 'kept'
      const here = await this.held.with(p, false, async o => o?.version ?? null).catch((err: unknown) => {
        if (isGvsError(err, 'damaged')) return undefined
        throw err
      })
      if (here === null) return 'absent'
      if (here === undefined || compareVersions(here, version) !== 0 || !mayRemove()) return 'kept'
      await this.held.remove(p, false)
      return 'removed'
    })
  }

  /**
   * Frees a layer's objects, its writer epoch and its freeze here. Runs once the requests
   * to its objects that began before have ended; those that come meanwhile (a fold's or
   * a repair's copy) wait and then find it gone. A copy one of them then writes makes
   * the layer held here again, freed by the background pass (layer-reclaim.ts).
   */
  async removeVolume (volume: string): Promise<void> {
    const dir = this.volDir(volume)
    await this.spans.removing(dir, async () => {
      await this.open.dropUnder(dir)
      this.syncs.forgetUnder(dir)
      try {
        // a file another process made there (or a fault) is retried for a while, then said
        await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
      } catch (err) { throw fromFsError(err, `removing the objects of layer "${volume}"`) }
      await this.epochs.forget(volume)
      await this.frozen.forget(volume)
    })
  }

  /**
   * Removes a layer's directory that holds no object any more (a drain or a repair
   * moved its copies to other nodes; bb26 found them left after a drain): under the
   * layer's gate, so that no copy is between making the directory and its file. A copy
   * that waited makes it again. Its writer epoch and freeze stay. True if it went.
   */
  async dropIfEmpty (volume: string): Promise<boolean> {
    const dir = this.volDir(volume)
    // one entry tells (a layer may hold 100,000 objects: not all of them listed)
    let empty = false
    try {
      const d = await opendir(dir)
      try { empty = (await d.read()) == null } finally { await d.close().catch(() => {}) }
    } catch { return false }
    if (!empty) return false
    return await this.spans.removing(dir, async () => {
      try {
        await rmdir(dir)
        return true
      } catch { return false } // a copy came meanwhile (ENOTEMPTY), or it went
    })
  }

  /**
   * The epoch a writer of the layer must reach here: the newest seen on it or on the
   * layers of its line under it (what a copy of one of its objects teaches its new holder)
   */
  async writerFloor (volume: string): Promise<number> {
    this.volDir(volume)
    return await this.epochs.floor(volume)
  }

  /** the lines (base layers) whose freed layers left a writer epoch floor here */
  async epochFloors (): Promise<string[]> { return await this.epochs.floors() }

  /** the layers this store has objects, a writer epoch or a freeze of */
  async layers (): Promise<string[]> {
    return [...new Set([...await this.volumes(), ...await this.epochs.layers(), ...this.frozen.list()])].sort()
  }

  /** Every layer of the line (base layer `base` and `base@N`) is gone for good: what its writer epochs left goes too. */
  async forgetLine (base: string): Promise<void> {
    this.volDir(base)
    await this.epochs.forgetLine(base)
  }

  // ---- internals ----

  private lost (volume: string, index: number): never {
    throw new GvsError('damaged', `object ${index} of volume "${volume}" is damaged: an fsync of it failed, so what is on disk is unknown (a whole copy rewrites it)`)
  }

  /**
   * A whole object whose copy here counts as damaged until a copy from another node
   * rewrites it: an fsync of its files failed (store-syncs.ts), or a power loss cut its
   * creation short after data landed (open-objects.ts). Reported once each time.
   */
  private wholeDamaged (data: string, why: string): void {
    const volume = basename(dirname(data))
    const index = parseInt(basename(data), 16)
    this.repeats.log(this.log, 'error', `whole:${volume}:${why}`, `${why}: its copy counts as damaged until rewritten`, { volume, index, path: data })
    this.emit('damaged', { volume, index, blocks: Array.from({ length: this.objectSize / this.blockSize }, (_, b) => b), path: data })
  }

  private damaged (volume: string, index: number, blocks: number[], path: string): never {
    const report = { volume, index, blocks, path }
    this.log.error('damaged object: checksum mismatch, not served', { volume, index, blocks: blocks.join(','), path })
    this.emit('damaged', report)
    throw new GvsError('damaged', `object ${index} of volume "${volume}" is damaged (blocks ${blocks.join(',')} fail their checksum)`)
  }
}
