// Copy-on-write layers, for snapshots and clones. A volume reads through a stack of
// object sets (store names), top first: the top is where its writes go; the ones below
// are frozen (a snapshot's objects, or a clone's parent snapshot). An object reads from
// the first layer that has it (zeros if none). The first write to an object the top
// lacks copies the object up from the layer below first, so a frozen layer is never
// written: a snapshot does not see later writes, and a clone diverges without touching
// its parent. Zeroing an object a lower layer has writes zeros (deleting it from the
// top would show the lower copy again).
import type { ObjectStore, WriteOptions } from './object-store.ts'

export class Layers {
  private readonly store: ObjectStore
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor (store: ObjectStore) {
    this.store = store
  }

  /** copy-up and the read-through check must not interleave for one object */
  private async locked<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(key, tail)
    try { return await run } finally { if (this.locks.get(key) === tail) this.locks.delete(key) }
  }

  /** the first layer (index into `layers`) that holds the object, or -1 */
  private async holder (layers: readonly string[], index: number): Promise<number> {
    for (let i = 0; i < layers.length; i++) if (await this.store.has(layers[i]!, index)) return i
    return -1
  }

  async has (layers: readonly string[], index: number): Promise<boolean> {
    return await this.locked(`${layers[0]}/${index}`, async () => await this.holder(layers, index) >= 0)
  }

  // Each call checks its range before anything else: a read of an object no layer
  // holds answers zeros of the asked length without reaching the store, and a write
  // or zero copies up and records its epoch before the store would refuse the range.
  async read (layers: readonly string[], index: number, offset: number, length: number): Promise<Uint8Array> {
    this.store.checkRange(offset, length)
    return await this.locked(`${layers[0]}/${index}`, async () => {
      const h = await this.holder(layers, index)
      if (h < 0) return new Uint8Array(length)
      return await this.store.read(layers[h]!, index, offset, length)
    })
  }

  async write (layers: readonly string[], index: number, offset: number, data: Uint8Array, opts: WriteOptions): Promise<void> {
    this.store.checkRange(offset, data.length)
    const top = layers[0]!
    await this.locked(`${top}/${index}`, async () => {
      // a write of the whole object needs nothing from below (whose copy may be damaged
      // on every node: the write is what mends the volume)
      if (offset !== 0 || data.length !== this.store.objectSize) await this.copyUp(layers, index, opts)
      await this.store.write(top, index, offset, data, opts)
    })
  }

  async zero (layers: readonly string[], index: number, offset: number, length: number, opts: WriteOptions): Promise<void> {
    this.store.checkRange(offset, length)
    const top = layers[0]!
    await this.locked(`${top}/${index}`, async () => {
      const h = await this.holder(layers, index)
      if (h < 0) { await this.store.fence(top, opts.epoch); return } // zeros already
      if (h > 0 && offset === 0 && length === this.store.objectSize) {
        await this.store.write(top, index, 0, new Uint8Array(length), opts)
        return
      }
      await this.copyUp(layers, index, opts)
      await this.store.zero(top, index, offset, length, opts)
    })
  }

  /** brings the object into the top layer from the first lower layer that has it */
  private async copyUp (layers: readonly string[], index: number, opts: WriteOptions): Promise<void> {
    const h = await this.holder(layers, index)
    if (h <= 0) return
    const obj = await this.store.readObject(layers[h]!, index)
    if (obj != null) await this.store.write(layers[0]!, index, 0, obj.data, opts)
  }
}
