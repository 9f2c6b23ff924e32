// The document on disk, in <data-dir>/state/: a snapshot (the whole document) and an
// append-only log of the changes made since. Each has a magic header and every
// payload a length and a CRC-32, so damage is found here rather than guessed at by
// Automerge (which skips bytes it cannot parse). Appends are fdatasync'ed before they
// count; a snapshot replaces the old one by rename and then the log starts over.
import { open, readFile, rename, mkdir, stat, type FileHandle } from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import { join } from 'node:path'

export const SNAPSHOT_FILE = 'snapshot'
export const LOG_FILE = 'log'
const SNAPSHOT_MAGIC = Buffer.from('VGSNAP1\n')
const LOG_MAGIC = Buffer.from('VGLOG01\n')
const HEADER = 8 // u32 length + u32 crc32, big-endian

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

async function readOptional (path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
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

  constructor (dataDir: string) {
    this.dir = join(dataDir, 'state')
  }

  path (f: StateFile): string { return join(this.dir, f === 'snapshot' ? SNAPSHOT_FILE : LOG_FILE) }

  get sizes (): { snapshotBytes: number, logBytes: number, logRecords: number } {
    return { snapshotBytes: this.snapshotBytes, logBytes: this.logBytes, logRecords: this.logRecords }
  }

  /** Reads and checks both files. Never throws for damaged content, only for I/O errors. */
  async read (): Promise<DiskContents> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const out: DiskContents = { records: [], problems: [] }
    const snap = await readOptional(this.path('snapshot'))
    if (snap != null) {
      const bad = (detail: string): void => { out.problems.push({ file: 'snapshot', path: this.path('snapshot'), detail }) }
      if (snap.length < SNAPSHOT_MAGIC.length + HEADER || !snap.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) {
        bad(`not a vgrid state snapshot (${snap.length} bytes, bad header)`)
      } else {
        const len = snap.readUInt32BE(8)
        const payload = snap.subarray(8 + HEADER)
        if (payload.length !== len) bad(`truncated or overlong: header says ${len} bytes, file holds ${payload.length}`)
        else if (crc32(payload) !== snap.readUInt32BE(12)) bad('checksum mismatch')
        else out.snapshot = payload
      }
    }
    const log = await readOptional(this.path('log'))
    if (log != null && log.length > 0) {
      const bad = (detail: string): void => { out.problems.push({ file: 'log', path: this.path('log'), detail }) }
      if (log.length < LOG_MAGIC.length || !log.subarray(0, LOG_MAGIC.length).equals(LOG_MAGIC)) {
        bad('not a vgrid state log (bad header)')
      } else {
        let at = LOG_MAGIC.length
        while (at < log.length) {
          if (log.length - at < HEADER) { bad(`ends in a partial record header at byte ${at} (an interrupted write?); ${out.records.length} records before it are intact`); break }
          const len = log.readUInt32BE(at)
          const end = at + HEADER + len
          if (end > log.length) { bad(`record at byte ${at} is truncated (${log.length - at - HEADER} of ${len} bytes); ${out.records.length} records before it are intact`); break }
          const payload = log.subarray(at + HEADER, end)
          if (crc32(payload) !== log.readUInt32BE(at + 4)) { bad(`record at byte ${at} fails its checksum; ${out.records.length} records before it are intact`); break }
          out.records.push(payload)
          at = end
        }
      }
    }
    this.snapshotBytes = snap?.length ?? 0
    return out
  }

  /** Moves a damaged file out of the way (kept for inspection); returns where it went. */
  async setAside (f: StateFile, now = new Date()): Promise<string> {
    if (f === 'log') await this.closeLog()
    const to = `${this.path(f)}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`
    await rename(this.path(f), to)
    await fsyncDir(this.dir)
    if (f === 'snapshot') this.snapshotBytes = 0
    return to
  }

  /** Opens the log for appending (creating it if needed). */
  async openLog (): Promise<void> {
    if (this.logFh != null) return
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    let size = 0
    try {
      size = (await stat(this.path('log'))).size
    } catch {}
    if (size === 0) {
      await this.resetLog()
    } else {
      this.logFh = await open(this.path('log'), 'a')
      this.logBytes = size
    }
  }

  /** Appends one record and makes it durable. */
  async append (payload: Uint8Array): Promise<void> {
    if (this.logFh == null) await this.openLog()
    const buf = frame(payload)
    await this.logFh!.write(buf)
    await this.logFh!.datasync()
    this.logBytes += buf.length
    this.logRecords++
  }

  /** Replaces the snapshot with `payload` and empties the log; crash-safe at every step. */
  async writeSnapshot (payload: Uint8Array): Promise<void> {
    const tmp = this.path('snapshot') + '.tmp'
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.write(Buffer.concat([SNAPSHOT_MAGIC, frame(payload)]))
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, this.path('snapshot'))
    await fsyncDir(this.dir)
    this.snapshotBytes = SNAPSHOT_MAGIC.length + HEADER + payload.byteLength
    // a crash before the log is reset replays changes the snapshot holds: harmless
    await this.resetLog()
  }

  private async resetLog (): Promise<void> {
    await this.closeLog()
    const tmp = this.path('log') + '.tmp'
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.write(LOG_MAGIC)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, this.path('log'))
    await fsyncDir(this.dir)
    this.logFh = await open(this.path('log'), 'a')
    this.logBytes = LOG_MAGIC.length
    this.logRecords = 0
  }

  private async closeLog (): Promise<void> {
    const fh = this.logFh
    this.logFh = undefined
    await fh?.close()
  }

  async close (): Promise<void> {
    await this.closeLog()
  }
}
