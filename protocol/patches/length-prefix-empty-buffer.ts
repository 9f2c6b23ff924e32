// Symptom: about 6 % of an idle grid's CPU went to capturing stack traces of errors
// nobody looks at.
//
// Cause, in @libp2p/utils, src/length-prefixed-decoder.ts, LengthPrefixedDecoder.decode
// (under Noise, so under every connection): after each chunk it asks its length decoder
// for the next length even when nothing is left in its buffer, and the decoder answers
// by throwing a new RangeError, which the loop catches. The patch answers an empty
// buffer with one prepared error (no stack to capture); any other buffer goes to the
// library's own decoder.
//
// Upstream: no issue or pull request for @libp2p/utils' decoder. The same symptom in
// the older mplex decoder was ChainSafe/lodestar#3467, fixed there by
// libp2p/js-libp2p-mplex#125 ("perf: do not call varint.decode() if buffer has 0
// length"); the check was not carried over when the decoder moved to @libp2p/utils.
import * as utils from '@libp2p/utils'
import { missingFields, missingMethods, packageVersion, type Patch } from './probe.ts'

type LengthDecoder = (buf: { byteLength: number }) => number
interface DecoderState { lengthDecoder: LengthDecoder, [wrapped]?: true }

const wrapped = Symbol('vgrid.emptyBufferShortcut')
// the loop stops on any RangeError; its stack is never looked at
const EMPTY = new RangeError('no length prefix in an empty buffer')

/** What the patch needs of the decoder class and is missing in `mod`, or null. */
export function check (mod: { LengthPrefixedDecoder?: unknown } = utils): string | null {
  const Decoder = mod.LengthPrefixedDecoder
  if (typeof Decoder !== 'function') return 'LengthPrefixedDecoder is no longer exported'
  const proto = (Decoder as { prototype?: unknown }).prototype
  const noDecode = missingMethods('LengthPrefixedDecoder.prototype', proto, ['decode'])
  if (noDecode != null) return noDecode
  try {
    const d = new (Decoder as new () => Partial<DecoderState>)()
    if (typeof d.lengthDecoder !== 'function') return 'a decoder has no lengthDecoder function'
  } catch (err) {
    return `a decoder cannot be made: ${(err as Error).message}`
  }
  // the wrapper relies on decode() calling this.lengthDecoder (and stopping on a RangeError)
  return missingFields('LengthPrefixedDecoder.prototype.decode', (proto as { decode: unknown }).decode, ['lengthDecoder'])
}

let patched = false

function install (): void {
  if (patched) return
  const proto = utils.LengthPrefixedDecoder.prototype as unknown as { decode: (this: DecoderState, buf: unknown) => Generator<unknown> }
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

export const patch: Patch = {
  name: 'length prefix on an empty buffer',
  package: '@libp2p/utils',
  version: () => packageVersion('@libp2p/utils', import.meta.resolve('@libp2p/utils')),
  // once installed, the library's own function is wrapped: it was checked before
  check: () => patched ? null : check(),
  install
}
