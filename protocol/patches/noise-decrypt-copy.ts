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

const NOISE_ENTRY = import.meta.resolve('@chainsafe/libp2p-noise')
// the module the library's own index.js loads (the package exports only its entry)
const utils = await import(new URL('./utils.js', NOISE_ENTRY).href) as { toMessageStream?: unknown }
const constants = await import(new URL('./constants.js', NOISE_ENTRY).href) as Record<string, unknown>

const TAG_BYTES = 16
const MAX_MESSAGE = 65535

interface Handshake { decrypt: (ciphertext: unknown, dst?: Uint8Array) => Uint8Array | Uint8ArrayList }
interface Decrypter {
  handshake: Handshake
  metrics?: { decryptedPackets: { increment: () => void }, decryptErrors: { increment: () => void } }
  decrypt: (chunk: Uint8Array | Uint8ArrayList) => Uint8ArrayList
}

/** EncryptedMessageStream's prototype, reached through an instance on a stream that does nothing */
function streamPrototype (toMessageStream: unknown): Partial<Decrypter> | string {
  if (typeof toMessageStream !== 'function') return 'utils.js no longer exports toMessageStream()'
  const log = Object.assign(() => {}, { trace () {}, error () {}, enabled: false })
  const idle = { log, direction: 'inbound', inactivityTimeout: 0, addEventListener () {}, removeEventListener () {} }
  try {
    return Object.getPrototypeOf((toMessageStream as (s: object, h: object) => object)(idle, {})) as Partial<Decrypter>
  } catch (err) {
    return `an encrypted stream cannot be made: ${(err as Error).message}`
  }
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

/** What the patch needs of the library and is missing, or null. */
export function check (mod: { toMessageStream?: unknown } = utils, consts: Record<string, unknown> = constants): string | null {
  if (consts.NOISE_MSG_MAX_LENGTH_BYTES !== MAX_MESSAGE || consts.CHACHA_TAG_LENGTH !== TAG_BYTES) {
    return `the message limits changed (NOISE_MSG_MAX_LENGTH_BYTES ${String(consts.NOISE_MSG_MAX_LENGTH_BYTES)}, CHACHA_TAG_LENGTH ${String(consts.CHACHA_TAG_LENGTH)})`
  }
  const proto = streamPrototype(mod.toMessageStream)
  if (typeof proto === 'string') return proto
  const missing = missingMethods('EncryptedMessageStream.prototype', proto, ['decrypt'])
  if (missing != null) return missing
  // the replacement reads the same fields and calls the handshake the same way
  return missingFields('EncryptedMessageStream.prototype.decrypt', proto.decrypt, ['handshake', 'metrics', 'decryptedPackets'])
}

let patched = false

function install (): void {
  if (patched) return
  const proto = streamPrototype(utils.toMessageStream) as Decrypter
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
