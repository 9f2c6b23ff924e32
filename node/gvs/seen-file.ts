// The layers this node has seen the cluster document read (layer-reclaim.ts), kept in
// <data-dir>/gvs-seen.json so that a node down while a volume was destroyed (or a
// snapshot's layer folded) still frees its copies when it comes back: the document it
// syncs on start may already lack the layer, and a layer never seen is kept (it may be
// new, not yet synced here). Written whole (record-file.ts); a damaged file is reported
// and read as empty, which only keeps such copies until a later destroy is seen.
import type { Logger } from '../log.ts'
import { RecordFile } from './record-file.ts'

export const SEEN_FILE = 'gvs-seen.json'
const FORMAT = 1
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}$/

export class SeenFile extends RecordFile<Set<string>> {
  constructor (path: string, log: Logger) {
    super(path, log, {
      what: 'the layers this node saw in the document',
      ifLost: 'copies of volumes destroyed while this node was down stay on its disk',
      empty: () => new Set(),
      format: s => JSON.stringify({ format: FORMAT, layers: [...s].sort() }) + '\n',
      parse: text => {
        let x: unknown
        try { x = JSON.parse(text) } catch (err) { return { error: (err as Error).message } }
        const r = x as { format?: unknown, layers?: unknown }
        if (typeof x !== 'object' || x == null || r.format !== FORMAT) return { error: `not a format ${FORMAT} record` }
        if (!Array.isArray(r.layers) || !r.layers.every(l => typeof l === 'string' && NAME.test(l))) return { error: '"layers" is not a list of layer names' }
        return { value: new Set(r.layers as string[]) }
      }
    })
  }
}
