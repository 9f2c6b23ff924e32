// Noise with one KeyObject per session key must seal and open exactly as the library
// does, so agents with and without the patch understand each other
// (protocol/patches/noise-session-key.ts).
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { defaultCrypto, nodeCrypto, pureJsCrypto } from '@chainsafe/libp2p-noise/crypto'
import { BULK_BYTES, check, knownSessionKey, patch, sessionKey, withSessionKeys } from '../../protocol/patches/noise-session-key.ts'

const bytes = (b: { subarray: () => Uint8Array }): Buffer => Buffer.from(b.subarray())
// the library takes lists of its own copy of uint8arraylist (2.x); ours (3.x) pass its marker check
const asLib = (l: Uint8ArrayList): Parameters<typeof nodeCrypto.chaCha20Poly1305Encrypt>[0] => l as unknown as Parameters<typeof nodeCrypto.chaCha20Poly1305Encrypt>[0]
const nonceOf = (n: number): Uint8Array => { const b = new Uint8Array(12); new DataView(b.buffer).setUint32(4, n, true); return b }

test('patched messages are the library\'s bytes, and each side opens the other\'s', t => {
  const patched = withSessionKeys(nodeCrypto)
  const k = randomBytes(32)
  const ad = randomBytes(32)
  // around the threshold, a full Noise message, and one split in list pieces
  for (const [i, size] of [0, 1, BULK_BYTES - 1, BULK_BYTES, 4096, 65535 - 16].entries()) {
    const plain = randomBytes(size)
    const nonce = nonceOf(i)
    const sealed = patched.chaCha20Poly1305Encrypt(plain, nonce, ad, k)
    // noble's pure-JS cipher is an implementation of its own: the wire format, not the code path
    t.deepEqual(bytes(sealed), bytes(pureJsCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)), `${size} bytes sealed alike`)
    t.deepEqual(bytes(pureJsCrypto.chaCha20Poly1305Decrypt(sealed.subarray(), nonce, ad, k)), Buffer.from(plain))
    const theirs = nodeCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)
    t.deepEqual(bytes(patched.chaCha20Poly1305Decrypt(theirs, nonce, ad, k)), Buffer.from(plain), `${size} bytes opened`)
    const list = new Uint8ArrayList(plain.subarray(0, 12), plain.subarray(12))
    t.deepEqual(bytes(patched.chaCha20Poly1305Encrypt(asLib(list), nonce, ad, k)), bytes(sealed), 'a list seals as one message')
    t.deepEqual(bytes(patched.chaCha20Poly1305Decrypt(asLib(new Uint8ArrayList(sealed.subarray().subarray(0, 7), sealed.subarray().subarray(7))), nonce, ad, k)), Buffer.from(plain))
  }
})

test('a patched decrypt refuses a tampered message, a wrong nonce and a wrong key', t => {
  const patched = withSessionKeys(nodeCrypto)
  const k = randomBytes(32)
  const ad = new Uint8Array(0)
  const sealed = Uint8Array.from(patched.chaCha20Poly1305Encrypt(randomBytes(8000), nonceOf(1), ad, k).subarray())
  t.notThrows(() => patched.chaCha20Poly1305Decrypt(sealed, nonceOf(1), ad, k))
  t.throws(() => patched.chaCha20Poly1305Decrypt(sealed, nonceOf(2), ad, k))
  t.throws(() => patched.chaCha20Poly1305Decrypt(sealed, nonceOf(1), ad, randomBytes(32)))
  sealed[100]! ^= 1
  t.throws(() => patched.chaCha20Poly1305Decrypt(sealed, nonceOf(1), ad, k))
})

test('one KeyObject per session key; a key whose bytes changed is made again', t => {
  const k = randomBytes(32)
  const first = sessionKey(k)
  t.is(sessionKey(k), first)
  t.not(sessionKey(Uint8Array.from(k)), first, 'keyed by the session\'s array, not by value')
  k[0]! ^= 1
  const again = sessionKey(k)
  t.not(again, first)
  t.deepEqual(Buffer.from(again.export()), Buffer.from(k))
})

test('the patch goes into the library\'s defaultCrypto and notices a changed library', t => {
  t.is(check(), null)
  patch.install()
  patch.install()
  const k = randomBytes(32)
  const plain = randomBytes(20000)
  t.is(knownSessionKey(k), undefined)
  const sealed = defaultCrypto.chaCha20Poly1305Encrypt(plain, nonceOf(3), new Uint8Array(0), k)
  t.deepEqual(bytes(sealed), bytes(nodeCrypto.chaCha20Poly1305Encrypt(plain, nonceOf(3), new Uint8Array(0), k)))
  t.truthy(knownSessionKey(k), 'the message went through the patched path')
  t.regex(check({}) ?? '', /defaultCrypto is not there/)
  t.regex(check({ defaultCrypto: { chaCha20Poly1305Encrypt () {} } }) ?? '', /has no chaCha20Poly1305Decrypt\(\)/)
  const fns = { chaCha20Poly1305Encrypt () {}, chaCha20Poly1305Decrypt () {} }
  t.regex(check({ defaultCrypto: fns }, 42) ?? '', /noise\(\) is no longer exported/)
  t.regex(check({ defaultCrypto: fns }, () => () => ({ crypto: { encrypt () {}, decrypt () {} } })) ?? '', /no longer takes its cipher from defaultCrypto/)
  t.is(check({ defaultCrypto: fns }, () => () => ({ crypto: { encrypt: fns.chaCha20Poly1305Encrypt, decrypt: fns.chaCha20Poly1305Decrypt } })), null)
})
