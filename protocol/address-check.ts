// Whether a string is a multiaddr an agent can dial or listen on, checked where it
// enters (flags, the config file, a join token) rather than where libp2p first
// parses it: there a bad one failed the agent's start with an error naming neither
// the address nor where it came from. A /p2p/ part must be a peer id, as the
// bootstrap and the dialer read it.
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'

/** what is wrong with `v` as a multiaddr (null: nothing) */
export function multiaddrProblem (v: string): string | null {
  let parts: Array<{ name: string, value?: string }>
  try {
    parts = multiaddr(v).getComponents()
  } catch (err) {
    return (err as Error).message
  }
  for (const p of parts) {
    if (p.name !== 'p2p' || p.value == null) continue
    try {
      peerIdFromString(p.value)
    } catch {
      return `"${p.value}" is not a peer id`
    }
  }
  return null
}
