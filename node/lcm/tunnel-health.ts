// Is a tunnel this node's links need down? Pure: from the WireGuard peers with their
// latest handshake times, the links with the node each end runs on, and the time now.
// A partial partition (this host and one peer's host cannot reach each other, while
// gossip still goes round through a third) leaves membership "alive" everywhere and
// the link rules in place, but nothing passes: only the handshake stops. The service
// (service.ts) reads `wg show IF dump` now and then and reports what this decides, as
// the health problem `lcm`/`tunnel-down` (health.ts) and on each link's view.

// WireGuard's timers (the whitepaper's section 6.1; the kernel module and wireguard-go
// use the same), in seconds
/** the initiator of a session starts a new handshake on its first send after its keypair is this old */
export const REKEY_AFTER_TIME = 120
/** both ends refuse a keypair this old: without a newer handshake nothing passes at all */
export const REJECT_AFTER_TIME = 180
/** a handshake not answered is sent again after this (plus up to 1/3 s of jitter) */
export const REKEY_TIMEOUT = 5

/**
 * The persistent keepalive the agents set on every peer (s). Short enough that a
 * tunnel which stops carrying anything shows within about half a minute
 * (`quietAfterS`: 32 s; with WireGuard's usual 25 s it took 62-82 s), at one 32-byte
 * packet per peer every 10 s when idle.
 */
export const KEEPALIVE_S = 10

/**
 * How long a needed tunnel may go without a handshake before it is taken for down (s).
 * On a healthy but idle tunnel both ends send a keepalive at least every `keepaliveS`
 * (the agents set a persistent keepalive, KEEPALIVE_S), so the session's initiator
 * starts a new handshake at the latest `keepaliveS` after its keypair turned
 * REKEY_AFTER_TIME old, and it completes a round trip later: 120 + 10 s and change. Each handshake
 * packet lost on the way costs one REKEY_TIMEOUT more; three in a row still leave it
 * under REJECT_AFTER_TIME. Past REJECT_AFTER_TIME both ends refuse the session's keys,
 * so a handshake older than that is not an idle tunnel but one that carries nothing:
 * the bound is the later of the two, 180 s with the agents' keepalive. It cannot flap
 * on a healthy tunnel (that renews 50 s before it), and a real outage shows within
 * 180 s of the last handshake plus one check. Without a keepalive an idle tunnel makes
 * no handshakes at all, and nothing can be told from their age: `null`.
 */
export function staleAfterS (keepaliveS: number): number | null {
  if (!(keepaliveS > 0)) return null
  return Math.max(REJECT_AFTER_TIME, REKEY_AFTER_TIME + keepaliveS + 3 * (REKEY_TIMEOUT + 1))
}

/**
 * How long a needed tunnel may receive nothing before it is taken for down (s): a live
 * peer sends at least a keepalive every `keepaliveS` (it counts what it sent, so a peer
 * that talks sends more), so two missed in a row, with slack for a handshake's retries,
 * is no idle tunnel (32 s with the agents' 10 s, where handshakes alone tell only after
 * 180 s: a tester's partial partition of 107 s was never reported). Null without a
 * keepalive.
 */
export function quietAfterS (keepaliveS: number): number | null {
  if (!(keepaliveS > 0)) return null
  return 2 * keepaliveS + 2 * (REKEY_TIMEOUT + 1)
}

export interface PeerHandshake {
  /** the node the peer belongs to */
  node: string
  /** that node's name (its advert's), null when unknown */
  name: string | null
  /** ms since the epoch of its latest completed handshake; 0 when never */
  latestHandshake: number
  /** ms since the epoch when this agent set the peer on its interface; null when unknown */
  addedAt: number | null
  /** ms since the epoch when this agent last saw the bytes received from it grow (or first looked); absent: not watched */
  rxChangedAt?: number | null
}

/** A link with the node each end runs on (null: nowhere yet). */
export interface PlacedLink {
  id: string
  from: { vm: string, terminal: string, node: string | null }
  to: { vm: string, terminal: string, node: string | null }
}

export interface TunnelDown {
  node: string
  name: string | null
  /** ISO time of its latest handshake; null when it never had one */
  latestHandshake: string | null
  /** seconds since then (or since the peer was added, when it never had one; or since anything came from it, when that says down first) */
  silentS: number
  /** ISO time it crossed the bound: since when it is a problem */
  since: string
  /** the ids of the links that need it, sorted */
  links: string[]
  /** what is wrong, for a link's view: "no WireGuard handshake for 244 s" */
  reason: string
  /** the whole of it, naming the node and the links, for the health problem and the log */
  message: string
}

/**
 * The tunnels that are down while links need them: a peer whose node runs one end of a
 * link whose other end runs here, and that has had no handshake for longer than
 * `staleAfterS(keepaliveS)`, or never had one that long after it was added. A peer no
 * link needs is not judged (an idle tunnel to a node with nothing of ours costs
 * nothing); one with neither a handshake nor a known time added is not judged either.
 * Sorted by node.
 */
export function tunnelsDown (self: string, peers: readonly PeerHandshake[], links: readonly PlacedLink[], now: number, keepaliveS: number): TunnelDown[] {
  const bound = staleAfterS(keepaliveS)
  const quietBound = quietAfterS(keepaliveS)
  if (bound == null || quietBound == null) return []
  const need = new Map<string, PlacedLink[]>()
  for (const l of links) {
    const other = l.from.node === self ? l.to.node : l.to.node === self ? l.from.node : null
    if (other == null || other === self) continue
    need.set(other, [...need.get(other) ?? [], l])
  }
  const out: TunnelDown[] = []
  for (const p of [...peers].sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : 0)) {
    const ls = need.get(p.node)
    if (ls == null) continue
    const never = p.latestHandshake <= 0
    const from = never ? p.addedAt : p.latestHandshake
    const quietS = p.rxChangedAt == null ? null : Math.floor((now - p.rxChangedAt) / 1000)
    const handshakeS = from == null ? null : Math.floor((now - from) / 1000)
    // the first of the two rules that says down: nothing received, or no handshake
    const byQuiet = quietS != null && quietS > quietBound
    const byHandshake = handshakeS != null && handshakeS > bound
    if (!byQuiet && !byHandshake) continue
    const silentS = byHandshake ? handshakeS! : quietS!
    // since the first of the bounds it crossed: the quiet one comes first, and the
    // reason turning to the handshake's later must not move the problem's start
    const sinceMs = Math.min(byHandshake ? from! + bound * 1000 : Infinity, byQuiet ? p.rxChangedAt! + quietBound * 1000 : Infinity)
    const sorted = [...ls].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    const who = p.name ?? p.node
    const reason = byHandshake
      ? (never ? `no WireGuard handshake since the peer was added ${silentS} s ago` : `no WireGuard handshake for ${silentS} s`)
      : `nothing received through the tunnel for ${silentS} s (a live peer sends at least every ${keepaliveS} s)`
    const linkText = sorted.map(l => `${l.id} (${l.from.vm}.${l.from.terminal} -> ${l.to.vm}.${l.to.terminal})`).join(', ')
    out.push({
      node: p.node,
      name: p.name,
      latestHandshake: never ? null : new Date(p.latestHandshake).toISOString(),
      silentS,
      since: new Date(sinceMs).toISOString(),
      links: sorted.map(l => l.id),
      reason,
      message: `tunnel to ${who} is down: ${reason}${byHandshake ? ` (a live one renews within ${bound} s)` : ''}; nothing passes on ${sorted.length === 1 ? 'link' : `${sorted.length} links`} ${linkText}; is ${who} reachable from this host on the underlay?`
    })
  }
  return out
}
