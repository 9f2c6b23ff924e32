// The layers this node saw the document stop reading (a destroyed volume's, a folded
// snapshot's) and has not freed yet, kept on disk: a node killed between seeing a
// destroy or a fold and freeing its copies (a pass comes every 30 s, and a layer waits
// 20 s) frees them after its restart, when the document it loads names them no more.
// Only layers the document stopped reading are kept, never those it reads: a node
// restarted on an empty document (its state lost) must not take everything it holds
// for destroyed. File: {"v":1,"layers":[names]}, written whole and durably on a change.
import { readFile } from 'node:fs/promises'
import { writeFileDurable } from '../durable-file.ts'
import type { Logger } from '../log.ts'
import { STORE_NAME } from './object-store.ts'

export class UnreadLayers {
  private readonly file: string
  private readonly log: Logger
  private names = new Set<string>()
  /** the last write, and whether another is due after it */
  private writing: Promise<void> = Promise.resolve()
  private reported = false
  /** the last write failed: the next keep writes whatever it is given */
  private stale = false

  constructor (file: string, log: Logger) {
    this.file = file
    this.log = log
  }

  /** The layers kept by an earlier run; a damaged file is reported and read as none (its layers stay on disk). */
  async load (): Promise<ReadonlySet<string>> {
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.damaged((err as Error).message)
      return this.names
    }
    try {
      const parsed = JSON.parse(text) as { v?: unknown, layers?: unknown }
      if (parsed?.v !== 1 || !Array.isArray(parsed.layers)) throw new Error('not {"v":1,"layers":[...]}')
      const bad = parsed.layers.filter(l => typeof l !== 'string' || !STORE_NAME.test(l))
      if (bad.length > 0) throw new Error(`${bad.length} entries are not layer names`)
      this.names = new Set(parsed.layers as string[])
    } catch (err) { this.damaged((err as Error).message) }
    return this.names
  }

  /** Keeps exactly these layers (written only when they changed; writes go one after another). */
  async keep (names: ReadonlySet<string>): Promise<void> {
    if (!this.stale && names.size === this.names.size && [...names].every(n => this.names.has(n))) return
    this.names = new Set(names)
    this.stale = false
    const data = JSON.stringify({ v: 1, layers: [...this.names].sort() }) + '\n'
    this.writing = this.writing.catch(() => {}).then(async () => { await writeFileDurable(this.file, data, { mode: 0o600 }) })
    await this.writing.catch((err: unknown) => {
      this.stale = true
      // in memory still: freed by this run; a restart before a good write keeps their copies
      this.log.warn('cannot record the layers to free (a restart now would keep their copies)', { file: this.file, error: (err as Error).message })
    })
  }

  private damaged (why: string): void {
    if (this.reported) return
    this.reported = true
    this.log.warn('the record of layers to free is damaged: ignored (those copies stay on disk; delete the file to silence this)', { file: this.file, error: why })
  }
}
