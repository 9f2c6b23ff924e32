// What the object store (object-store.ts) does to one object's files while it holds a
// span of the object (range-lock.ts): open it (creating it for a write), write a range,
// raise its version, replace it whole, remove it. Each records what the next flush must
// sync (store-syncs.ts); a FUA write syncs at once.
import { unlink } from 'node:fs/promises'
import { GvsError, fromFsError, isGvsError } from './errors.ts'
import type { OpenObjects, ObjectPaths, OpenObject } from './open-objects.ts'
import { NO_VERSION, encodeVersion, newer, type Version } from './versions.ts'
import { ignoreEnoent, readVersion, writeFully } from './file-io.ts'
import type { StoreSyncs } from './store-syncs.ts'
import { createObject, trueToData, writeRange, writeWhole, type Geometry } from './object-files.ts'
import type { WriteIntents } from './write-intents.ts'

export interface HeldObjectsComponents {
  open: OpenObjects
  syncs: StoreSyncs
  geometry: Geometry
  /** <dir>/objects, where each volume has its directory */
  objectsDir: string
  /** blocks that fail their checksum: reported, and the request fails */
  damaged: (volume: string, index: number, blocks: number[], path: string) => never
  /** the objects written since their last sync, named before each is first written (write-intents.ts) */
  intents: Pick<WriteIntents, 'begin' | 'done'>
}

export class HeldObjects {
  private readonly c: HeldObjectsComponents
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor (components: HeldObjectsComponents) { this.c = components }

  /** runs fn with the mutex of `key` held (object creation) */
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

  /** runs fn with the object open (null: absent, unless create); the caller holds a range of it */
  async with<T> (p: ObjectPaths, create: boolean, fn: (o: OpenObject | null) => Promise<T>): Promise<T> {
    const { open, syncs, geometry } = this.c
    let o = await open.acquire(p, geometry.sumBytes)
    if (o == null && create) {
      // writers to different blocks of a new object race here: one creates, under a
      // mutex, and the others find its files (create truncates, so never twice)
      await this.locked(`create:${p.data}`, async () => {
        const again = await open.acquire(p, geometry.sumBytes)
        if (again != null) { await open.release(again); return }
        const madeDir = await createObject(p, geometry)
        // the new names are synced by the next flush, or FUA write to the object,
        // whether or not the write that created it succeeds
        syncs.add(p.dir + '/')
        if (madeDir) syncs.add(this.c.objectsDir + '/')
      })
      o = await open.acquire(p, geometry.sumBytes)
    }
    try {
      return await fn(o)
    } finally {
      if (o != null) await open.release(o)
    }
  }

  /** a new object's directory entry, and a new volume directory's, where not synced yet */
  async syncNames (p: ObjectPaths): Promise<void> {
    // also while a flush that took them is syncing them: that flush may not have yet
    await this.c.syncs.syncPending([p.dir + '/', this.c.objectsDir + '/'])
  }

  /** `bytes` at `offset` of the object (created if absent); the caller holds the range */
  async write (volume: string, index: number, p: ObjectPaths, offset: number, bytes: Uint8Array, opts: { fua?: boolean, version?: Version }): Promise<void> {
    const fua = opts.fua === true
    const syncs = this.c.syncs
    await this.intended(p, async () => await this.with(p, true, async o => {
      if (o == null) throw new GvsError('io', `object ${p.data} could not be created`)
      const bad = await writeRange(o, this.c.geometry.blockSize, offset, bytes, `object ${index} of "${volume}"`)
      if (bad.length > 0) this.c.damaged(volume, index, bad, p.data)
      if (opts.version != null) await this.setVersion(o, opts.version, volume, index)
      if (fua) {
        try {
          // a failed fsync may have dropped earlier writes to the object too (store-syncs.ts):
          // those that waited for a flush are owed to the next ones (this error answers this write only)
          const earlier = syncs.pending(p.data) || syncs.pending(p.sums) ? 0 : undefined
          await o.data.sync().catch(err => { syncs.markLost(p.data, err, earlier); throw err })
          await o.sums.sync().catch(err => { syncs.markLost(p.data, err, earlier); throw err })
          // a new object's name too, also when a concurrent write created it
          await this.syncNames(p)
        } catch (err) { throw fromFsError(err, `syncing object ${index} of "${volume}"`) }
      } else {
        syncs.add(p.data)
        syncs.add(p.sums)
      }
    }))
  }

  /**
   * Raises the object's version to v (with `force`, sets it). Writes to other blocks of
   * the object run at once: the check and the new value are taken before any await, so
   * a lower version finishing later never overwrites a higher one.
   */
  async setVersion (o: OpenObject, v: Version, volume: string, index: number, force = false): Promise<void> {
    if (!force && !newer(v, o.version)) return
    o.version = v
    await writeFully(o.sums, encodeVersion(v), this.c.geometry.sumBytes).catch(err => { throw fromFsError(err, `writing the version of object ${index} of "${volume}"`) })
  }

  /**
   * The whole object becomes `data` (null: zeros) at version v (`force`: even a lower
   * one, as a copy that replaces a damaged one), written sparse (object-files.ts). The
   * caller holds the whole object. Synced by the caller (flush, syncObject) like a write.
   */
  async replace (volume: string, index: number, p: ObjectPaths, data: Uint8Array | null, v: Version, force = true): Promise<void> {
    try {
      await this.replaceOnce(volume, index, p, data, v, force)
    } catch (err) {
      if (!isGvsError(err, 'damaged')) throw err
      // a copy here that cannot even be opened (its side file lost) is replaced whole all the same
      await this.remove(p, false)
      await this.replaceOnce(volume, index, p, data, v, force)
    }
  }

  private async replaceOnce (volume: string, index: number, p: ObjectPaths, data: Uint8Array | null, v: Version, force: boolean): Promise<void> {
    const syncs = this.c.syncs
    await this.intended(p, async () => await this.with(p, true, async o => {
      if (o == null) throw new GvsError('io', `object ${p.data} could not be created`)
      try { await writeWhole(o, data, this.c.geometry) } catch (err) { throw fromFsError(err, `replacing object ${index} of "${volume}"`) }
      await this.setVersion(o, v, volume, index, force)
      // written whole: no longer what a failed fsync left (synced as any write is)
      syncs.rewritten(p.data)
      syncs.add(p.data)
      syncs.add(p.sums)
    }))
  }

  /** Raises the version of the object, if it is here (a version alone: copies elsewhere are behind). */
  async raiseVersion (volume: string, index: number, p: ObjectPaths, v: Version): Promise<void> {
    await this.intended(p, async () => await this.with(p, false, async o => {
      if (o == null) return
      await this.setVersion(o, v, volume, index)
      this.c.syncs.add(p.sums)
    }))
  }

  /**
   * The object's version as it stands (NO_VERSION: absent), or null when its side file
   * cannot say: the open copy's (what its file holds, or a write in flight is about to
   * make it) or the side file's tail.
   */
  async versionOf (p: ObjectPaths): Promise<Version | null> {
    const open = this.c.open.peek(p.data)
    if (open != null) return open.version
    return await readVersion(p.sums, this.c.geometry.sumBytes).catch(err => (err as NodeJS.ErrnoException).code === 'ENOENT' ? NO_VERSION : null)
  }

  /**
   * Lowers the object's version to `v` if it is higher, synced (write-intents.ts: after a
   * server restart, what the last sync made sure of). The version it had, or null when
   * it was not lowered (absent, or not higher).
   */
  async lowerVersion (volume: string, index: number, p: ObjectPaths, v: Version): Promise<Version | null> {
    return await this.with(p, false, async o => {
      if (o == null || !newer(o.version, v)) return null
      const was = o.version
      await this.setVersion(o, v, volume, index, true)
      try { await o.sums.sync() } catch (err) { throw fromFsError(err, `syncing the version of object ${index} of "${volume}"`) }
      return was
    })
  }

  /** The object's checksums made true to its data, if it is here (write-intents.ts): the blocks made so. */
  async trueToData (p: ObjectPaths): Promise<number[]> {
    return await this.with(p, false, async o => o == null ? [] : await trueToData(o, this.c.geometry))
  }

  /** fn, a change to the object's files, with the object named in the write-intent log first (with its version before it) */
  private async intended<T> (p: ObjectPaths, fn: () => Promise<T>): Promise<T> {
    await this.c.intents.begin(p.data, async () => await this.versionOf(p))
    try { return await fn() } finally { this.c.intents.done(p.data) }
  }

  /** the object's files gone; the caller holds the whole object */
  async remove (p: ObjectPaths, sync: boolean): Promise<void> {
    const { open, syncs } = this.c
    await open.drop(p.data)
    try {
      // data first: a side file without data is a harmless leftover, the reverse is "damaged"
      await unlink(p.data).catch(ignoreEnoent)
      await unlink(p.sums).catch(ignoreEnoent)
      syncs.forget(p.data)
      syncs.forget(p.sums)
      syncs.rewritten(p.data)
      if (sync) await syncs.syncNow(p.dir + '/')
      else syncs.add(p.dir + '/')
    } catch (err) { throw fromFsError(err, `removing ${p.data}`) }
  }
}
