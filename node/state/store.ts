// The document on disk, in <data-dir>/state/: a snapshot (the whole document) and an
// append-only log of the changes made since. Each has a magic header and every
// payload a length and a CRC-32, so damage is found here rather than guessed at by
// Automerge (which skips bytes it cannot parse). An append counts once all its bytes
// are written and fdatasync'ed; one that fails is cut off again (ftruncate) so the log
// never holds a torn record followed by good ones. The log is opened with O_DSYNC, so an
// append is one write that returns once durable, its identity checks running beside it:
// every step of a write waits for the event loop to come round (a busy agent's loop
// turn can take a second), and four sequential steps made each write wait four turns.
// A snapshot is written to a temporary
// file, checked, fsync'ed with its directory, and only then renamed over the old one;
// from that rename on it counts, whatever happens to the log after it.
// Every I/O failure comes out as a DiskError naming its cause.
import { copyFile, link, open, rename, mkdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import { crc32 } from 'node:zlib'
import { join } from 'node:path'

export const SNAPSHOT_FILE = 'snapshot'
export const LOG_FILE = 'log'
const SNAPSHOT_MAGIC = Buffer.from('VGSNAP1\n')
const LOG_MAGIC = Buffer.from('VGLOG01\n')
const HEADER = 8 // u32 length + u32 crc32, big-endian
/** the log's open flags: appends, each write durable (data and size) when it returns, as after fdatasync */
const LOG_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC

export type StateFile = 'snapshot' | 'log'

export interface DiskProblem {
  file: StateFile
  path: string
  detail: string
}

export interface DiskContents {
  snapshot?: Uint8Array
  /** the log's complete, intact records, in order (after a damaged one, nothing) */
  records: Uint8Array[]
  problems: DiskProblem[]
}

function frame (payload: Uint8Array): Buffer {
  const h = Buffer.alloc(HEADER)
  h.writeUInt32BE(payload.byteLength, 0)
  h.writeUInt32BE(crc32(payload), 4)
  return Buffer.concat([h, payload])
}

/**
 * The most of the log read, or twice the snapshot if more: the log is compacted into
 * the snapshot once it passes 4 MiB and the snapshot's size (persister.ts); past this it
 * is damage, and reading it whole took gigabytes of memory (bb35: a log of 1.5 GB ran
 * the agent out of heap, naming nothing). The snapshot is read whole whatever its size
 * (rv40: one over a bound was set aside with its log, and a node alone lost its
 * document); its checksum tells garbage.
 */
export const STATE_READ_MAX = 256 * 1024 * 1024

/**
 * A state file's bytes (undefined: there is none), at most `max` of them, or why it
 * cannot be one: not a regular file (bb35: a log linked to /dev/zero was read for ever),
 * or longer than `max` (its first `max` bytes are given with the problem).
 */
async function readOptional (path: string, max = STATE_READ_MAX): Promise<{ bytes?: Buffer, problem?: string } | undefined> {
  const fail = (err: unknown): never => {
    // fs errors name no path (EISDIR: a directory made where the file goes)
    throw Object.assign(new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err }), { code: (err as NodeJS.ErrnoException).code })
  }
  let fh: FileHandle
  try {
    const st = await stat(path)
    if (!st.isFile() && !st.isDirectory()) return { problem: `is not a regular file (${st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isFIFO() ? 'a pipe' : st.isSocket() ? 'a socket' : 'not a file'})` }
    fh = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return fail(err)
  }
  try {
    const size = (await fh.stat()).size
    const want = Math.min(size, max)
    const bytes = Buffer.alloc(want)
    let got = 0
    while (got < want) {
      const { bytesRead } = await fh.read(bytes, got, want - got, got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    return { bytes: bytes.subarray(0, got), ...(size > max ? { problem: `is ${size} bytes, more than the ${max} the log reaches (twice the snapshot, at least 256 MiB): only its first ${max} bytes were read` } : {}) }
  } catch (err) {
    return fail(err)
  } finally {
    await fh.close()
  }
}

/** What went wrong with the disk, as operators name it. */
export type DiskCause = 'disk-full' | 'io-error' | 'read-only' | 'dir-replaced' | 'short-write' | 'other'

/** A state file could not be written; nothing of the write counts. */
export class DiskError extends Error {
  override name = 'DiskError'
  readonly reason: DiskCause
  readonly code: string | undefined
  constructor (reason: DiskCause, message: string, code?: string) {
    super(message)
    this.reason = reason
    this.code = code
  }
}

/** errno -> cause (pure) */
export function diskCause (code: string | undefined): DiskCause {
  switch (code) {
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG': return 'disk-full'
    case 'EIO': case 'EBADF': case 'ESTALE': return 'io-error'
    case 'EPERM': case 'EACCES': case 'EROFS': return 'read-only'
    case 'ENOENT': case 'ENOTDIR': return 'dir-replaced'
    default: return 'other'
  }
}

function asDiskError (err: unknown, what: string): DiskError {
  if (err instanceof DiskError) return err
  const e = err as NodeJS.ErrnoException
  return new DiskError(diskCause(e.code), `${what}: ${e.message}`, e.code)
}

/** Writes all of `buf` at `position` or throws (a short write is retried once, then is an error). */
async function writeAll (fh: FileHandle, buf: Buffer, position: number | null, what: string): Promise<void> {
  let done = 0
  let zero = 0
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position == null ? null : position + done)
    if (bytesWritten === 0 && ++zero > 1) throw new DiskError('short-write', `${what}: wrote ${done} of ${buf.length} bytes`)
    done += bytesWritten
  }
}

async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

export class StateStore {
  readonly dir: string
  private logFh?: FileHandle
  private logBytes = 0
  private logRecords = 0
  private snapshotBytes = 0
  /** dev:ino of the state directory and of the open log, to notice either being removed or replaced */
  private dirId?: string
  private logId?: string
  /**
   * no appends until a snapshot starts a new log: the log could not be cut back after a
   * failed append, or not be started afresh after a snapshot, or is a damaged one kept
   * in place until the snapshot holding its intact records is written
   */
  private broken?: DiskError

  constructor (dataDir: string) {
    this.dir = join(dataDir, 'state')
  }

  path (f: StateFile): string { return join(this.dir, f === 'snapshot' ? SNAPSHOT_FILE : LOG_FILE) }

  get sizes (): { snapshotBytes: number, logBytes: number, logRecords: number } {
    return { snapshotBytes: this.snapshotBytes, logBytes: this.logBytes, logRecords: this.logRecords }
  }

  /** Reads and checks both files. Never throws for damaged content, only for I/O errors. */
  async read (): Promise<DiskContents> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 })
    } catch (err) {
      // a file where the directory belongs (EEXIST), or under it (ENOTDIR): say which, not "mkdir: EEXIST"
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new Error(`the document's directory ${this.dir} cannot be made: a file is in its place (${code}); move that file away`, { cause: err })
      throw err
    }
    const out: DiskContents = { records: [], problems: [] }
    const snapFile = await readOptional(this.path('snapshot'), Infinity)
    const snap = snapFile?.bytes
    if (snapFile?.problem != null) out.problems.push({ file: 'snapshot', path: this.path('snapshot'), detail: snapFile.problem })
    else if (snap != null) {
      const bad = (detail: string): void => { out.problems.push({ file: 'snapshot', path: this.path('snapshot'), detail }) }
      if (snap.length < SNAPSHOT_MAGIC.length + HEADER || !snap.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) {
        bad(otherFormat(snap, /^VGSNAP(\d)\n/, SNAPSHOT_MAGIC, 'snapshot') ?? `not a vgrid state snapshot (${snap.length} bytes, bad header)`)
      } else {
        const len = snap.readUInt32BE(8)
        const payload = snap.subarray(8 + HEADER)
        if (payload.length !== len) bad(`truncated or overlong: header says ${len} bytes, file holds ${payload.length}`)
        else if (crc32(payload) !== snap.readUInt32BE(12)) bad('checksum mismatch')
        else out.snapshot = payload
      }
    }
    const logFile = await readOptional(this.path('log'), Math.max(STATE_READ_MAX, 2 * (snap?.length ?? 0)))
    const log = logFile?.bytes
    if (log != null && log.length > 0) {
      const parsed = parseLog(log)
      out.records = parsed.records
      if (parsed.problem != null) out.problems.push({ file: 'log', path: this.path('log'), detail: parsed.problem })
    }
    // a log too long is read up to the bound: its intact records there are kept, the rest comes from peers
    if (logFile?.problem != null && !out.problems.some(p => p.file === 'log')) out.problems.push({ file: 'log', path: this.path('log'), detail: logFile.problem })
    this.snapshotBytes = snap?.length ?? 0
    return out
  }

  /** why appends are refused until the next snapshot starts a new log (undefined: they are not) */
  get appendsRefused (): DiskError | undefined { return this.broken }

  private asideName (f: StateFile, now: Date): string {
    return `${this.path(f)}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`
  }

  /** Moves a damaged file out of the way (kept for inspection); returns where it went. */
  async setAside (f: StateFile, now = new Date()): Promise<string> {
    if (f === 'log') await this.closeLog()
    const to = this.asideName(f, now)
    await rename(this.path(f), to)
    await fsyncDir(this.dir)
    if (f === 'snapshot') this.snapshotBytes = 0
    return to
  }

  /**
   * Keeps a copy of a damaged log for inspection and leaves the log itself in place,
   * closed to appends, until the next writeSnapshot() starts a new one: its intact
   * records are in the document but in no snapshot yet, and a crash before that
   * snapshot must find them again. Returns where the copy went.
   */
  async keepAside (now = new Date()): Promise<string> {
    await this.closeLog()
    const to = this.asideName('log', now)
    try {
      await link(this.path('log'), to)
    } catch {
      await copyFile(this.path('log'), to) // a filesystem without hard links
    }
    await fsyncDir(this.dir)
    this.broken = new DiskError('other', `the log ${this.path('log')} is damaged (kept as ${to}): no appends until a snapshot starts a new log`)
    return to
  }

  /** Opens the log for appending (creating it if needed). */
  async openLog (): Promise<void> {
    if (this.logFh != null) return
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 })
      await this.noteDir()
      // a log closed to appends stays closed until a snapshot starts a new one
      if (this.broken != null) return
      let size = 0
      try {
        size = (await stat(this.path('log'))).size
      } catch {}
      // shorter than its header (cut while it was created): nothing in it, and a
      // record appended after it would make the whole file unreadable
      if (size < LOG_MAGIC.length) {
        await this.resetLog()
      } else {
        this.logFh = await open(this.path('log'), LOG_FLAGS, 0o600)
        this.logId = idOf(await this.logFh.stat())
        this.logBytes = size
      }
    } catch (err) {
      throw asDiskError(err, `opening ${this.path('log')}`)
    }
  }

  /**
   * Forgets the old files' identity after disk trouble: the next writeSnapshot() then
   * starts the directory afresh (re-created if it was removed). A log that could not
   * be cut back stays closed to appends until that snapshot has started a new one.
   */
  async reopen (): Promise<void> {
    await this.closeLog().catch(() => {})
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 })
      await this.noteDir()
    } catch (err) {
      throw asDiskError(err, `re-creating ${this.dir}`)
    }
  }

  /** Throws a DiskError if the state directory or the open log is no longer the one we opened. */
  async checkDir (): Promise<void> {
    // both looked up at once (one turn of the event loop, not two)
    const [dir, log] = await Promise.allSettled([stat(this.dir), this.logFh == null ? null : stat(this.path('log'))])
    if (dir.status === 'rejected') {
      const err = dir.reason as NodeJS.ErrnoException
      throw new DiskError('dir-replaced', `the state directory ${this.dir} is gone (${err.code ?? err.message}): it was removed while the agent ran`)
    }
    if (this.dirId != null && idOf(dir.value) !== this.dirId) throw new DiskError('dir-replaced', `the state directory ${this.dir} was replaced while the agent ran`)
    if (this.logFh == null || this.logId == null) return
    if (log.status === 'rejected' || log.value == null) throw new DiskError('dir-replaced', `the state log ${this.path('log')} was removed while the agent ran`)
    if (idOf(log.value) !== this.logId) throw new DiskError('dir-replaced', `the state log ${this.path('log')} was replaced while the agent ran`)
  }

  /**
   * Appends one record and makes it durable. On any failure the log is cut back to
   * its last good record and a DiskError is thrown: the record does not count.
   */
  async append (payload: Uint8Array): Promise<void> {
    if (this.broken != null) throw this.broken
    // nothing to keep (an empty record would read as the start of zeros: parseLog)
    if (payload.byteLength === 0) return
    if (this.logFh == null) await this.openLog()
    const fh = this.logFh!
    const buf = frame(payload)
    const good = this.logBytes
    try {
      // the record and the checks that it goes to the directory we opened, at once: a
      // record written to a removed or replaced log does not count (and is cut off)
      const [checked, written] = await Promise.allSettled([
        this.checkDir(),
        writeAll(fh, buf, null, `appending ${buf.length} bytes to ${this.path('log')}`)
      ])
      if (checked.status === 'rejected') throw checked.reason
      if (written.status === 'rejected') throw written.reason
    } catch (err) {
      const e = asDiskError(err, `appending ${buf.length} bytes to ${this.path('log')}`)
      try {
        await fh.truncate(good)
        await fh.datasync()
      } catch (err2) {
        // a torn record we cannot remove: nothing more goes into this file
        this.broken = new DiskError(e.reason, `${e.message}; and the log could not be cut back to its last good record (${(err2 as Error).message})`, e.code)
        await this.closeLog().catch(() => {})
      }
      throw e
    }
    this.logBytes += buf.length
    this.logRecords++
  }

  /**
   * Replaces the snapshot with `payload` and empties the log; crash-safe at every
   * step. A failure before the new snapshot is renamed in place leaves the old snapshot
   * and log as they were and throws a DiskError. From the rename on the snapshot is the
   * one a restart reads, so the write counts: a failure after it (the directory's fsync,
   * starting the new log) is returned, not thrown, and appends are refused until a later
   * snapshot starts a new log. The log then holds only records the snapshot holds too
   * (replayed over it at a restart: harmless), or just its header; nothing is appended
   * to it, since a record after a rename not known to be durable could be lost with it.
   */
  async writeSnapshot (payload: Uint8Array): Promise<DiskError | undefined> {
    await this.checkDir()
    const tmp = this.path('snapshot') + '.tmp'
    const buf = Buffer.concat([SNAPSHOT_MAGIC, frame(payload)])
    let fh: FileHandle | undefined
    let renamed = false
    let problem: DiskError | undefined
    try {
      fh = await open(tmp, 'w', 0o600)
      await writeAll(fh, buf, 0, `writing ${tmp}`)
      await fh.sync()
      const size = (await fh.stat()).size
      if (size !== buf.length) throw new DiskError('short-write', `${tmp} holds ${size} of ${buf.length} bytes after writing`)
      await fh.close()
      fh = undefined
      await fsyncDir(this.dir)
      await rename(tmp, this.path('snapshot'))
      renamed = true
      await fsyncDir(this.dir)
    } catch (err) {
      if (!renamed) {
        await fh?.close().catch(() => {})
        await unlink(tmp).catch(() => {})
        throw asDiskError(err, `writing the snapshot ${this.path('snapshot')}`)
      }
      // the old log is kept as it is: with the rename maybe not durable, a crash may
      // bring back the old snapshot, which needs it
      problem = asDiskError(err, `syncing ${this.dir} after renaming the snapshot in place`)
    }
    this.snapshotBytes = buf.length
    if (problem == null) {
      try {
        await this.resetLog()
        return undefined
      } catch (err) {
        problem = asDiskError(err, `starting a new log ${this.path('log')}`)
      }
    }
    await this.closeLog().catch(() => {})
    this.broken = new DiskError(problem.reason, `${problem.message} (the snapshot is saved; no appends until a snapshot starts a new log)`, problem.code)
    return this.broken
  }

  private async noteDir (): Promise<void> {
    this.dirId = idOf(await stat(this.dir))
  }

  private async resetLog (): Promise<void> {
    await this.closeLog()
    const tmp = this.path('log') + '.tmp'
    let fh: FileHandle | undefined
    try {
      fh = await open(tmp, 'w', 0o600)
      await writeAll(fh, LOG_MAGIC, 0, `writing ${tmp}`)
      await fh.sync()
      await fh.close()
      fh = undefined
      await rename(tmp, this.path('log'))
      await fsyncDir(this.dir)
    } catch (err) {
      await fh?.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      throw err
    }
    this.logFh = await open(this.path('log'), LOG_FLAGS, 0o600)
    this.logId = idOf(await this.logFh.stat())
    this.logBytes = LOG_MAGIC.length
    this.logRecords = 0
    this.broken = undefined
  }

  private async closeLog (): Promise<void> {
    const fh = this.logFh
    this.logFh = undefined
    this.logId = undefined
    await fh?.close()
  }

  async close (): Promise<void> {
    await this.closeLog()
  }
}

function idOf (s: { dev: number, ino: number }): string { return `${s.dev}:${s.ino}` }

/** a file of this store's kind in a format version this release does not read (bb41 read "bad header" of one): said so; null otherwise */
function otherFormat (file: Buffer, magic: RegExp, current: Buffer, what: string): string | null {
  // this release's own, cut short: a bad header, not another format (rv43)
  if (file.subarray(0, current.length).equals(current)) return null
  const m = magic.exec(file.subarray(0, 16).toString('latin1'))
  return m == null ? null : `a vgrid state ${what} of format ${m[1]!}, which this release does not read (written by a newer vgrid?)`
}

/** Splits a log file into its intact records (pure); `problem` says where and why it stops early. */
export function parseLog (log: Buffer): { records: Uint8Array[], problem?: string } {
  const records: Uint8Array[] = []
  if (log.length < LOG_MAGIC.length || !log.subarray(0, LOG_MAGIC.length).equals(LOG_MAGIC)) {
    // a log cut inside its header (a crash while it was created) holds nothing
    if (log.length < LOG_MAGIC.length && LOG_MAGIC.subarray(0, log.length).equals(log)) return { records }
    return { records, problem: otherFormat(log, /^VGLOG(\d\d)\n/, LOG_MAGIC, 'log') ?? 'not a vgrid state log (bad header)' }
  }
  let at = LOG_MAGIC.length
  /** the last byte of the log that is not zero (found once, at the first empty record) */
  let lastData: number | undefined
  while (at < log.length) {
    if (log.length - at < HEADER) return { records, problem: `ends in a partial record header at byte ${at} (an interrupted write?); ${records.length} records before it are intact` }
    const len = log.readUInt32BE(at)
    // an empty record is a zero header: one with a checksum is a length damaged
    if (len === 0 && log.readUInt32BE(at + 4) !== 0) return { records, problem: `record at byte ${at} claims 0 bytes with a checksum (a damaged length); ${records.length} records before it are intact` }
    if (len === 0) {
      // zeros to the end are not records, though an empty payload's checksum is 0 (bb35:
      // a log with zeros after its end loaded each 8 bytes of them as a change, for
      // minutes, growing to gigabytes); an empty record before more is skipped, as it
      // holds nothing
      lastData ??= lastNonZero(log)
      if (at > lastData) return { records, problem: `ends in ${log.length - at} bytes of zeros from byte ${at} (a file system that kept the file's length and not its data?); ${records.length} records before them are intact` }
      at += HEADER
      continue
    }
    const end = at + HEADER + len
    if (end > log.length) return { records, problem: `record at byte ${at} is truncated (${log.length - at - HEADER} of ${len} bytes); ${records.length} records before it are intact` }
    const payload = log.subarray(at + HEADER, end)
    if (crc32(payload) !== log.readUInt32BE(at + 4)) return { records, problem: `record at byte ${at} fails its checksum; ${records.length} records before it are intact` }
    records.push(payload)
    at = end
  }
  return { records }
}

/** the index of the last byte that is not zero (-1: none) */
function lastNonZero (b: Buffer): number {
  let i = b.length - 1
  while (i >= 0 && b[i] === 0) i--
  return i
}
