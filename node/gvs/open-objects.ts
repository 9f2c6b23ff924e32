// Open objects: the data and checksum file handles of recently used objects, and the
// checksums themselves, kept so that a 4 KiB request costs one pread (and one pwrite
// of data and of the checksum) instead of two opens and closes. Least recently used
// entries are closed past `max`; an entry in use is never closed under its user.
// Several requests may acquire one object at once (they hold different blocks of it):
// the first opens it and the others wait for that open instead of opening it again.
import { open, type FileHandle } from 'node:fs/promises'
import { GvsError, fromFsError } from './errors.ts'
import { NO_VERSION, VERSION_BYTES, decodeVersion, type Version } from './versions.ts'

export interface OpenObject {
  readonly data: FileHandle
  readonly sums: FileHandle
  /** the checksum file's content, kept in step with it */
  readonly sumBuf: Uint8Array
  /** the highest version applied (versions.ts), kept in step with the side file's tail */
  version: Version
  refs: number
  /** dropped while in use: closed by the last release (a read on a worker thread uses the raw descriptor) */
  dropped?: boolean
}

export interface ObjectPaths { dir: string, data: string, sums: string }

export class OpenObjects {
  private readonly max: number
  private readonly entries = new Map<string, OpenObject>()
  private readonly opening = new Map<string, Promise<unknown>>()

  /** a fresh object's side file (every block zero, no version), to finish a creation that did not reach the disk */
  private readonly freshSide?: () => Uint8Array
  /** an object whose side file is missing or short while its data file has data: reported (heal rewrites it) */
  private readonly onIncomplete?: (dataPath: string) => void

  constructor (max = 256, opts: { freshSide?: () => Uint8Array, onIncomplete?: (dataPath: string) => void } = {}) {
    this.max = max
    this.freshSide = opts.freshSide
    this.onIncomplete = opts.onIncomplete
  }

  /** the open object, or null when its data file does not exist */
  async acquire (p: ObjectPaths, sumBytes: number): Promise<OpenObject | null> {
    for (let o = this.opening.get(p.data); o != null; o = this.opening.get(p.data)) await o.catch(() => {})
    const hit = this.entries.get(p.data)
    if (hit != null) {
      // move to the back: most recently used
      this.entries.delete(p.data)
      this.entries.set(p.data, hit)
      hit.refs++
      return hit
    }
    const opened = this.openNew(p, sumBytes)
    this.opening.set(p.data, opened)
    try { return await opened } finally { this.opening.delete(p.data) }
  }

  private async openNew (p: ObjectPaths, sumBytes: number): Promise<OpenObject | null> {
    let data: FileHandle
    try { data = await open(p.data, 'r+') } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw fromFsError(err, `opening ${p.data}`)
    }
    let sums: FileHandle
    try { sums = await open(p.sums, 'r+') } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') { await data.close(); throw fromFsError(err, `opening ${p.sums}`) }
      sums = await this.finishCreation(p, data, 'has no checksum file')
    }
    // checksums, then the version; a side file of before versions ends after the checksums
    const file = new Uint8Array(sumBytes + VERSION_BYTES)
    let version: Version
    try {
      let { bytesRead } = await sums.read(file, 0, file.length, 0)
      if (bytesRead < sumBytes) {
        await sums.close()
        sums = await this.finishCreation(p, data, `has a checksum file of ${bytesRead} bytes, not ${file.length}`)
        bytesRead = (await sums.read(file, 0, file.length, 0)).bytesRead
      }
      if (bytesRead === sumBytes) version = NO_VERSION
      else if (bytesRead !== file.length) throw new GvsError('damaged', `checksum file ${p.sums} is ${bytesRead} bytes, not ${file.length}`)
      else {
        const v = decodeVersion(file.subarray(sumBytes))
        if (v == null) throw new GvsError('damaged', `checksum file ${p.sums} ends in no version`)
        version = v
      }
    } catch (err) {
      await data.close()
      await sums.close()
      throw err instanceof GvsError ? err : fromFsError(err, `reading ${p.sums}`)
    }
    const o: OpenObject = { data, sums, sumBuf: file.subarray(0, sumBytes), version, refs: 1 }
    this.entries.set(p.data, o)
    await this.evict()
    return o
  }

  /**
   * A side file missing or shorter than its checksums: the object's creation (side file,
   * then data file, both synced by the next flush) did not reach the disk whole before a
   * power loss. With an empty data file nothing was written to it: it is made a fresh
   * object. With data, what the checksums were is lost: damaged (reported, so a copy
   * from another node rewrites it). Closes `data` when it throws.
   */
  private async finishCreation (p: ObjectPaths, data: FileHandle, what: string): Promise<FileHandle> {
    let size: number
    try { size = (await data.stat()).size } catch (err) { await data.close(); throw fromFsError(err, `reading ${p.data}`) }
    if (size > 0 || this.freshSide == null) {
      await data.close()
      this.onIncomplete?.(p.data)
      throw new GvsError('damaged', `object ${p.data} ${what}`)
    }
    try {
      const sums = await open(p.sums, 'w+')
      await sums.write(this.freshSide(), 0)
      return sums
    } catch (err) { await data.close(); throw fromFsError(err, `writing ${p.sums}`) }
  }

  /** the open object, if it is open, as most recently used, without taking it (for a use that does not await) */
  hit (dataPath: string): OpenObject | undefined {
    const o = this.entries.get(dataPath)
    if (o != null) {
      this.entries.delete(dataPath)
      this.entries.set(dataPath, o)
    }
    return o
  }

  /** the open object, if it is open, without taking it */
  peek (dataPath: string): OpenObject | undefined { return this.entries.get(dataPath) }

  async release (o: OpenObject): Promise<void> {
    o.refs--
    if (o.dropped === true) {
      if (o.refs === 0) await closeHandles(o)
      return
    }
    await this.evict()
  }

  /**
   * Forgets one object (before it is unlinked or replaced, or the store stops) and
   * closes it, or, while someone still uses it, lets their last release close it: a
   * descriptor closed under a read on a worker thread could be reused by another file.
   */
  async drop (dataPath: string): Promise<void> {
    const o = this.entries.get(dataPath)
    if (o == null) return
    this.entries.delete(dataPath)
    if (o.refs > 0) { o.dropped = true; return }
    await closeHandles(o)
  }

  /** closes and forgets every object under a directory */
  async dropUnder (dir: string): Promise<void> {
    for (const path of [...this.entries.keys()]) if (path.startsWith(dir + '/')) await this.drop(path)
  }

  async closeAll (): Promise<void> {
    for (const path of [...this.entries.keys()]) await this.drop(path)
  }

  private async evict (): Promise<void> {
    if (this.entries.size <= this.max) return
    for (const [path, o] of this.entries) {
      if (this.entries.size <= this.max) break
      if (o.refs === 0) await this.drop(path)
    }
  }
}

async function closeHandles (o: OpenObject): Promise<void> {
  await Promise.allSettled([o.data.close(), o.sums.close()])
}
