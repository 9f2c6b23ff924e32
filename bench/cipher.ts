// The two ciphers under every replica stream, the library's against the patched
// (protocol/patches/), in one run: Noise's ChaCha20-Poly1305 on full 64 KiB messages
// (encrypt + decrypt, one session key) and pnet's XSalsa20 on 64 KiB writes (the
// library's WASM against salsa20-simd.ts). Prints
// MB per CPU second and the ratio patched/library; checks that both give the same bytes.
//   node_modules/node/bin/node bench/cipher.ts            (CIPHER_BENCH_MIB per turn, default 128)
import { randomBytes } from 'node:crypto'
import { nodeCrypto } from '@chainsafe/libp2p-noise/crypto'
import { withSessionKeys } from '../protocol/patches/noise-session-key.ts'
import { XSalsa20 } from '../protocol/patches/xsalsa20-detached-memory.ts'
import { XSalsa20Stream } from '../protocol/patches/salsa20-simd.ts'

const MiB = 1024 * 1024
const TOTAL = Number(process.env.CIPHER_BENCH_MIB ?? 128) * MiB
const ROUNDS = 7

/** CPU time (user + system, ms) that `f` took: unlike wall time, not stretched while others run */
function cpuMs (f: () => void): number {
  const t0 = process.cpuUsage()
  f()
  const d = process.cpuUsage(t0)
  return (d.user + d.system) / 1000
}

/**
 * MB per CPU second of the library's and the patched function over `bytes` bytes: the
 * best of ROUNDS turns, taken alternately, so a load that comes and goes falls on both.
 */
function compare (what: string, bytes: number, library: () => void, patched: () => void): void {
  let lib = Infinity
  let pat = Infinity
  for (let r = 0; r < ROUNDS; r++) {
    lib = Math.min(lib, cpuMs(library))
    pat = Math.min(pat, cpuMs(patched))
  }
  const rate = (ms: number): string => (bytes / MiB / (ms / 1000)).toFixed(0).padStart(5)
  console.log(`${what.padEnd(44)} library ${rate(lib)} MB/s  patched ${rate(pat)} MB/s  ratio ${(lib / pat).toFixed(2)}x  (per CPU second)`)
}

function noise (): void {
  const MSG = 65535 - 16 // a full Noise message
  const k = randomBytes(32)
  const ad = new Uint8Array(0)
  const plain = randomBytes(MSG)
  const nonce = new Uint8Array(12)
  const patched = withSessionKeys(nodeCrypto)
  const n = Math.ceil(TOTAL / MSG)
  const run = (fns: typeof patched) => () => {
    for (let i = 0; i < n; i++) {
      new DataView(nonce.buffer).setUint32(4, i, true)
      const sealed = fns.chaCha20Poly1305Encrypt(plain, nonce, ad, k)
      fns.chaCha20Poly1305Decrypt(sealed, nonce, ad, k)
    }
  }
  const a = patched.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray()
  const b = nodeCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray()
  if (Buffer.compare(a, b) !== 0) throw new Error('patched Noise cipher differs from the library')
  compare('noise chacha20-poly1305, 64 KiB enc+dec', n * MSG, run(nodeCrypto), run(patched))
}

noise()

function xsalsa20 (): void {
  const WRITE = 64 * 1024 + 12 // a yamux frame of 64 KiB sealed by Noise, as pnet sees it
  const key = randomBytes(32)
  const nonce = randomBytes(24)
  const data = randomBytes(WRITE)
  const n = Math.ceil(TOTAL / WRITE)
  // the library's cipher, run through its own WASM state (what the patch replaces)
  const library = XSalsa20(nonce, key)
  const libraryUpdate = (input: Uint8Array): Uint8Array => { const out = new Uint8Array(input.length); library._xor.update(input, out); return out }
  const simd = new XSalsa20Stream(key, nonce)
  const simdUpdate = (input: Uint8Array): Uint8Array => { const out = new Uint8Array(input.length); simd.update(input, out); return out }
  if (Buffer.compare(libraryUpdate(data), simdUpdate(data)) !== 0) throw new Error('SIMD XSalsa20 differs from the library')
  compare('pnet xsalsa20, 64 KiB writes', n * WRITE, () => { for (let i = 0; i < n; i++) libraryUpdate(data) }, () => { for (let i = 0; i < n; i++) simdUpdate(data) })
}

xsalsa20()
