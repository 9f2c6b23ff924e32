// A small record an agent keeps in its data dir across restarts (the pinned writer
// epochs, the last repairs): read once at start, written whole (tmp, fsync, rename,
// fsync of the directory: a crash leaves the old record or the new, never half), writes
// one after another so the last one made is the one left. A missing file is an empty
// record; an unreadable or damaged one is reported, saying what that costs, and read as
// empty: never a crash.
import { readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { writeFileDurable } from './durable-file.ts'
import type { Logger } from './log.ts'
import { RepeatedLines } from './log-repeats.ts'

export interface RecordFormat<T> {
  /** what the record holds, for messages ("the pinned writer epochs") */
  what: string
  /** what reading it as empty costs, for the warning */
  ifLost: string
  empty: () => T
  format: (value: T) => string
  /** the record a file's text holds, or why it holds none (never throws) */
  parse: (text: string) => { value: T } | { error: string }
}

export class RecordFile<T> {
  readonly path: string
  private readonly log: Logger
  private readonly f: RecordFormat<T>
  private readonly repeats = new RepeatedLines()
  private writing: Promise<void> = Promise.resolve()

  constructor (path: string, log: Logger, format: RecordFormat<T>) {
    this.path = path
    this.log = log
    this.f = format
  }

  /** the record the last run kept; empty when missing or damaged (reported) */
  load (): T {
    let text: string
    try {
      text = readFileSync(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`could not read ${this.f.what} in ${this.path}: ignored; ${this.f.ifLost}`, { error: String(err) })
      return this.f.empty()
    }
    const r = this.f.parse(text)
    if ('error' in r) {
      this.log.warn(`${this.f.what} in ${this.path} are damaged (${r.error}): ignored; ${this.f.ifLost}`, { file: this.path })
      return this.f.empty()
    }
    return r.value
  }

  /** resolves once the writes asked so far are done (a stop waits for them: its data dir may be removed next) */
  async settled (): Promise<void> { await this.writing }

  /** writes `value` (as it is now) once the writes before it are done; a failed write is logged, and rejects */
  async save (value: T): Promise<void> {
    const text = this.f.format(value)
    const p = this.writing.then(async () => {
      await mkdir(dirname(this.path), { recursive: true })
      await writeFileDurable(this.path, text)
    })
    // once a minute at most: on a full disk every pass tried again and logged it (bb25: every 2 s)
    this.writing = p.catch(err => { this.repeats.log(this.log, 'warn', (err as NodeJS.ErrnoException).code ?? 'write', `could not write ${this.f.what} to ${this.path}`, { error: String(err) }) })
    await p
  }
}
