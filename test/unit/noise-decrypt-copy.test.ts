// Noise's decrypt without the copy of each message (protocol/patches/noise-decrypt-copy.ts)
// must hand the cipher the same messages and give the same plaintext as the library's,
// for messages that arrive in one array or spread over the socket's pieces; only
// messages the WASM cipher takes still get an output buffer made for them.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { check, decryptWithoutCopy, patch } from '../../protocol/patches/noise-decrypt-copy.ts'
import { findLiveClasses } from '../../protocol/patches/live-classes.ts'

const MAX = 65535
const nonceOf = (n: number): Uint8Array => { const b = new Uint8Array(12); new DataView(b.buffer).setUint32(4, n, true); return b }

/** a handshake as the stream uses it: one key per direction, the nonce counting messages */
function session (k: Uint8Array, seen: Array<Uint8Array | undefined>) {
  let n = 0
  return {
    encrypt: (plain: Uint8Array) => defaultCrypto.chaCha20Poly1305Encrypt(plain, nonceOf(n++), new Uint8Array(0), k),
    decrypt: (ct: Parameters<typeof defaultCrypto.chaCha20Poly1305Decrypt>[0], dst?: Uint8Array) => {
      seen.push(dst)
      return defaultCrypto.chaCha20Poly1305Decrypt(ct, nonceOf(n++), new Uint8Array(0), k, dst)
    }
  }
}

/** sealed messages of these plaintext sizes, back to back as they arrive (lengths already cut off by the decoder) */
function sealedChunk (k: Uint8Array, sizes: number[]): { plain: Buffer, sealed: Buffer } {
  const s = session(k, [])
  const plains = sizes.map(n => randomBytes(n))
  return { plain: Buffer.concat(plains), sealed: Buffer.concat(plains.map(p => Buffer.from(s.encrypt(p).subarray()))) }
}

test('the patch finds what it relies on in the installed library, through a real Noise session', async t => {
  const { encrypted } = await findLiveClasses()
  t.is(typeof encrypted, 'object', String(encrypted))
  t.is(check(), null)
  t.is(check({}), 'EncryptedMessageStream.prototype has no decrypt()')
  t.regex(check({ decrypt () {} }) ?? '', /no longer uses handshake/)
  t.is(check('a Noise session could not be made'), 'a Noise session could not be made')
  t.is(patch.package, '@chainsafe/libp2p-noise')
})

test('the same plaintext as the library for one array and for a list of pieces; no copy of large messages', t => {
  const k = randomBytes(32)
  // one full message and a short one: the decrypt loop cuts a chunk at 65535 bytes
  for (const sizes of [[MAX - 16], [100], [MAX - 16, 900], [MAX - 16, 5000]]) {
    const { plain, sealed } = sealedChunk(k, sizes)
    for (const cut of [0, 1, 7_000, sealed.length - 10]) {
      const seen: Array<Uint8Array | undefined> = []
      // the WASM cipher deciphers in place: each round gets its own copy
      const bytes = Buffer.from(sealed)
      const chunk = cut === 0 ? bytes : new Uint8ArrayList(bytes.subarray(0, cut), bytes.subarray(cut))
      const out = decryptWithoutCopy.call({ handshake: session(k, seen) as never }, chunk)
      t.true(Buffer.from(out.subarray()).equals(plain), `${sizes.join('+')} bytes, cut at ${cut}`)
      // messages of a list under the WASM cipher's threshold still get their output buffer
      const wanted = sizes.map(n => cut === 0 || n + 16 < 1200)
      t.deepEqual(seen.map(d => d != null), wanted, `dst only where a cipher writes to it (${sizes.join('+')}, cut ${cut})`)
    }
  }
})

test('a damaged message is refused as by the library, and counted', t => {
  const k = randomBytes(32)
  const { sealed } = sealedChunk(k, [MAX - 16])
  sealed[100]! ^= 1
  let errors = 0
  const metrics = { decryptedPackets: { increment () {} }, decryptErrors: { increment () { errors++ } } }
  t.throws(() => decryptWithoutCopy.call({ handshake: session(k, []) as never, metrics }, new Uint8ArrayList(sealed.subarray(0, 10), sealed.subarray(10))))
  t.is(errors, 1)
  t.throws(() => decryptWithoutCopy.call({ handshake: session(k, []) as never }, new Uint8Array(10)), { message: 'Invalid chunk' })
})
