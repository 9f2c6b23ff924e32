// Symptom: a replica stream spent 4 % of its CPU (profiled with bench/stream.ts, about
// a third of all it spent in Noise) setting up the cipher key, once for every message
// of at most 64 KiB, although each direction of a session has one key for its life.
//
// Cause, in @chainsafe/libp2p-noise, src/crypto/index.ts, nodeCrypto's
// chaCha20Poly1305Encrypt and chaCha20Poly1305Decrypt (what defaultCrypto uses for
// messages of 1200 bytes and more): each call hands the raw 32-byte key to
// createCipheriv/createDecipheriv, and Node imports it as a new secret key every time
// (getKeyObjectSlots, createCipherBase in the profile; about 11 µs of fixed cost per
// message, measured). The patch gives defaultCrypto the same two functions with a
// KeyObject made once per key: the key is the Uint8Array a CipherState holds for its
// whole life (one per session direction), so a WeakMap on it keeps one KeyObject per
// session direction, which goes when the session does. Same cipher, nonce, associated
// data and tag: the wire format does not change. Smaller messages still take the
// library's own path (its WASM cipher, faster there).
//
// Upstream: no issue or pull request in ChainSafe/js-libp2p-noise asks for a key kept
// per session; ChainSafe/js-libp2p-noise#385 brought in the node:crypto path as it is.
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import * as noiseCrypto from '@chainsafe/libp2p-noise/crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { Uint8ArrayList } from 'uint8arraylist'
import { missingMethods, packageVersion, type Patch } from './probe.ts'

type CryptoFns = Pick<typeof noiseCrypto.defaultCrypto, 'chaCha20Poly1305Encrypt' | 'chaCha20Poly1305Decrypt'>
/** a message as the library passes it: one array, or a list of them (its own copy of uint8arraylist) */
type Bytes = Parameters<CryptoFns['chaCha20Poly1305Encrypt']>[0]
// the lists made here are of our copy of uint8arraylist (3.x), the library's are 2.x:
// the two recognise each other's lists by a shared Symbol.for marker, not by class
const asBytes = (list: Uint8ArrayList): Bytes => list as unknown as Bytes

const ALGORITHM = 'chacha20-poly1305'
const TAG_BYTES = 16
/** the library's own threshold: below it its WASM cipher is faster than node:crypto */
export const BULK_BYTES = 1200

interface SessionKey { raw: Uint8Array, key: KeyObject }
const keys = new WeakMap<Uint8Array, SessionKey>()

/**
 * The KeyObject of a session direction's key `k`, made on its first message. Should
 * the array's bytes ever change under it, the key is made again: a stale key would
 * break the session.
 */
export function sessionKey (k: Uint8Array): KeyObject {
  const known = keys.get(k)
  if (known != null && Buffer.compare(known.raw, k) === 0) return known.key
  const raw = Uint8Array.from(k)
  const key = createSecretKey(raw)
  keys.set(k, { raw, key })
  return key
}

/** the KeyObject already made for `k`, if any (what a test looks at) */
export const knownSessionKey = (k: Uint8Array): KeyObject | undefined => keys.get(k)?.key

/** nodeCrypto.chaCha20Poly1305Encrypt with the session's KeyObject */
function encryptBulk (plaintext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Bytes {
  const cipher = createCipheriv(ALGORITHM, sessionKey(k), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  // the ciphertext and its tag as a list, not joined: the message goes out as a list
  // anyway (after its length), and pnet enciphers a list into one buffer
  // (pnet-send-copy.ts), so a join here would copy every byte once more
  const output = new Uint8ArrayList()
  for (const buf of plaintext instanceof Uint8Array ? [plaintext] : plaintext) output.append(cipher.update(buf))
  const final = cipher.final()
  if (final.byteLength > 0) output.append(final)
  output.append(cipher.getAuthTag())
  return asBytes(output)
}

/** nodeCrypto.chaCha20Poly1305Decrypt with the session's KeyObject (a bad tag throws in final()) */
function decryptBulk (ciphertext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Bytes {
  const decipher = createDecipheriv(ALGORITHM, sessionKey(k), nonce, { authTagLength: TAG_BYTES })
  const text = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, ciphertext.length - TAG_BYTES) : ciphertext.sublist(0, ciphertext.length - TAG_BYTES)
  decipher.setAAD(ad, { plaintextLength: text.byteLength })
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES))
  if (text instanceof Uint8Array) {
    const output = decipher.update(text)
    const final = decipher.final()
    return final.byteLength > 0 ? Buffer.concat([output, final], output.byteLength + final.byteLength) : output
  }
  const output = new Uint8ArrayList()
  for (const buf of text) output.append(decipher.update(buf))
  const final = decipher.final()
  if (final.byteLength > 0) output.append(final)
  return asBytes(output)
}

/** `fns` with bulk messages going through the session's KeyObject, small ones as before */
export function withSessionKeys (fns: CryptoFns): CryptoFns {
  const { chaCha20Poly1305Encrypt: encrypt, chaCha20Poly1305Decrypt: decrypt } = fns
  return {
    chaCha20Poly1305Encrypt: (plaintext, nonce, ad, k) => plaintext.byteLength < BULK_BYTES ? encrypt(plaintext, nonce, ad, k) : encryptBulk(plaintext, nonce, ad, k),
    chaCha20Poly1305Decrypt: (ciphertext, nonce, ad, k, dst) => ciphertext.byteLength < BULK_BYTES ? decrypt(ciphertext, nonce, ad, k, dst) : decryptBulk(ciphertext, nonce, ad, k)
  }
}

type NoiseFactory = (init?: object) => (components: object) => { crypto?: { encrypt?: unknown, decrypt?: unknown } }

/** What the patch needs of the module and is missing in `mod` (with `factory`, its noise()), or null. */
export function check (mod: { defaultCrypto?: unknown } = noiseCrypto, factory: unknown = noise): string | null {
  const missing = missingMethods('defaultCrypto', mod.defaultCrypto, ['chaCha20Poly1305Encrypt', 'chaCha20Poly1305Decrypt'])
  if (missing != null) return missing
  if (typeof factory !== 'function') return 'noise() is no longer exported'
  // the patch changes defaultCrypto's functions: an encrypter must still take them from there
  const logger = { forComponent: () => Object.assign(() => {}, { error () {}, trace () {}, enabled: false }) }
  let made
  try {
    made = (factory as NoiseFactory)()({ logger })
  } catch (err) {
    return `a Noise encrypter cannot be made: ${(err as Error).message}`
  }
  const fns = mod.defaultCrypto as CryptoFns
  if (made.crypto?.encrypt !== fns.chaCha20Poly1305Encrypt || made.crypto?.decrypt !== fns.chaCha20Poly1305Decrypt) {
    return 'a Noise encrypter no longer takes its cipher from defaultCrypto'
  }
  return null
}

let patched = false

function install (): void {
  if (patched) return
  // a property of the module's exported object: Noise encrypters made from now on
  // (createHost installs the patches before it makes any) take these functions
  Object.assign(noiseCrypto.defaultCrypto, withSessionKeys(noiseCrypto.defaultCrypto))
  patched = true
}

export const patch: Patch = {
  name: 'noise key import per message',
  package: '@chainsafe/libp2p-noise',
  version: () => packageVersion('@chainsafe/libp2p-noise', import.meta.resolve('@chainsafe/libp2p-noise')),
  // once installed, the library's own functions are wrapped: they were checked before
  check: () => patched ? null : check(),
  install
}
