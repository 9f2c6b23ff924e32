// Symptom: pnet's cipher took a fifth of a replica stream's CPU (profiled with
// bench/stream.ts, after the Noise session-key patch), more than Noise's own cipher,
// and a single stream stayed under 100 MB/s.
//
// Cause, in xsalsa20 (the cipher under @libp2p/pnet), xsalsa20.wat and index.js: its
// WebAssembly makes one 64-byte Salsa20 block at a time with scalar instructions and
// derives the HSalsa20 subkey again on every update. The patch routes
// XSalsa20.prototype.update through salsa20-simd.ts, which makes four blocks at once in
// WebAssembly SIMD and derives the subkey once per cipher: the same keystream, so the
// bytes on the wire do not change and agents with and without the patch connect. It
// reads the key and nonce from the library's own cipher state on the first update; a
// cipher that already ran (made before the patch went in) stays on the library's path.
//
// Upstream: xsalsa20 is unmaintained since 2019; @libp2p/pnet has no issue asking for a
// faster cipher (libp2p/js-libp2p#3585 only bounded its memory).
import { createRequire } from 'node:module'
import { missingMethods, packageVersion, type Patch } from './probe.ts'
import { simdAvailable, XSalsa20Stream } from './salsa20-simd.ts'
import { XSalsa20, type XSalsa20Cipher, type XSalsa20Factory } from './xsalsa20-detached-memory.ts'

/** the library's WASM cipher state, as far as the patch reads it */
interface WasmState { _memory: Uint8Array, _pointer: number, _nonce: number, _key: number, _overflow: number, realloc: (size: number) => void }
type Cipher = XSalsa20Cipher & { update: (input: Uint8Array, output?: Uint8Array) => Uint8Array, finalize: () => void }

// the copy of xsalsa20 that @libp2p/pnet loads (the factory comes from the same place)
const pnetDir = createRequire(import.meta.url).resolve('@libp2p/pnet').replace(/dist[/\\]src[/\\]index\.js$/, '')
const XSALSA20_ENTRY = createRequire(pnetDir + 'package.json').resolve('xsalsa20')

const NONCE_BYTES = 24
const KEY_BYTES = 32

/** The key and nonce of a cipher that has not run yet, read from its WASM state; else null. */
export function keyAndNonce (xor: WasmState): { key: Uint8Array, nonce: Uint8Array } | null {
  // all ciphers share one memory: this view is detached when another one grew it
  if (xor._memory.length === 0) xor.realloc(0)
  const m = xor._memory
  const counter = m.subarray(xor._pointer, xor._pointer + 8)
  if (xor._overflow !== 0 || counter.some(b => b !== 0)) return null
  return { key: m.slice(xor._key, xor._key + KEY_BYTES), nonce: m.slice(xor._nonce, xor._nonce + NONCE_BYTES) }
}

/** What the patch needs of the cipher and is missing in `factory`'s, or null. */
export function check (factory: unknown = XSalsa20): string | null {
  if (typeof factory !== 'function') return 'the module no longer exports the cipher factory'
  const nonce = Uint8Array.from({ length: NONCE_BYTES }, (_, i) => i + 1)
  const key = Uint8Array.from({ length: KEY_BYTES }, (_, i) => 100 + i)
  let probe: Partial<Cipher>
  try {
    probe = (factory as XSalsa20Factory)(nonce, key)
  } catch (err) {
    return `a cipher cannot be made: ${(err as Error).message}`
  }
  // without WebAssembly (SIMD) the library's own cipher stays: nothing to patch
  if (!('WebAssembly' in globalThis) || !simdAvailable()) return null
  const methods = missingMethods('the cipher prototype', Object.getPrototypeOf(probe), ['update', 'finalize'])
  if (methods != null) return methods
  const xor = probe._xor as Partial<WasmState> | undefined
  if (xor == null || typeof xor !== 'object') return 'a cipher has no _xor (its WASM state)'
  if (!(xor._memory instanceof Uint8Array)) return 'the WASM state has no _memory view'
  const fields = (['_pointer', '_nonce', '_key', '_overflow'] as const).filter(f => typeof xor[f] !== 'number')
  if (fields.length > 0) return `the WASM state has no ${fields.join(', ')}`
  const missing = missingMethods('the WASM state', xor, ['realloc'])
  if (missing != null) return missing
  const read = keyAndNonce(xor as WasmState)
  probe.finalize?.()
  if (read == null) return 'a new cipher\'s WASM state does not start at position 0'
  if (!read.key.every((b, i) => b === key[i]) || !read.nonce.every((b, i) => b === nonce[i])) return 'the WASM state no longer keeps the key and nonce where the patch reads them'
  return null
}

// per cipher: its SIMD stream, or null where it stays on the library's path
const streams = new WeakMap<object, XSalsa20Stream | null>()

function streamOf (c: Cipher): XSalsa20Stream | null {
  let s = streams.get(c)
  if (s === undefined) {
    const read = keyAndNonce(c._xor as unknown as WasmState)
    s = read == null ? null : new XSalsa20Stream(read.key, read.nonce)
    read?.key.fill(0)
    streams.set(c, s)
  }
  return s
}

let patched = false

function install (): void {
  if (patched) return
  if (!('WebAssembly' in globalThis) || !simdAvailable()) return
  const proto = Object.getPrototypeOf(XSalsa20(new Uint8Array(NONCE_BYTES), new Uint8Array(KEY_BYTES))) as Cipher
  const { update, finalize } = proto
  proto.update = function (this: Cipher, input: Uint8Array, output?: Uint8Array): Uint8Array {
    // a finalized cipher (no _xor) fails as the library's does
    const s = this._xor == null ? null : streamOf(this)
    if (s == null || !(input instanceof Uint8Array)) return update.call(this, input, output)
    output ??= new Uint8Array(input.length)
    if (input.length > 0) s.update(input, output)
    return output
  }
  proto.finalize = function (this: Cipher): void {
    streams.get(this)?.wipe()
    streams.delete(this)
    finalize.call(this)
  }
  Object.defineProperty(proto, 'final', { value: proto.finalize, writable: true, configurable: true })
  patched = true
}

export const patch: Patch = {
  name: 'xsalsa20 one block at a time',
  package: 'xsalsa20',
  version: () => packageVersion('xsalsa20', XSALSA20_ENTRY),
  // once installed, the library's own functions are wrapped: they were checked before
  check: () => patched ? null : check(),
  install
}
