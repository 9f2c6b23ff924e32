// The layers this node saw the document stop reading (a destroyed volume's, a folded
// snapshot's) and has not freed yet, kept on disk: a node killed between seeing a
// destroy or a fold and freeing its copies (a pass comes every 30 s, and a layer waits
// 20 s) frees them after its restart, when the document it loads names them no more.
// Besides, the layers held here that the document read, with the heads of a document
// version that read them all: a node killed right after the destroy or fold reached its
// disk, before it saw it (bb26), loads a document that no longer reads them; if that
// document holds those heads, it came after them, and the layers count as seen (freed as
// unread). A document that does not hold them (an empty one: the state lost; an older
// one) does not: a node restarted on it must not take everything it holds for
// destroyed. File: {"v":2,"layers":[unread names],"read":[names],"heads":[hashes]}
// (v1 had only "layers"), written whole and durably on a change.
import { readFile } from 'node:fs/promises'
import { writeFileDurable } from '../durable-file.ts'
import type { Logger } from '../log.ts'
import { STORE_NAME } from './object-store.ts'

/** what the record holds (see the file's head) */
export interface LayerRecord {
  unread: ReadonlySet<string>
  read: ReadonlySet<string>
  /** the heads of a document version that read every layer of `read` */
  heads: readonly string[]
}

const NONE: LayerRecord = { unread: new Set(), read: new Set(), heads: [] }
const HEAD = /^[0-9a-f]{64}$/

export class UnreadLayers {
  private readonly file: string
  private readonly log: Logger
  private kept: LayerRecord = NONE
  /** the last write, and whether another is due after it */
  private writing: Promise<void> = Promise.resolve()
  private reported = false
  /** the last write failed: the next keep writes whatever it is given */
  private stale = false

  constructor (file: string, log: Logger) {
    this.file = file
    this.log = log
  }

  /** once the writes under way are done (whether they failed is said where they fail) */
  async settled (): Promise<void> { await this.writing.catch(() => {}) }

  /** The record an earlier run kept; a damaged file is reported and read as none (its layers stay on disk). */
  async load (): Promise<LayerRecord> {
    let text: string
    try { text = await readFile(this.file, 'utf8') } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.damaged((err as Error).message)
      return this.kept
    }
    try {
      const parsed = JSON.parse(text) as { v?: unknown, layers?: unknown, read?: unknown, heads?: unknown }
      if ((parsed?.v !== 1 && parsed?.v !== 2) || !Array.isArray(parsed.layers)) throw new Error('not {"v":2,"layers":[...],"read":[...],"heads":[...]}')
      const read = parsed.v === 2 ? parsed.read : []
      const heads = parsed.v === 2 ? parsed.heads : []
      if (!Array.isArray(read) || !Array.isArray(heads)) throw new Error('"read" and "heads" must be lists')
      const bad = [...parsed.layers, ...read].filter(l => typeof l !== 'string' || !STORE_NAME.test(l))
      if (bad.length > 0) throw new Error(`${bad.length} entries are not layer names`)
      if (heads.some(h => typeof h !== 'string' || !HEAD.test(h))) throw new Error('"heads" holds entries that are not change hashes')
      this.kept = { unread: new Set(parsed.layers as string[]), read: new Set(read as string[]), heads: heads as string[] }
    } catch (err) { this.damaged((err as Error).message) }
    return this.kept
  }

  /**
   * Keeps exactly this record (written only when its layers changed: heads alone do
   * not make a write, the kept ones still name a version that read the kept layers;
   * writes go one after another).
   */
  async keep (record: LayerRecord): Promise<void> {
    if (!this.stale && sameSet(record.unread, this.kept.unread) && sameSet(record.read, this.kept.read)) return
    this.kept = { unread: new Set(record.unread), read: new Set(record.read), heads: [...record.heads] }
    this.stale = false
    const data = JSON.stringify({ v: 2, layers: [...this.kept.unread].sort(), read: [...this.kept.read].sort(), heads: [...this.kept.heads].sort() }) + '\n'
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

const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean => a.size === b.size && [...a].every(n => b.has(n))
