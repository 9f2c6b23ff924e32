// An object recorded damaged on every copy (the volume's `unsound`) that a client writes
// again: this node's copy of it is verified soon after the write, and once it is sound
// the record goes, as a node's scheduled scrub clears it when it finds its copy sound
// (scrub.ts `sound`), not up to a scrub interval later. A copy still damaged (the write
// missed a damaged block) keeps the record.
import type { Logger } from '../log.ts'

/** how long after a write the copy is verified (the writes of one burst land first) */
const VERIFY_DELAY_MS = 1000

export interface SoundAgainComponents {
  /** the objects the document records unsound ("LAYER/INDEX") */
  watched: () => ReadonlySet<string>
  /** this node's copy's damaged blocks (none: sound) */
  verify: (layer: string, index: number) => Promise<number[]>
  /** clears these objects' records made before `before` (a damage found since stays) */
  cleared: (sound: string[], before: number) => Promise<void>
  log: Logger
  delayMs?: number
}

export class SoundAgain {
  private readonly c: SoundAgainComponents
  private readonly pending = new Set<string>()

  constructor (components: SoundAgainComponents) { this.c = components }

  /** a write landed on this node's copy of the object */
  written (layer: string, index: number): void {
    const watched = this.c.watched()
    if (watched.size === 0) return
    const key = `${layer}/${index}`
    if (!watched.has(key) || this.pending.has(key)) return
    this.pending.add(key)
    const timer = setTimeout(() => {
      const before = Date.now()
      void this.c.verify(layer, index)
        .then(async bad => { if (bad.length === 0) await this.c.cleared([key], before) })
        .catch(err => { this.c.log.warn('could not check a rewritten object recorded damaged on every copy (the next scrub does)', { volume: layer, index, err: (err as Error).message }) })
        .finally(() => { this.pending.delete(key) })
    }, this.c.delayMs ?? VERIFY_DELAY_MS)
    timer.unref()
  }
}
