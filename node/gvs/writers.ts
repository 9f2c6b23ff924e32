// Who writes a volume through this node's NBD server: every session that opens a
// writable export gets its own handle onto the volume's LiveVolume, and a handle that
// has written within `idleMs` counts as a writer, so a destroy can be refused while a
// client writes. A session that ends releases its handle at once; a writer that went
// quiet for `idleMs` no longer counts either (a client that hangs on to a session).
import type { BlockDevice } from './block-device.ts'

export class WriterHandle implements BlockDevice {
  private readonly dev: BlockDevice
  private readonly onWrite: (h: WriterHandle) => void
  lastWriteAt = 0

  constructor (dev: BlockDevice, onWrite: (h: WriterHandle) => void) {
    this.dev = dev
    this.onWrite = onWrite
  }

  get size (): number { return this.dev.size }
  get readOnly (): boolean { return this.dev.readOnly }

  private wrote (): void {
    this.lastWriteAt = Date.now()
    this.onWrite(this)
  }

  async read (offset: number, length: number): Promise<Uint8Array> { return await this.dev.read(offset, length) }
  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> { this.wrote(); await this.dev.write(offset, data, fua) }
  async flush (): Promise<void> { await this.dev.flush() }
  async trim (offset: number, length: number, fua: boolean): Promise<void> { this.wrote(); await this.dev.trim(offset, length, fua) }
  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> { this.wrote(); await this.dev.writeZeroes(offset, length, fua) }
}

/** the writer handles of each volume; quiet ones are dropped when counted */
export class Writers {
  private readonly byVolume = new Map<string, Set<WriterHandle>>()
  readonly idleMs: number

  constructor (idleMs: number) { this.idleMs = idleMs }

  handle (volume: string, dev: BlockDevice): WriterHandle {
    return new WriterHandle(dev, h => {
      let s = this.byVolume.get(volume)
      if (s == null) this.byVolume.set(volume, s = new Set())
      s.add(h)
    })
  }

  /** the session of this handle ended */
  release (h: BlockDevice): void {
    if (!(h instanceof WriterHandle)) return
    for (const [volume, s] of this.byVolume) {
      if (s.delete(h) && s.size === 0) this.byVolume.delete(volume)
    }
  }

  /** sessions that wrote to the volume within idleMs */
  count (volume: string, now = Date.now()): number {
    const s = this.byVolume.get(volume)
    if (s == null) return 0
    for (const h of s) if (now - h.lastWriteAt > this.idleMs) s.delete(h)
    if (s.size === 0) this.byVolume.delete(volume)
    return s.size
  }
}
