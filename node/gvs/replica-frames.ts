// Frames of the pipelined replica protocol (replica-protocol.ts says what they carry).
// One long-lived stream per pair of nodes carries many requests at once, each tagged
// with an id its reply repeats, so a request costs no stream set-up and replies may
// come back in any order:
//   u32 length of the rest | u32 request id | u16 header length | JSON header | data
// The data (a write's or put's bytes, a read's or get's answer) follows the header in
// the same frame, unframed and uncopied on the way out.
import { Uint8ArrayList } from 'uint8arraylist'
import { GvsError } from './errors.ts'
import { readBuffers } from './buffer-pool.ts'

/** bytes before the header: length, id, header length */
export const FRAME_PREFIX = 10
/** the longest header a frame can carry (its length is 16 bits) */
export const MAX_FRAME_HEADER = 0xffff

export interface Frame { id: number, header: Uint8Array, data: Uint8Array | null }

/** a frame ready to send: its prefix and header in one buffer, the data as it is */
export function encodeFrame (id: number, header: Uint8Array, data?: Uint8Array | null): Uint8ArrayList<ArrayBufferLike> {
  // a longer one would go out with its length cut to 16 bits: the far end would read
  // a broken header and take the rest of it for data
  if (header.length > MAX_FRAME_HEADER) throw new GvsError('invalid', `replica frame header of ${header.length} bytes is over the ${MAX_FRAME_HEADER} a frame can carry`)
  const dataLength = data?.length ?? 0
  // likewise a length past 32 bits would wrap (the receiver's own bound is far lower)
  if (FRAME_PREFIX - 4 + header.length + dataLength > 0xffffffff) throw new GvsError('invalid', `replica frame of ${dataLength} data bytes is over what a frame can carry`)
  const head = new Uint8Array(FRAME_PREFIX + header.length)
  const dv = new DataView(head.buffer)
  dv.setUint32(0, FRAME_PREFIX - 4 + header.length + dataLength)
  dv.setUint32(4, id >>> 0)
  dv.setUint16(8, header.length)
  head.set(header, FRAME_PREFIX)
  const out = new Uint8ArrayList<ArrayBufferLike>(head)
  if (data != null && data.length > 0) out.append(data)
  return out
}

/**
 * The bytes of a list as one array: the piece itself when there is one, else a copy
 * into a pooled buffer (buffer-pool.ts: a fresh one's pages cost more to fault in than
 * the copy), which whoever is done with it may give back.
 */
function joined (list: Uint8ArrayList): Uint8Array {
  let only: Uint8Array | null = null
  let count = 0
  for (const piece of list) { only = piece; if (++count > 1) break }
  if (count === 1 && only != null) return only
  const out = readBuffers.take(list.byteLength)
  let at = 0
  for (const piece of list) { out.set(piece, at); at += piece.byteLength }
  return out
}

/**
 * Cuts frames out of a byte stream that arrives in arbitrary pieces. A frame longer
 * than `maxFrame`, or whose header overruns it, is a protocol error: the stream it
 * came on cannot be trusted to stay in step and must end.
 */
export class FrameReader {
  private readonly buf = new Uint8ArrayList()
  private readonly maxFrame: number
  private readonly maxHeader: number

  constructor (maxFrame: number, maxHeader: number) {
    this.maxFrame = maxFrame
    this.maxHeader = maxHeader
  }

  /** adds bytes and returns the frames now complete, in order */
  push (bytes: Uint8Array | Uint8ArrayList): Frame[] {
    this.buf.append(bytes)
    const out: Frame[] = []
    while (this.buf.length >= FRAME_PREFIX) {
      const len = this.buf.getUint32(0)
      if (len < FRAME_PREFIX - 4 || len > this.maxFrame) throw new GvsError('invalid', `replica frame of ${len} bytes is outside 6..${this.maxFrame}`)
      if (this.buf.length < 4 + len) break
      const id = this.buf.getUint32(4)
      const hlen = this.buf.getUint16(8)
      if (hlen > this.maxHeader || FRAME_PREFIX - 4 + hlen > len) throw new GvsError('invalid', `replica frame header of ${hlen} bytes does not fit (frame ${len} bytes, header limit ${this.maxHeader})`)
      const header = this.buf.subarray(FRAME_PREFIX, FRAME_PREFIX + hlen)
      const dataLen = len - (FRAME_PREFIX - 4) - hlen
      const data = dataLen > 0 ? joined(this.buf.sublist(FRAME_PREFIX + hlen, 4 + len)) : null
      this.buf.consume(4 + len)
      out.push({ id, header, data })
    }
    return out
  }

  /** bytes held of an incomplete frame */
  get buffered (): number { return this.buf.length }
}
