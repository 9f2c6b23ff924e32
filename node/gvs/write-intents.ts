// Which objects may have been written since their last sync: a log (<dir>/intents) each
// object is named in, durably (O_DSYNC), before its first write after it was last clean.
// An object's data and its checksums are two files, written one after the other and
// synced by the next flush: a power loss before it can leave either on disk without
// the other, and every later read of those blocks would fail its checksum on every copy
// (all of them lost power at once, or the only one). At start, the objects the log names
// have their checksums made true to the data the disk kept (ObjectStore.recover), as a
// disk gives back either the old or the new data of a write it never acknowledged as
// flushed. An object is dropped from the log once a flush synced it and no write to it
// is in flight or waiting for a sync.
//
// Each name carries the object's version before that first write: what its last sync
// made sure of (a name kept while clean carries an older one, never a newer). The log
// starts with the boot id of the server that opened it. After a restart of the server
// (a power loss drops the page cache: the side file's version may have reached the disk
// and the data it counts not), a named object's version is lowered to the one its name
// carries, so a copy elsewhere with the writes it may lack is the newer and replaces it
// (ObjectStore.recover). After a restart of the agent alone the kernel kept every write
// (the start syncs them), and versions stay.
//
// Format, one line each: `boot <id>` first, then `<volume>/<index as 8 hex> <epoch>.<seq>`,
// or `lower <volume>/<index> <epoch>.<seq>` for an object whose version a start had to
// lower and could not (its files could not be written then): lowered at the next start
// whether the server restarted or not. A line a crash or full disk cut short is the
// start of one; a name whose version was cut off, or a line of an earlier release (no
// version), gives the object no version.
import { open, readFile, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import { basename, dirname } from 'node:path'
import { writeFileDurable } from '../durable-file.ts'
import { compareVersions, formatVersion, type Version } from './versions.ts'

/** an object named in the log, the version its name carries (null: none, or cut off), and whether its version must be lowered at the next start whatever the boot */
export interface IntentNamed { volume: string, file: string, version: Version | null, lower?: true }

/** an object whose recovery at start failed: named again in the fresh log (`lower`: its version was still to be lowered) */
export interface IntentCarried { data: string, version: Version | null, lower: boolean }

const NAME = /^(lower )?([A-Za-z0-9][A-Za-z0-9._:@+-]*)\/([0-9a-f]{8})(?: (.*))?$/
const VERSION = /^(\d{1,15})\.(\d{1,15})$/
/** what a line cut short may end in after a name: the start of a version */
const VERSION_START = /^\d{0,15}(\.\d{0,15})?$/
/** the start of a name, cut short */
const NAME_START = /^[A-Za-z0-9][A-Za-z0-9._:@+-]*(\/[0-9a-f]{0,7})?$/
const BOOT = /^boot ([0-9A-Za-z-]{1,64})$/
const BOOT_START = /^(b|bo|boo|boot|boot [0-9A-Za-z-]{0,64})$/

/** clean objects still named that make it worth rewriting the log without them (while others are not clean) */
export const REWRITE_AT = 1024
/** how often at most the log is emptied when every object it names is clean */
export const EMPTY_EVERY_MS = 1000

export class WriteIntents {
  private readonly file: string
  private fh?: FileHandle
  /** open() ran and close() did not: writes are named (a store never started names nothing) */
  private opened = false
  /** objects (data paths) named in the log, with the version each name carries */
  private readonly listed = new Map<string, Version | null>()
  /** objects whose recovery at start failed: named until the next start, never taken for clean (true: with `lower`) */
  private readonly carried = new Map<string, boolean>()
  /** the boot id the log starts with (null: unknown, none written) */
  private boot: string | null = null
  /** writes under way per object: not dropped while one runs */
  private readonly active = new Map<string, number>()
  /** the appends under way, by object: a second writer waits for the first's */
  private readonly noting = new Map<string, Promise<void>>()
  /** names waiting for the next append, and whether one is under way */
  private readonly queued: Array<{ data: string, versionNow: () => Promise<Version | null>, resolve: () => void, reject: (err: unknown) => void }> = []
  private appending = false
  /** appends made to the log (each one O_DSYNC write, naming one object or several) */
  appends = 0
  /** appends and rewrites of the log, one at a time */
  private chain: Promise<void> = Promise.resolve()

  private readonly rewriteAt: number
  private readonly emptyEveryMs: number
  /** when the log was last emptied (performance.now) */
  private emptiedAt = -Infinity

  constructor (file: string, opts: { rewriteAt?: number, emptyEveryMs?: number } = {}) {
    this.file = file
    this.rewriteAt = opts.rewriteAt ?? REWRITE_AT
    this.emptyEveryMs = opts.emptyEveryMs ?? EMPTY_EVERY_MS
  }

  /**
   * The objects the log names (from a run that ended without syncing them), each with
   * the version its name carries (the lowest, if named twice), the boot id the log
   * started with (null: none, cut short, or a log of an earlier release), and the lines
   * that are damage (for the caller to report): a line cut short (a power loss, or a
   * full disk that failed the append and so its write) is the start of one and named no
   * write; anything else is not.
   */
  async pending (): Promise<{ objects: IntentNamed[], damaged: string[], boot: string | null }> {
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { objects: [], damaged: [], boot: null }
      throw Object.assign(new Error(`cannot read ${this.file}: ${(err as Error).message}`, { cause: err }), { code: (err as NodeJS.ErrnoException).code })
    }
    const out = new Map<string, IntentNamed>()
    const damaged: string[] = []
    let boot: string | null = null
    text.split('\n').forEach((line, i) => {
      if (line === '') return
      const b = BOOT.exec(line)
      if (b != null && i === 0) { boot = b[1]!; return }
      const m = NAME.exec(line)
      if (m != null && (m[4] == null || VERSION.test(m[4]) || VERSION_START.test(m[4]))) {
        const v = m[4] == null ? null : VERSION.exec(m[4])
        const version = v == null ? null : { epoch: Number(v[1]), seq: Number(v[2]) }
        const key = `${m[2]!}/${m[3]!}`
        const before = out.get(key)
        const lower = m[1] != null || before?.lower === true
        out.set(key, { volume: m[2]!, file: m[3]!, version: before == null ? version : surer(before.version, version), ...(lower ? { lower: true as const } : {}) })
        return
      }
      if (NAME_START.test(line) || (i === 0 && BOOT_START.test(line))) return
      damaged.push(line)
    })
    return { objects: [...out.values()], damaged, boot }
  }

  /**
   * Starts a fresh log (after the objects it named were recovered), headed by the
   * server's boot id, and opens it for appends. `carried`: objects whose recovery
   * failed (rv38: they were forgotten here, and a later start never tried again),
   * named in the fresh log with the version their name carried (`lower ` before those
   * whose version is still to be lowered) and kept there until the next start, which
   * tries them again. False when the carried could not be written (a full disk): then
   * they are not named.
   */
  async open (boot: string | null = null, carried: readonly IntentCarried[] = []): Promise<boolean> {
    this.boot = boot
    this.carried.clear()
    const content = this.header() + carried.map(c => lineOf(c.data, c.version, c.lower)).join('')
    let landed = true
    try {
      await writeFileDurable(this.file, content, { mode: 0o600 })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err
      // a full disk has no room for a new file, and the agent must still start, to serve
      // the copies it holds (bb33: it exited with a bare ENOSPC). The log is rewritten in
      // place instead: what it named was recovered and synced before this
      landed = await this.rewriteInPlace(content)
    }
    // named only once the log holds them: a name in memory alone would spare a later write its append
    if (landed) {
      for (const c of carried) {
        this.carried.set(c.data, c.lower)
        this.listed.set(c.data, c.version)
      }
    }
    this.fh = await this.reopen()
    this.opened = true
    return landed || carried.length === 0
  }

  /**
   * The log made `content` where it is: written over the old log's own blocks (which
   * named at least what it carries, so as a rule it needs no new room), then cut to its
   * length. Whether it landed whole; if not, the log is left empty (no boot line: a
   * later start takes the server for restarted, which only lowers versions).
   */
  private async rewriteInPlace (content: string): Promise<boolean> {
    const fh = await open(this.file, constants.O_WRONLY | constants.O_CREAT, 0o600)
    try {
      const bytes = Buffer.from(content)
      try {
        const { bytesWritten } = await fh.write(bytes, 0, bytes.length, 0)
        if (bytesWritten !== bytes.length) throw new Error(`took ${bytesWritten} of ${bytes.length} bytes`)
        await fh.truncate(bytes.length)
        await fh.datasync()
        return true
      } catch {
        await fh.truncate(0).catch(() => {})
        await fh.datasync().catch(() => {})
        return bytes.length === 0
      }
    } finally { await fh.close() }
  }

  async close (): Promise<void> {
    this.opened = false
    await this.chain
    await this.fh?.close()
    this.fh = undefined
  }

  /**
   * Before a write to the object: it is named in the log (durably) unless it already is,
   * with its version then (`versionNow`, asked only for a new name: null when it cannot
   * be read). Pair with `done`.
   */
  async begin (data: string, versionNow: () => Promise<Version | null> = async () => null): Promise<void> {
    this.active.set(data, (this.active.get(data) ?? 0) + 1)
    if (this.listed.has(data) || !this.opened) return
    let p = this.noting.get(data)
    if (p == null) {
      p = this.append(data, versionNow).finally(() => { this.noting.delete(data) })
      this.noting.set(data, p)
    }
    try { await p } catch (err) { this.done(data); throw err }
  }

  /** The write begun for the object is over (its files are in the list of what the next flush syncs). */
  done (data: string): void {
    const n = (this.active.get(data) ?? 1) - 1
    if (n > 0) this.active.set(data, n)
    else this.active.delete(data)
  }

  /**
   * After a flush: objects it synced, with no write under way or waiting for a sync
   * (`pending`), may leave the log. Clean objects stay named for a while (a name too many
   * costs only a check at start, and spares the append when the object is written
   * again): a client that flushes after every write (a database) would otherwise pay two
   * more syncs a flush. When every object named is clean, the log is emptied (truncate,
   * fdatasync) at most once per `emptyEveryMs`; while some are not, it is rewritten
   * without the clean ones once `rewriteAt` of them are named.
   */
  async settled (pending: (data: string) => boolean, opts: { stopping?: boolean } = {}): Promise<void> {
    // the objects carried from the start stay named until the next start, whatever else
    if (!this.opened || this.listed.size === this.carried.size) return
    const clean = (d: string): boolean => !this.carried.has(d) && !this.active.has(d) && !pending(d)
    const n = [...this.listed.keys()].filter(clean).length
    // a store that stops leaves an empty log when it can: its next start checks nothing
    const wait = opts.stopping === true ? 0 : this.emptyEveryMs
    if (n === this.listed.size - this.carried.size ? performance.now() - this.emptiedAt < wait : n < this.rewriteAt) return
    await this.serial(async () => {
      if (!this.opened || this.fh == null) return
      // checked again in turn: an object written meanwhile stays
      const stay = [...this.listed.keys()].filter(d => !clean(d))
      if (stay.every(d => this.carried.has(d))) {
        for (const d of [...this.listed.keys()]) if (!this.carried.has(d)) this.listed.delete(d)
        this.emptiedAt = performance.now()
        await this.fh.truncate(0)
        // O_APPEND: the header (and what is carried) goes at the start of the empty file
        const head = Buffer.from(this.header() + stay.map(d => this.lineFor(d)).join(''))
        if (head.length > 0) await this.fh.write(head)
        await this.fh.datasync()
        return
      }
      if (this.listed.size - stay.length < this.rewriteAt) return
      for (const d of [...this.listed.keys()]) if (clean(d)) this.listed.delete(d)
      // the log rewritten whole with what stays (a crash keeps the old or the new one, both sound)
      await this.fh.close()
      this.fh = undefined
      try {
        await writeFileDurable(this.file, this.header() + stay.map(d => this.lineFor(d)).join(''), { mode: 0o600 })
      } finally {
        // the new log, or the old one (naming more) when the rewrite failed: appends go on
        this.fh = await this.reopen()
      }
    })
  }

  private async reopen (): Promise<FileHandle> {
    return await open(this.file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC, 0o600)
  }

  /**
   * Names the object in the log. Names asked for while an append is under way go
   * together in the next one (one O_DSYNC write for all: a group commit), as many
   * writers to fresh objects at once (a new volume's first writes, a repair) would
   * otherwise wait for a sync each, one after the other.
   */
  private async append (data: string, versionNow: () => Promise<Version | null>): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.queued.push({ data, versionNow, resolve, reject })
      if (!this.appending) {
        this.appending = true
        void this.appendQueued()
      }
    })
  }

  /** writes what is queued, a batch at a time, until nothing is */
  private async appendQueued (): Promise<void> {
    while (this.queued.length > 0) {
      const batch = this.queued.splice(0)
      try {
        await this.serial(async () => {
          const todo = batch.filter(b => !this.listed.has(b.data))
          if (todo.length === 0) return
          if (this.fh == null) throw new Error(`the write-intent log ${this.file} is not open`)
          // read in turn, so no write to an object runs between it and the name (they all wait for it)
          const versions = await Promise.all(todo.map(async b => await b.versionNow().catch(() => null)))
          // each a line of its own, the first even after one a full disk cut short
          const lines = Buffer.from(`\n${todo.map((b, i) => lineOf(b.data, versions[i]!)).join('')}`)
          this.appends++
          const { bytesWritten } = await this.fh.write(lines)
          // a write cut short names some of them: a name too many costs only a check at start
          if (bytesWritten !== lines.length) throw new Error(`the write-intent log ${this.file} took ${bytesWritten} of ${lines.length} bytes (a full disk?)`)
          todo.forEach((b, i) => this.listed.set(b.data, versions[i]!))
        })
        for (const b of batch) b.resolve()
      } catch (err) {
        for (const b of batch) b.reject(err)
      }
    }
    this.appending = false
  }

  private header (): string { return this.boot == null ? '' : `boot ${this.boot}\n` }

  /** the line of an object named now */
  private lineFor (data: string): string { return lineOf(data, this.listed.get(data) ?? null, this.carried.get(data) === true) }

  private async serial (op: () => Promise<void>): Promise<void> {
    const run = this.chain.then(op)
    this.chain = run.catch(() => {})
    await run
  }
}

/** of two versions one object was named with (a name cut short, then whole): the lower, as the surer; none if either is none */
const surer = (a: Version | null, b: Version | null): Version | null => a == null || b == null ? null : compareVersions(a, b) <= 0 ? a : b

/** "volume/index-hex" of an object's data file (<dir>/objects/<volume>/<index-hex>) */
const nameOf = (data: string): string => `${basename(dirname(data))}/${basename(data)}`

/** an object's line: its name, and the version it had before its first write since it was clean */
const lineOf = (data: string, version: Version | null, lower = false): string => `${lower ? 'lower ' : ''}${nameOf(data)}${version == null ? '' : ` ${formatVersion(version)}`}\n`
