// Layers this node's store wrote before its document had their volume (a replica write
// can outrun the document's sync). If the volume's making and its destroy then arrive
// in one sync, no read of the document ever names the layer, and the layer reclaim,
// which frees only layers it saw read, kept its copies for good (rv43). The changes
// since the write do name the volume: that is what tells a volume made and destroyed
// from one that has not arrived yet.
import type { Volume } from '../../crdt/index.ts'
import { layerNumber } from './volumes.ts'

/** layers followed at once (more are kept, unfreed, as before) */
const MAX_UNSEEN = 10_000

export type KeysWrittenSince = (heads: readonly string[], keys: ReadonlySet<string>) => { found: Set<string>, heads: string[] } | null

export class UnseenWrites {
  /** layer -> document heads from before its first write here */
  private readonly layers = new Map<string, readonly string[]>()

  /** a layer the store wrote that no document read yet, with heads from before the write */
  add (layer: string, before: readonly string[]): void {
    if (!this.layers.has(layer) && this.layers.size < MAX_UNSEEN) this.layers.set(layer, before)
  }

  /**
   * The layers whose volume the document (`volumes`, now) holds no more although a
   * change since their write made or destroyed it: a volume made and destroyed in one
   * sync. Seen layers are dropped (read since); one whose volume the document holds
   * waits to be read; one no change names waits, checked next time only from the heads
   * looked up to (its volume may still come). Heads not in the history: dropped (kept
   * on disk, as before).
   */
  madeAndDestroyed (volumes: readonly Volume[], seen: ReadonlySet<string>, keysWrittenSince: KeysWrittenSince): string[] {
    if (this.layers.size === 0) return []
    const ids = new Set(volumes.map(v => v.id))
    const byHeads = new Map<string, { heads: readonly string[], layers: string[] }>()
    for (const [l, heads] of this.layers) {
      if (seen.has(l)) { this.layers.delete(l); continue }
      if (ids.has(layerNumber(l).base)) continue
      const k = heads.join()
      byHeads.set(k, { heads, layers: [...byHeads.get(k)?.layers ?? [], l] })
    }
    const out: string[] = []
    for (const { heads, layers } of byHeads.values()) {
      const r = keysWrittenSince(heads, new Set(layers.map(l => layerNumber(l).base)))
      for (const l of layers) {
        if (r == null) this.layers.delete(l)
        else if (r.found.has(layerNumber(l).base)) { this.layers.delete(l); out.push(l) } else this.layers.set(l, r.heads)
      }
    }
    return out
  }
}
