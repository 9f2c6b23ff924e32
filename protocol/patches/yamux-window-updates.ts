// Symptom: every heartbeat and every gossip message cost two frames, each one encrypted
// by Noise and by the pnet cipher: the second is a yamux window update.
//
// Cause, in @chainsafe/libp2p-yamux, src/stream.ts, YamuxStream.sendWindowUpdate: a
// stream answers every data frame it receives with a window update. The yamux spec
// leaves the timing to the receiver; go-yamux and rust-yamux send an update once half
// the window has been used (rust-yamux: libp2p/rust-yamux#100, "Send WindowUpdate
// message early", done in libp2p/rust-yamux#109), and so does this patch. A sender
// still has at least half a window (128 KiB or more) of credit whenever it waits for
// an update, so nothing stalls. Updates that carry flags (SYN/ACK on a new stream) are
// never held back.
//
// Upstream: no issue or pull request in ChainSafe/js-libp2p-yamux asks for this.
import * as yamuxStream from '@chainsafe/libp2p-yamux/stream'
import { missingFields, missingMethods, packageVersion, type Patch } from './probe.ts'

interface WindowState {
  state: number
  recvWindow: number
  recvWindowCapacity: number
}

// StreamState.Established in the library (checked by check())
const ESTABLISHED = 3

/** Whether a window update is worth a frame now: flags to send, or half the window used. */
export function windowUpdateDue (s: WindowState): boolean {
  if (s.state !== ESTABLISHED) return true
  return s.recvWindow - s.recvWindowCapacity >= s.recvWindow / 2
}

/** What the patch needs of the stream class and is missing in `mod`, or null. */
export function check (mod: { YamuxStream?: unknown, StreamState?: unknown } = yamuxStream): string | null {
  const states = mod.StreamState as Record<string, unknown> | undefined
  if (states?.Established !== ESTABLISHED) return `StreamState.Established is ${String(states?.Established)}, not ${ESTABLISHED}`
  const Stream = mod.YamuxStream
  if (typeof Stream !== 'function') return 'YamuxStream is no longer exported'
  const proto = (Stream as { prototype?: unknown }).prototype
  const gone = missingMethods('YamuxStream.prototype', proto, ['sendWindowUpdate'])
  if (gone != null) return gone
  // windowUpdateDue reads these fields of the stream
  return missingFields('YamuxStream.prototype.sendWindowUpdate', (proto as { sendWindowUpdate: unknown }).sendWindowUpdate, ['state', 'recvWindow', 'recvWindowCapacity'])
}

let patched = false

function install (): void {
  if (patched) return
  const proto = yamuxStream.YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
  const send = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (windowUpdateDue(this)) send.call(this)
  }
  patched = true
}

export const patch: Patch = {
  name: 'yamux window update per frame',
  package: '@chainsafe/libp2p-yamux',
  version: () => packageVersion('@chainsafe/libp2p-yamux', import.meta.resolve('@chainsafe/libp2p-yamux/stream')),
  // once installed, the library's own function is wrapped: it was checked before
  check: () => patched ? null : check(),
  install
}
