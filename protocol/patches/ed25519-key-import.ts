// Symptom: an eighth of an idle grid's CPU (profiled, 50 agents) went to Ed25519
// signature checks, and about 40 % of each check to importing the same public key
// again (231 µs per verify with the import, 141 µs with a prepared key).
//
// Cause, in @libp2p/crypto, src/keys/ed25519/index.ts, hashAndVerify (called by
// Ed25519PublicKey.verify in src/keys/ed25519/ed25519.ts): the raw key becomes a
// node:crypto KeyObject (a JWK import) on every verify. Every gossip message is
// verified (StrictSign) and every advert once more on its own signature. The patch
// replaces Ed25519PublicKey.prototype.verify with one that keeps the KeyObjects of
// the last few thousand keys; the check itself is still node:crypto's verify.
//
// Upstream: no issue or pull request in libp2p/js-libp2p asks for cached key imports.
import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import * as keysModule from '@libp2p/crypto/keys'
import { missingMethods, packageVersion, type Patch } from './probe.ts'

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

/** What the patch needs of the key class and is missing in `mod`, or null. */
export function check (mod: { publicKeyFromRaw?: unknown } = keysModule): string | null {
  if (typeof mod.publicKeyFromRaw !== 'function') return 'publicKeyFromRaw is no longer exported'
  let key: Partial<Ed25519Verify> & { type?: unknown }
  try {
    key = (mod.publicKeyFromRaw as (raw: Uint8Array) => typeof key)(new Uint8Array(32))
  } catch (err) {
    return `an Ed25519 public key cannot be made from raw bytes: ${(err as Error).message}`
  }
  if (key.type !== 'Ed25519') return `a 32-byte raw key is no longer an Ed25519 key (type ${String(key.type)})`
  if (!(key.raw instanceof Uint8Array) || key.raw.byteLength !== 32) return 'an Ed25519 public key has no 32-byte raw field'
  return missingMethods('the Ed25519 public key prototype', Object.getPrototypeOf(key), ['verify'])
}

let patched = false

function install (): void {
  if (patched) return
  const proto = Object.getPrototypeOf(keysModule.publicKeyFromRaw(new Uint8Array(32))) as Ed25519Verify
  proto.verify = function (this: Ed25519Verify, data, sig, options) {
    options?.signal?.throwIfAborted()
    // as the library does: a signature of the wrong size is an error, not a false
    if (!(sig instanceof Uint8Array) || sig.byteLength !== SIGNATURE_BYTES) throw new TypeError('"sig" must be 64 bytes in length.')
    return verify(null, data instanceof Uint8Array ? data : data.subarray(), ed25519KeyObject(this.raw), sig)
  }
  patched = true
}

export const patch: Patch = {
  name: 'ed25519 key import per verify',
  package: '@libp2p/crypto',
  version: () => packageVersion('@libp2p/crypto', import.meta.resolve('@libp2p/crypto/keys')),
  // once installed, the library's own function is wrapped: it was checked before
  check: () => patched ? null : check(),
  install
}
