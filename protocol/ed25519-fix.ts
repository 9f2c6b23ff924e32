// Ed25519 verification with each public key imported once. @libp2p/crypto turns the
// raw key into a node:crypto KeyObject (a JWK import) on every verify. Every gossip
// message is verified (StrictSign) and every advert once more on its own signature:
// together an eighth of an idle grid's CPU (profiled, 50 agents), and the import was
// about 40 % of each verify (231 µs per verify with it, 141 µs with a prepared key).
// The patch keeps the KeyObjects of the last few thousand keys; the check itself is
// still node:crypto's verify.
import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'

/** a grid has at most this many members whose messages arrive at once; older keys are imported again */
const MAX_KEYS = 4096
const SIGNATURE_BYTES = 64

const keys = new Map<string, KeyObject>()

/** The KeyObject of a raw 32-byte Ed25519 public key, imported on first use. */
export function ed25519KeyObject (raw: Uint8Array): KeyObject {
  const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url')
  let key = keys.get(x)
  if (key == null) {
    key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x } })
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!)
    keys.set(x, key)
  }
  return key
}

interface Ed25519Verify {
  raw: Uint8Array
  verify: (data: Uint8Array | { subarray: () => Uint8Array }, sig: Uint8Array, options?: { signal?: AbortSignal }) => boolean
}

let patched = false

export function patchEd25519Verify (): void {
  if (patched) return
  const proto = Object.getPrototypeOf(publicKeyFromRaw(new Uint8Array(32))) as Ed25519Verify
  proto.verify = function (this: Ed25519Verify, data, sig, options) {
    options?.signal?.throwIfAborted()
    // as the library does: a signature of the wrong size is an error, not a false
    if (!(sig instanceof Uint8Array) || sig.byteLength !== SIGNATURE_BYTES) throw new TypeError('"sig" must be 64 bytes in length.')
    return verify(null, data instanceof Uint8Array ? data : data.subarray(), ed25519KeyObject(this.raw), sig)
  }
  patched = true
}

patchEd25519Verify()
