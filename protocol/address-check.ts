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

/**
 * what is wrong with `v` as an address to listen on (null: nothing): a multiaddr with
 * an IP address and a TCP port, or a /memory/ one (tests). "" or "/ip4/10.0.0.2" alone
 * passed as multiaddrs and failed the start inside libp2p, with advice about its
 * transport manager that named neither the address nor --listen.
 */
export function listenAddressProblem (v: string): string | null {
  const bad = multiaddrProblem(v)
  if (bad != null) return bad
  const names = multiaddr(v).getComponents().map(p => p.name)
  if (names[0] === 'memory') return null
  if ((names[0] === 'ip4' || names[0] === 'ip6') && names[1] === 'tcp' && names.length === 2) return null
  return 'an agent listens on an IP address and a TCP port, e.g. /ip4/0.0.0.0/tcp/7400'
}
