// pnet's cipher computed four blocks at a time must give exactly the keystream of the
// xsalsa20 package (and of any XSalsa20), at every split of the data and across the
// 32-bit block counter, so agents with and without the patch keep talking
// (protocol/patches/xsalsa20-simd.ts, protocol/patches/salsa20-simd.ts).
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { xsalsa20 as nobleXSalsa20 } from '@noble/ciphers/salsa.js'
import { XSalsa20Stream } from '../../protocol/patches/salsa20-simd.ts'
import { check, keyAndNonce, patch } from '../../protocol/patches/xsalsa20-simd.ts'
import { XSalsa20 } from '../../protocol/patches/xsalsa20-detached-memory.ts'

/** byte equality of large buffers (t.deepEqual would compare them byte by byte, slowly) */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

/** the library's own computation: its WASM state, which the patch leaves alone */
function libraryStream (nonce: Uint8Array, key: Uint8Array): (input: Uint8Array) => Uint8Array {
  const c = XSalsa20(nonce, key)
  return (input) => { const out = new Uint8Array(input.length); if (input.length > 0) c._xor.update(input, out); return out }
}

function simdStream (nonce: Uint8Array, key: Uint8Array, position = 0): (input: Uint8Array) => Uint8Array {
  const s = new XSalsa20Stream(key, nonce, position)
  return (input) => { const out = new Uint8Array(input.length); s.update(input, out); return out }
}

test('the same keystream as the library and as noble, for any split of the data', t => {
  for (let run = 0; run < 20; run++) {
    const key = randomBytes(32)
    const nonce = randomBytes(24)
    const data = randomBytes(run === 0 ? 700_000 : 20_000 + run * 997) // the first crosses the 256 KiB slices
    t.true(same(simdStream(nonce, key)(data), nobleXSalsa20(key, nonce, data)), `run ${run}: as noble`)
    const lib = libraryStream(nonce, key)
    const simd = simdStream(nonce, key)
    for (let i = 0, n = run; i < data.length; i += n, n = (n * 31 + 7) % (run % 2 === 0 ? 300 : 70_000)) {
      const part = data.subarray(i, i + n)
      const want = Buffer.from(lib(part))
      if (!want.equals(Buffer.from(simd(part)))) { t.fail(`run ${run}: bytes ${i}..${i + part.length} differ`); return }
    }
  }
  t.pass()
})

test('many ciphers used in turn share the module\'s memory without mixing their streams', t => {
  const ciphers = Array.from({ length: 50 }, () => ({ key: randomBytes(32), nonce: randomBytes(24), at: 0, out: [] as Buffer[] }))
  const streams = ciphers.map(c => simdStream(c.nonce, c.key))
  const data = randomBytes(400_000)
  for (let round = 0; round < 6; round++) {
    ciphers.forEach((c, i) => {
      // sizes from a few bytes to more than one 256 KiB slice, different for each cipher
      const n = Math.min(data.length - c.at, [7, 1000, 65_548, 300_000, 64, 3][(round + i) % 6]!)
      c.out.push(Buffer.from(streams[i]!(data.subarray(c.at, c.at + n))))
      c.at += n
    })
  }
  for (const c of ciphers) t.true(same(Buffer.concat(c.out), nobleXSalsa20(c.key, c.nonce, data.subarray(0, c.at))))
})

test('the keystream carries the block counter past 2^32 as the library does', t => {
  const key = randomBytes(32)
  const nonce = randomBytes(24)
  const lib = XSalsa20(nonce, key)
  // the library keeps its 64-bit block counter at the start of its state: start it 3 blocks before 2^32
  const xor = lib._xor as unknown as { _memory: Uint8Array, _pointer: number }
  const start = 2 ** 32 - 3
  new DataView(xor._memory.buffer, xor._memory.byteOffset + xor._pointer, 8).setBigUint64(0, BigInt(start), true)
  const data = randomBytes(64 * 10 + 5)
  const want = new Uint8Array(data.length)
  lib._xor.update(data, want)
  t.deepEqual(Buffer.from(simdStream(nonce, key, start * 64)(data)), Buffer.from(want))
  const again = simdStream(nonce, key, start * 64 + 100)(data.subarray(100))
  t.deepEqual(Buffer.from(again), Buffer.from(want.subarray(100)), 'starting mid-block')
})

test('patched ciphers from the library\'s factory keep the stream; used ones stay on the library\'s path', t => {
  const key = randomBytes(32)
  const nonce = randomBytes(24)
  const used = XSalsa20(nonce, key)
  used.update(randomBytes(100)) // before the patch: the library's path from here on
  t.is(check(), null)
  patch.install()
  patch.install()
  const c = XSalsa20(nonce, key)
  const data = randomBytes(200_000)
  const want = nobleXSalsa20(key, nonce, data)
  const got = Buffer.concat([c.update(data.subarray(0, 33)), c.update(data.subarray(33, 150_033)), c.update(data.subarray(150_033))])
  t.true(same(got, want))
  t.deepEqual(Buffer.from(used.update(data.subarray(100, 1000))), Buffer.from(want.subarray(100, 1000)))
  c.finalize?.()
  t.throws(() => c.update(data), undefined, 'a finalized cipher fails as before')
})

test('the patch notices a cipher whose state it can no longer read', t => {
  t.regex(check(42) ?? '', /no longer exports the cipher factory/)
  class Cipher { _xor: unknown; constructor (x: unknown) { this._xor = x } update (): void {} finalize (): void {} }
  const state = (over: object): object => ({ _memory: new Uint8Array(256), _pointer: 0, _nonce: 8, _key: 32, _overflow: 0, realloc () {}, ...over })
  t.regex(check(() => new Cipher(undefined)) ?? '', /no _xor/)
  t.regex(check(() => new Cipher(state({ _key: undefined }))) ?? '', /has no _key/)
  t.regex(check(() => new Cipher(state({ realloc: undefined }))) ?? '', /has no realloc\(\)/)
  t.regex(check(() => new Cipher(state({}))) ?? '', /no longer keeps the key and nonce where the patch reads them/)
  t.regex(check(() => new Cipher(state({ _overflow: 3 }))) ?? '', /does not start at position 0/)
  t.regex(check(() => ({ _xor: state({}) })) ?? '', /has no update\(\), finalize\(\)/)
  // a state laid out as the patch reads it passes
  t.is(keyAndNonce(state({}) as Parameters<typeof keyAndNonce>[0])?.key.length, 32)
})
