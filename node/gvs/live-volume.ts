// The device an NBD client keeps for its whole session, while the volume under it
// changes (a snapshot moves its writes to a new top layer, a resize or a new epoch
// rebuilds it). Each request goes to the current device; when it changed, the requests
// still running on the old one finish and the old one is flushed first, so no write is
// split across the switch: a write acknowledged before a snapshot is in it, one issued
// after is not in it. A write the replicas refuse because a snapshot froze its layer
// (this node's document has not shown the snapshot yet: frozen-layers.ts) waits for the
// switch and is written again on the new top.
import { setTimeout as sleep } from 'node:timers/promises'
import { GvsError, isGvsError } from './errors.ts'
import type { BlockDevice } from './block-device.ts'

export class LiveVolume implements BlockDevice {
  private readonly current: () => BlockDevice | undefined
  private readonly name: string
  private last: BlockDevice | undefined
  private readonly inFlight = new Set<Promise<unknown>>()
  private switching: Promise<void> | null = null
  /** the old device's flush at a switch failed: owed to the writer's next flush (the switch's request may have been a read) */
  private switchError: unknown

  /** how long a write refused as frozen waits for this node's document to show the snapshot */
  private readonly frozenWaitMs: number

  constructor (current: () => BlockDevice | undefined, name: string, opts: { frozenWaitMs?: number } = {}) {
    this.current = current
    this.name = name
    this.last = current()
    this.frozenWaitMs = opts.frozenWaitMs ?? 20_000
  }

  private now (): BlockDevice {
    const d = this.current()
    if (d == null) throw new GvsError('unavailable', `volume "${this.name}" no longer exists`)
    return d
  }

  get size (): number { return (this.current() ?? this.last)?.size ?? 0 }
  get readOnly (): boolean { return (this.current() ?? this.last)?.readOnly ?? true }

  /** call this when the volume may have changed: later requests wait for the switch */
  async settle (): Promise<void> {
    const d = this.now()
    if (d === this.last) return
    if (this.switching == null) {
      const old = this.last
      this.switching = (async () => {
        await Promise.allSettled([...this.inFlight])
        try { await old?.flush() } catch (err) {
          // tried again by the next request, when its own flush may well succeed: this
          // error stays owed, or the writes before the switch could be lost unreported
          this.switchError ??= err
          throw err
        }
        this.last = d
      })().finally(() => { this.switching = null })
    }
    await this.switching
  }

  private async use<T> (fn: (d: BlockDevice) => Promise<T>): Promise<T> {
    let until = 0
    for (;;) {
      while (this.switching != null || this.now() !== this.last) await this.settle()
      const d = this.last!
      const p = fn(d)
      this.inFlight.add(p)
      try { return await p } catch (err) {
        if (!isGvsError(err, 'frozen')) throw err
        // out of the switch's wait, which this request now waits for
        this.inFlight.delete(p)
        until ||= Date.now() + this.frozenWaitMs
        while (this.current() === d) {
          if (Date.now() >= until) throw new GvsError('frozen', `volume "${this.name}": a snapshot froze the layer this node writes, and this node's copy of the cluster document has not shown that snapshot for ${Math.round(this.frozenWaitMs / 1000)} s (is its document sync cut off? see vgrid status)`, { cause: err })
          await sleep(50)
        }
      } finally { this.inFlight.delete(p) }
    }
  }

  async read (offset: number, length: number): Promise<Uint8Array> { return await this.use(async d => await d.read(offset, length)) }
  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> { await this.use(async d => { await d.write(offset, data, fua) }) }
  async flush (): Promise<void> {
    try { await this.use(async d => { await d.flush() }) } catch (err) {
      // a switch this flush made failed: reported here, once
      if (err === this.switchError) this.switchError = undefined
      throw err
    }
    const owed = this.switchError
    this.switchError = undefined
    if (owed !== undefined) throw owed
  }
  async trim (offset: number, length: number, fua: boolean): Promise<void> { await this.use(async d => { await d.trim(offset, length, fua) }) }
  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> { await this.use(async d => { await d.writeZeroes(offset, length, fua) }) }
}
