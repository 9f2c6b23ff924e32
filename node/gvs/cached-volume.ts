// A volume's device with this node's cache of its blocks in front (local-cache.ts):
// while a session here holds the volume, reads of cached blocks are answered from the
// local file, everything else goes to the replicas, and what they answer or take is
// cached on the way. Writes keep their order: overlapping ones run one at a time in
// the order issued, so the cache ends with what the replicas end with. A write is
// acknowledged only once the replicas acknowledged it (the cache is never a copy that
// counts).
import { checkRange, type BlockDevice } from './block-device.ts'
import type { VolumeCache } from './local-cache.ts'
import { RangeLock } from './range-lock.ts'

export interface CachedVolumeComponents {
  /** changes whenever the live nodes change: the cache is then emptied (a partition may have let another writer in) */
  generation?: () => number
  /**
   * Whether a session on this node holds the volume at the cache's epoch (writers.ts):
   * only then must any other writer ask this node first (which empties the cache), so
   * only then is the cache read or filled. Default: always (a device no one else writes).
   */
  holds?: () => boolean
}

export class CachedVolume implements BlockDevice {
  private readonly dev: BlockDevice
  private readonly cache: VolumeCache
  private readonly generation: () => number
  private readonly holds: () => boolean
  /** overlapping writes one at a time, in the order issued */
  private readonly writes = new RangeLock()

  constructor (components: CachedVolumeComponents, dev: BlockDevice, cache: VolumeCache) {
    this.dev = dev
    this.cache = cache
    this.generation = components.generation ?? (() => 0)
    this.holds = components.holds ?? (() => true)
  }

  get size (): number { return this.dev.size }
  get readOnly (): boolean { return this.dev.readOnly }

  /**
   * The cache, emptied first if the live nodes changed since it was filled: the
   * generation is the cache's own, shared by every device built over it (a snapshot
   * or a resize rebuilds the device, and the new one must not take the old one's
   * fill as current)
   */
  private current (): VolumeCache {
    const g = this.generation()
    if (this.cache.generation !== g) {
      if (this.cache.generation != null) this.cache.drop()
      this.cache.generation = g
    }
    return this.cache
  }

  async read (offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length)
    // a node whose sessions do not hold the volume reads through: another writer would not ask it first
    if (!this.holds()) return await this.dev.read(offset, length)
    const cache = this.current()
    const hit = cache.read(offset, length)
    if (hit != null) return hit
    const plan = cache.planFill(offset, length)
    const data = await this.dev.read(offset, length)
    if (plan != null && this.holds()) this.current().fill(plan, offset, data)
    return data
  }

  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    checkRange(this, offset, data.length)
    await this.writing(offset, data.length, async () => { await this.dev.write(offset, data, fua) }, data)
  }

  async flush (): Promise<void> { await this.dev.flush() }

  async trim (offset: number, length: number, fua: boolean): Promise<void> {
    checkRange(this, offset, length)
    await this.writing(offset, length, async () => { await this.dev.trim(offset, length, fua) })
  }

  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> {
    checkRange(this, offset, length)
    await this.writing(offset, length, async () => { await this.dev.writeZeroes(offset, length, fua) })
  }

  /** one change of [offset, offset+length): its blocks leave the cache for its time, and come back with `data` if it succeeded */
  private async writing (offset: number, length: number, fn: () => Promise<void>, data?: Uint8Array): Promise<void> {
    await this.writes.run('', { start: offset, end: offset + length, exclusive: true }, async () => {
      const cache = this.current()
      cache.beginWrite(offset, length)
      let ok = false
      try {
        await fn()
        ok = true
      } finally {
        // even if emptied meanwhile: what the replicas took is the newest there
        cache.endWrite(offset, length, ok && this.holds() ? data : undefined)
      }
    })
  }
}
