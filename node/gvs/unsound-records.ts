// Objects a scrub found damaged on every copy it checked, recorded in each volume's
// `unsound` in the cluster document (the API shows them; a rewrite or a sound scrub
// clears them: sound-again.ts).
import type { Reader, Volume, Writer } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'
import { layersOf } from './volumes.ts'

export interface UnsoundRecordsComponents {
  self: string
  log: Logger
  state: { read: () => Reader, write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
}

export class UnsoundRecords {
  private readonly c: UnsoundRecordsComponents

  constructor (c: UnsoundRecordsComponents) { this.c = c }

  /**
   * Objects a scrub found damaged on every copy ("LAYER/INDEX"), in the volumes'
   * `unsound`: `only` a repair's volume, whose set they replace (what its scrub found
   * sound is cleared: repair-runs.ts), or else added to every volume that reads their
   * layer (a node's scheduled scrub: scrub-schedule.ts), which also clears those it
   * found `sound` on this node (rewritten since) if they were recorded before it
   * started. Written only where it changes.
   */
  async record (found: string[], only?: Volume, cleared?: { sound: string[], before: number }): Promise<void> {
    const layerOf = (k: string): string => k.slice(0, k.lastIndexOf('/'))
    const changed = await this.c.state.write(w => {
      const at = Date.now()
      const vs = only == null ? w.reader.list('volumes') : [w.reader.get('volumes', only.id)?.value].filter(v => v != null)
      const sound = new Set(cleared?.sound)
      let n = 0
      for (const v of vs) {
        const mine = only != null ? found : found.filter(k => layersOf(v).includes(layerOf(k)))
        const keep = only != null ? {} : Object.fromEntries(Object.entries(v.unsound ?? {}).filter(([k, r]) => !(sound.has(k) && r.at < cleared!.before)))
        const next = { ...keep, ...Object.fromEntries(mine.map(k => [k, v.unsound?.[k] ?? { node: this.c.self, at }])) }
        if (Object.keys(next).sort().join() === Object.keys(v.unsound ?? {}).sort().join()) continue
        w.update('volumes', v.id, { unsound: next })
        n++
      }
      return n
    }, `scrub: ${found.length} object(s) damaged on every copy${(cleared?.sound.length ?? 0) > 0 ? `, ${cleared!.sound.length} sound again` : ''}`)
    if (changed > 0) this.c.log.warn('objects damaged on every copy a scrub checked, recorded in the document (none: the record cleared)', { volume: only?.path, objects: found.slice(0, 20) })
  }

  /** the objects the document records damaged on every copy ("LAYER/INDEX"), worked out once per document version (asked on every write) */
  private memo: { reader: Reader, keys: ReadonlySet<string> } | null = null
  objects (): ReadonlySet<string> {
    const reader = this.c.state.read()
    if (this.memo?.reader !== reader) this.memo = { reader, keys: new Set(reader.list('volumes').flatMap(v => Object.keys(v.unsound ?? {}))) }
    return this.memo.keys
  }
}
