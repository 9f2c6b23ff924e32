// Resets (rather than closes) every connection to a peer. A close is graceful: the
// socket keeps sending what its queue holds, and a queue that filled while the network
// was cut goes out once it heals, minutes later if need be, whatever was sent since on a
// new connection. A reset (libp2p's abort: a TCP RST with the linger time zero) drops the
// queue. For a peer given up on (out of reach, dead and silent), whose requests were
// failed and may be made again elsewhere or later, late delivery would be a stale write
// landing after newer ones.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'

export function resetConnections (host: Pick<Libp2p, 'getConnections'>, peer: string, why: string): number {
  const conns = host.getConnections(peerIdFromString(peer))
  for (const c of conns) c.abort(new Error(why))
  return conns.length
}
