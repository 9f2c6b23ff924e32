// A VM disk's device with this node's cache of its blocks in front (local-cache.ts):
// while the VM's session holds the volume here, reads of cached blocks are answered
// from the local file, everything else goes to the replicas, and what they answer or
// take is cached on the way. Writes keep their order: overlapping ones run one at a
// time in the order issued (the cache's own lock, whichever device over it they come
// through), so the cache ends with what the replicas end with. A write is acknowledged
// only once the replicas acknowledged it (the cache is never a copy that counts).
import { checkRange, type BlockDevice } from './block-device.ts'
import { GvsError } from './errors.ts'
import type { VolumeCache } from './local-cache.ts'

/** how often the store's writer epoch is looked at while the cache serves */
const FLOOR_CHECK_MS = 1000

export interface CachedVolumeComponents {
  /** changes whenever the live nodes change: the cache is then emptied (a partition may have let another writer in) */
  generation?: () => number
  /**
   * Whether a session on this node holds the volume at the cache's epoch (writers.ts):
   * only then is the cache read or filled. Default: always (a device no one else writes).
   */
  holds?: () => boolean
  /**
   * The newest writer epoch this node's store knows for the volume: above the cache's,
   * a newer writer was fenced in (a fence that did not reach this node's cache, a
   * restart) and the cache is closed. Looked at before first use and every second.
   */
  floor?: () => Promise<number>
  /** a newer writer epoch was found (the floor, or a write refused as stale): the volume's caches below it go */
  fencedOut?: (epoch: number) => void
}

export class CachedVolume implements BlockDevice {
  private readonly dev: BlockDevice
  private readonly cache: VolumeCache
  private readonly c: CachedVolumeComponents
  private readonly generation: () => number
  private readonly holds: () => boolean
  /** when the floor was last found not above the cache's epoch (-1: never yet) */
  private floorAt = -1
  private checking = false

  constructor (components: CachedVolumeComponents, dev: BlockDevice, cache: VolumeCache) {
    this.dev = dev
    this.cache = cache
    this.c = components
    this.generation = components.generation ?? (() => 0)
    this.holds = components.holds ?? (() => true)
  }

  get size (): number { return this.dev.size }
  get readOnly (): boolean { return this.dev.readOnly }

  /**
   * The cache if it may serve now (emptied first if the live nodes changed since it was
   * filled: the generation is the cache's own, shared by every device built over it, so
   * a device rebuilt for a snapshot or a resize does not take the old fill as current),
   * or null: it is closed, no session here holds the volume, or the store's writer
   * epoch was not checked lately.
   */
  private usable (): VolumeCache | null {
    if (this.cache.isClosed || !this.holds()) return null
    const g = this.generation()
    if (this.cache.generation !== g) {
      if (this.cache.generation != null) this.cache.drop()
      this.cache.generation = g
    }
    if (this.c.floor == null) return this.cache
    const now = performance.now()
    if (now - this.floorAt > FLOOR_CHECK_MS) this.checkFloor()
    return this.floorAt >= 0 ? this.cache : null
  }

  private checkFloor (): void {
    if (this.checking) return
    this.checking = true
    void this.c.floor!().then(f => {
      if (f > this.cache.epoch) this.fenced(f)
      else this.floorAt = performance.now()
    }, () => {}).finally(() => { this.checking = false })
  }

  private fenced (epoch: number): void {
    this.cache.close()
    this.c.fencedOut?.(epoch)
  }

  async read (offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length)
    // a node whose sessions do not hold the volume reads through: another writer would not ask it first
    const cache = this.usable()
    if (cache == null) return await this.dev.read(offset, length)
    const hit = cache.read(offset, length)
    if (hit != null) return hit
    const plan = cache.planFill(offset, length)
    const data = await this.dev.read(offset, length)
    if (plan != null && this.usable() === cache) cache.fill(plan, offset, data)
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
    const cache = this.cache
    await cache.writes.run('', { start: offset, end: offset + length, exclusive: true }, async () => {
      cache.beginWrite(offset, length)
      let ok = false
      try {
        await fn()
        ok = true
      } catch (err) {
        // refused as stale: a newer writer was fenced in, and this cache may not serve again
        if (err instanceof GvsError && err.code === 'stale-epoch') this.fenced(this.cache.epoch + 1)
        throw err
      } finally {
        // even if emptied meanwhile: what the replicas took is the newest there
        cache.endWrite(offset, length, ok && this.usable() === cache ? data : undefined)
      }
    })
  }
}
