// A fix for @chainsafe/libp2p-yamux: its streams answer every data frame they receive
// with a window update, so every heartbeat and every gossip message costs two frames,
// each one encrypted by Noise and by the pnet cipher. The yamux spec leaves the timing
// to the receiver; go-yamux and rust-yamux send an update once half the window has
// been used, and so does this patch. A sender still has at least half a window
// (128 KiB or more) of credit whenever it waits for an update, so nothing stalls.
// Updates that carry flags (SYN/ACK on a new stream) are never held back.
import { YamuxStream } from '@chainsafe/libp2p-yamux/stream'

interface WindowState {
  state: number
  recvWindow: number
  recvWindowCapacity: number
}

// StreamState.Established in the library (not exported from its package entry)
const ESTABLISHED = 3

let patched = false

/** Whether a window update is worth a frame now: flags to send, or half the window used. */
export function windowUpdateDue (s: WindowState): boolean {
  if (s.state !== ESTABLISHED) return true
  return s.recvWindow - s.recvWindowCapacity >= s.recvWindow / 2
}

export function patchYamuxWindowUpdates (): void {
  if (patched) return
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
  const send = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (windowUpdateDue(this)) send.call(this)
  }
  patched = true
}

patchYamuxWindowUpdates()
