import test from 'ava'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { patch } from '../../protocol/patches/length-prefix-empty-buffer.ts'

const patchLengthPrefixedDecoder = (): void => { patch.install() }

const uint16 = (b: Uint8ArrayList | Uint8Array): number => {
  if (b.byteLength < 2) throw new RangeError('short')
  return b instanceof Uint8Array ? (b[0]! << 8) + b[1]! : b.getUint16(0)
}

test('the patched length-prefixed decoder still splits, joins and waits for frames', t => {
  patchLengthPrefixedDecoder()
  const d = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2 })
  const frames = (chunk: number[]): string[] => [...d.decode(new Uint8Array(chunk))].map(f => new TextDecoder().decode(f.subarray()))
  // two frames in one chunk
  t.deepEqual(frames([0, 2, 104, 105, 0, 1, 33]), ['hi', '!'])
  // one frame over three chunks, with the length prefix itself split
  t.deepEqual(frames([0]), [])
  t.deepEqual(frames([3, 97]), [])
  t.deepEqual(frames([98, 99]), ['abc'])
  // an empty chunk on an empty buffer: nothing, no error
  t.deepEqual(frames([]), [])
})

test('a frame over the limit is still refused', t => {
  patchLengthPrefixedDecoder()
  const d = new LengthPrefixedDecoder({ lengthDecoder: uint16, encodingLength: () => 2, maxDataLength: 4 })
  t.throws(() => [...d.decode(new Uint8Array([0, 9, 1, 2, 3]))], { message: /length/i })
})
