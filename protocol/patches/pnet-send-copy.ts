// Symptom: an agent serving a replicated write spent 6 % of its CPU (profiled with
// bench/gvs-repl.ts) in Buffer.concat under pnet's sendData, copying every byte it
// sent once more before enciphering it.
//
// Cause, in @libp2p/pnet, src/crypto.ts, BoxMessageStream.sendData: what Noise hands
// down is a list (each message's 2-byte length, then its ciphertext and tag), and
// sendData enciphers `data.subarray()`, which for a list is a new buffer with all of
// it; the cipher then makes a second buffer for its output. The patch enciphers each
// piece of the list straight into one output buffer: the same keystream over the same
// bytes in the same order, so the wire does not change.
//
// Upstream: no issue in libp2p/js-libp2p asks for it (#3585 is about pnet's memory).
import { missingFields, missingMethods, packageVersion, type Patch } from './probe.ts'
import { liveClasses } from './live-classes.ts'

const PNET_ENTRY = import.meta.resolve('@libp2p/pnet')

interface Cipher { update: (input: Uint8Array, output?: Uint8Array) => Uint8Array }
interface Sender {
  outboundXor: Cipher
  maConn: { send: (data: Uint8Array) => boolean }
}
type Bytes = Uint8Array | Iterable<Uint8Array> & { byteLength: number }

/** pnet's sendData without the copy: each piece enciphered into its place in one buffer */
function sendData (this: Sender, data: Bytes): { sentBytes: number, canSendMore: boolean } {
  let out: Uint8Array
  if (data instanceof Uint8Array) {
    out = this.outboundXor.update(data)
  } else {
    out = new Uint8Array(data.byteLength)
    let at = 0
    for (const piece of data) {
      if (piece.byteLength === 0) continue
      this.outboundXor.update(piece, out.subarray(at, at + piece.byteLength))
      at += piece.byteLength
    }
  }
  return { sentBytes: data.byteLength, canSendMore: this.maConn.send(out) }
}

/**
 * What the patch needs of the library and is missing, or null. `proto` is
 * BoxMessageStream.prototype as findLiveClasses() found it (or why not).
 */
export function check (proto: object | string | null | undefined = liveClasses()?.box): string | null {
  if (proto == null) return 'the pnet stream class was not looked for (findLiveClasses() runs first)'
  if (typeof proto === 'string') return proto
  const missing = missingMethods('BoxMessageStream.prototype', proto, ['sendData'])
  if (missing != null) return missing
  // the replacement uses the same cipher and connection fields
  return missingFields('BoxMessageStream.prototype.sendData', (proto as { sendData: unknown }).sendData, ['outboundXor', 'maConn'])
}

let patched = false

function install (): void {
  if (patched) return
  const proto = liveClasses()?.box as { sendData: unknown }
  proto.sendData = sendData
  patched = true
}

export const patch: Patch = {
  name: 'pnet copies what it sends',
  package: '@libp2p/pnet',
  version: () => packageVersion('@libp2p/pnet', PNET_ENTRY),
  check: () => patched ? null : check(),
  install
}

export { sendData as sendWithoutCopy }
