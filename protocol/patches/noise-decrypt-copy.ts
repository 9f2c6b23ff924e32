// Symptom: a replica agent taking writes spent 12 % of its CPU (profiled with
// bench/gvs-repl.ts, receiving side) in Buffer.concat under Noise's decrypt, copying
// almost every byte it received once more before deciphering it.
//
// Cause, in @chainsafe/libp2p-noise, src/utils.ts, EncryptedMessageStream.decrypt: a
// Noise message arrives as a list of the socket's pieces (a 64 KiB message nearly
// always spans two reads), and for each message decrypt makes `dst =
// chunk.subarray(...)`, which for a list concatenates the whole message into a new
// buffer, to offer it as the output of an in-place decipher. Only the WASM cipher of
// messages under 1200 bytes writes there; node:crypto, which takes every larger
// message, never reads `dst` and deciphers the list piece by piece. The patch makes
// `dst` only for messages the WASM cipher takes (or when it is a free view of one
// array); the cipher, nonces and output are the library's, so the wire does not change.
//
// Upstream: ChainSafe/js-libp2p-noise#242 added `dst` to save an allocation with the
// WASM cipher; the node:crypto path (ChainSafe/js-libp2p-noise#385) came later and
// does not use it. No issue reports the copy.
import { Uint8ArrayList } from 'uint8arraylist'
import { missingFields, missingMethods, packageVersion, type Patch } from './probe.ts'
import { BULK_BYTES } from './noise-session-key.ts'
import { liveClasses } from './live-classes.ts'

const NOISE_ENTRY = import.meta.resolve('@chainsafe/libp2p-noise')

// Noise's limits (the specification's): a message of at most 65535 bytes, 16 of them the tag
const TAG_BYTES = 16
const MAX_MESSAGE = 65535

interface Handshake { decrypt: (ciphertext: unknown, dst?: Uint8Array) => Uint8Array | Uint8ArrayList }
interface Decrypter {
  handshake: Handshake
  metrics?: { decryptedPackets: { increment: () => void }, decryptErrors: { increment: () => void } }
  decrypt: (chunk: Uint8Array | Uint8ArrayList) => Uint8ArrayList
}

/** Noise's decrypt without the copy: messages of the whole chunk, each deciphered by the handshake */
function decrypt (this: Pick<Decrypter, 'handshake' | 'metrics'>, chunk: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  const output = new Uint8ArrayList()
  for (let i = 0; i < chunk.byteLength; i += MAX_MESSAGE) {
    const end = Math.min(i + MAX_MESSAGE, chunk.byteLength)
    if (end - TAG_BYTES < i) throw new Error('Invalid chunk')
    const encrypted = chunk instanceof Uint8Array ? chunk.subarray(i, end) : chunk.sublist(i, end)
    // a view costs nothing; a list's subarray is a copy, made only where a cipher writes to it
    const dst = chunk instanceof Uint8Array || end - i < BULK_BYTES ? chunk.subarray(i, end - TAG_BYTES) : undefined
    try {
      output.append(this.handshake.decrypt(encrypted, dst))
      this.metrics?.decryptedPackets.increment()
    } catch (e) {
      this.metrics?.decryptErrors.increment()
      throw e
    }
  }
  return output
}

/**
 * What the patch needs of the library and is missing, or null. `proto` is
 * EncryptedMessageStream.prototype as findLiveClasses() found it (or why not).
 */
export function check (proto: object | string | null | undefined = liveClasses()?.encrypted): string | null {
  if (proto == null) return 'the encrypted stream class was not looked for (findLiveClasses() runs first)'
  if (typeof proto === 'string') return proto
  const missing = missingMethods('EncryptedMessageStream.prototype', proto, ['decrypt'])
  if (missing != null) return missing
  // the replacement reads the same fields, calls the handshake the same way and cuts
  // messages where the library does
  const fn = (proto as { decrypt: unknown }).decrypt
  const fields = missingFields('EncryptedMessageStream.prototype.decrypt', fn, ['handshake', 'metrics', 'decryptedPackets', 'decryptErrors'])
  if (fields != null) return fields
  // (the bundled build inlines the constant: its name or its value)
  return /\bNOISE_MSG_MAX_LENGTH_BYTES\b|\b65535\b/.test(String(fn)) ? null : 'EncryptedMessageStream.prototype.decrypt no longer cuts messages at NOISE_MSG_MAX_LENGTH_BYTES'
}

let patched = false

function install (): void {
  if (patched) return
  const proto = liveClasses()?.encrypted as { decrypt: unknown }
  proto.decrypt = decrypt
  patched = true
}

export const patch: Patch = {
  name: 'noise decrypt copies each message',
  package: '@chainsafe/libp2p-noise',
  version: () => packageVersion('@chainsafe/libp2p-noise', NOISE_ENTRY),
  check: () => patched ? null : check(),
  install
}

export { decrypt as decryptWithoutCopy }
