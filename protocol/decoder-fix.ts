// A fix for @libp2p/utils' LengthPrefixedDecoder (under Noise, so under every
// connection). After each chunk it asks for the next length even when nothing is left
// in its buffer, and the length decoder answers by throwing a new RangeError, which
// the loop catches. Capturing that error's stack on every received chunk was about 6 %
// of an idle grid's CPU. The patch answers an empty buffer with one prepared error
// (no stack to capture); any other buffer goes to the library's own decoder.
import { LengthPrefixedDecoder } from '@libp2p/utils'

type LengthDecoder = (buf: { byteLength: number }) => number
interface DecoderState { lengthDecoder: LengthDecoder, [wrapped]?: true }

const wrapped = Symbol('vgrid.emptyBufferShortcut')
// the loop stops on any RangeError; its stack is never looked at
const EMPTY = new RangeError('no length prefix in an empty buffer')

let patched = false

export function patchLengthPrefixedDecoder (): void {
  if (patched) return
  const proto = LengthPrefixedDecoder.prototype as unknown as { decode: (this: DecoderState, buf: unknown) => Generator<unknown> }
  const decode = proto.decode
  proto.decode = function (this: DecoderState, buf: unknown): Generator<unknown> {
    if (this[wrapped] !== true) {
      const lengthDecoder = this.lengthDecoder
      this.lengthDecoder = b => {
        if (b.byteLength === 0) throw EMPTY
        return lengthDecoder(b)
      }
      this[wrapped] = true
    }
    return decode.call(this, buf)
  }
  patched = true
}

patchLengthPrefixedDecoder()
