// What the NBD server serves: a disk of `size` bytes. A local volume (one node's object
// store) implements it now; the replicated volume implements it over the replication
// protocol. Offsets and lengths are checked by the caller against `size`.
import { GvsError } from './errors.ts'
import type { ObjectStore } from './object-store.ts'

export interface BlockDevice {
  readonly size: number
  readonly readOnly: boolean
  read: (offset: number, length: number) => Promise<Uint8Array>
  /** returns once written; with fua, once on stable storage */
  write: (offset: number, data: Uint8Array, fua: boolean) => Promise<void>
  /** every write acknowledged so far, on stable storage */
  flush: () => Promise<void>
  /** the range may be discarded; here it then reads as zeros */
  trim: (offset: number, length: number, fua: boolean) => Promise<void>
  writeZeroes: (offset: number, length: number, fua: boolean) => Promise<void>
}

/** one piece of a byte range that falls in one object */
export interface Piece { index: number, offset: number, length: number, at: number }

/** cuts [offset, offset+length) at object boundaries; `at` is the piece's place in the range */
export function pieces (offset: number, length: number, objectSize: number): Piece[] {
  const out: Piece[] = []
  let at = 0
  while (at < length) {
    const pos = offset + at
    const index = Math.floor(pos / objectSize)
    const inObj = pos - index * objectSize
    const n = Math.min(objectSize - inObj, length - at)
    out.push({ index, offset: inObj, length: n, at })
    at += n
  }
  return out
}

export function checkRange (dev: { size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > dev.size) {
    throw new GvsError('invalid', `range ${offset}+${length} is outside the ${dev.size}-byte volume`)
  }
}

export interface LocalVolumeInit { volume: string, size: number, epoch: number, readOnly?: boolean }

/** a volume whose objects all live in one node's store (R = 1, or a test's disk) */
export class LocalVolume implements BlockDevice {
  readonly size: number
  readonly readOnly: boolean
  private readonly store: ObjectStore
  private readonly volume: string
  private readonly epoch: number

  constructor (components: { store: ObjectStore }, init: LocalVolumeInit) {
    this.store = components.store
    this.volume = init.volume
    this.size = init.size
    this.epoch = init.epoch
    this.readOnly = init.readOnly === true
  }

  async read (offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length)
    const ps = pieces(offset, length, this.store.objectSize)
    if (ps.length === 1 && ps[0] != null) return await this.store.read(this.volume, ps[0].index, ps[0].offset, ps[0].length)
    const out = new Uint8Array(length)
    await Promise.all(ps.map(async p => { out.set(await this.store.read(this.volume, p.index, p.offset, p.length), p.at) }))
    return out
  }

  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.writable()
    checkRange(this, offset, data.length)
    await Promise.all(pieces(offset, data.length, this.store.objectSize).map(async p => {
      await this.store.write(this.volume, p.index, p.offset, data.subarray(p.at, p.at + p.length), { epoch: this.epoch, fua })
    }))
  }

  async flush (): Promise<void> { await this.store.flush(this.volume) }

  async trim (offset: number, length: number, fua: boolean): Promise<void> { await this.writeZeroes(offset, length, fua) }

  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> {
    this.writable()
    checkRange(this, offset, length)
    await Promise.all(pieces(offset, length, this.store.objectSize).map(async p => {
      await this.store.zero(this.volume, p.index, p.offset, p.length, { epoch: this.epoch, fua })
    }))
  }

  private writable (): void {
    if (this.readOnly) throw new GvsError('invalid', `volume "${this.volume}" is read-only`)
  }
}

/** a zero payload written in pieces of this size (never modified, so shared) */
const ZEROS = Buffer.alloc(1024 * 1024)

/** zeros written as data, in pieces: the range is provisioned, not left a hole (NBD write-zeroes with NO_HOLE) */
export async function writeZerosAsData (dev: BlockDevice, offset: number, length: number, fua: boolean): Promise<void> {
  for (let at = 0; at < length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, length - at)
    await dev.write(offset + at, n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n), fua)
  }
}
