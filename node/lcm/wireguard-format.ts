// What `wg` reads and writes, as pure functions: key and endpoint syntax, the
// interface name for a node id, the config text `wg addconf` takes and the parse of
// `wg show IF dump`. Apart from wireguard.ts (which runs `wg`, `ip` and wireguard-go)
// so the LCM's plan can check adverts, and tests can check the formats, without
// touching a tunnel.
import { createHash } from 'node:crypto'

export class WireguardError extends Error {
  override name = 'WireguardError'
}

export interface PeerConfig {
  publicKey: string
  /** host:port or [v6]:port; null leaves the peer waiting for the other side to call */
  endpoint: string | null
  allowedIps: string[]
  /** seconds; 0 or undefined turns it off */
  persistentKeepalive?: number
}

export interface PeerState {
  publicKey: string
  endpoint: string | null
  allowedIps: string[]
  /** ms since the epoch of the last completed handshake; 0 when never */
  latestHandshake: number
  rxBytes: number
  txBytes: number
  persistentKeepalive: number
}

export interface InterfaceState {
  name: string
  publicKey: string | null
  listenPort: number
  peers: PeerState[]
}

const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/

/** A WireGuard key: base64 of 32 bytes (the last character carries 4 bits and padding). */
export function isValidKey (s: unknown): s is string {
  return typeof s === 'string' && KEY_RE.test(s)
}

/** host:port with an IPv4 address or a bracketed IPv6 one, port 1-65535. */
export function isValidEndpoint (s: unknown): s is string {
  if (typeof s !== 'string') return false
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9a-fA-F:.]+)\]):(\d{1,5})$/.exec(s)
  if (m == null) return false
  const port = Number(m[3])
  if (port < 1 || port > 65535) return false
  if (m[1] != null) return m[1].split('.').every(o => Number(o) <= 255)
  return m[2]!.includes(':')
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** The first `n` base32 characters of the node id's SHA-256. */
function hash32 (nodeId: string, n: number): string {
  const h = createHash('sha256').update(nodeId).digest()
  let bits = 0
  let acc = 0
  let out = ''
  for (const b of h) {
    acc = (acc << 8) | b
    bits += 8
    while (bits >= 5 && out.length < n) {
      out += BASE32[(acc >>> (bits - 5)) & 31]
      bits -= 5
    }
    acc &= 0xff
    if (out.length >= n) break
  }
  return out
}

/**
 * An interface name unique per machine for a node id: "vgw" + 12 base32 characters of
 * its SHA-256 (15 chars, Linux's limit). A hash, because libp2p ids share a long
 * common prefix ("12D3KooW..."); 60 bits make a collision between nodes on one
 * machine negligible. "vgw", because the link rules (rules.ts) take every interface
 * named "vgp*" or "vgt*" for a VM's.
 */
export function interfaceName (nodeId: string): string {
  return `vgw${hash32(nodeId, 12)}`
}

/**
 * The name earlier versions gave the same node's interface ("vg" + 13 base32 of the
 * same hash), as a test on a name: the first 12 of those 13 are the current name's
 * last 12, so the old one is known from the new one up to its last character. One
 * left by an agent killed before an upgrade holds the node's address and listen port.
 */
export function isLegacyNameOf (candidate: string, name: string): boolean {
  const m = /^vgw([a-z2-7]{12})$/.exec(name)
  return m != null && candidate !== name && new RegExp(`^vg${m[1]}[a-z2-7]$`).test(candidate)
}

/** Parses `wg show IF dump`: one interface line, then one line per peer. */
export function parseDump (text: string, name: string): InterfaceState {
  const lines = text.split('\n').filter(l => l.trim() !== '')
  if (lines.length === 0) throw new WireguardError(`wg show ${name} dump: empty output`)
  const head = lines[0]!.split('\t')
  if (head.length < 4) throw new WireguardError(`wg show ${name} dump: interface line has ${head.length} fields, expected 4`)
  const none = (s: string | undefined): string | null => s == null || s === '(none)' || s === '' ? null : s
  const num = (s: string | undefined, what: string): number => {
    const n = Number(s)
    if (!Number.isSafeInteger(n) || n < 0) throw new WireguardError(`wg show ${name} dump: ${what} is not a count: ${JSON.stringify(s)}`)
    return n
  }
  const peers = lines.slice(1).map(l => {
    const f = l.split('\t')
    if (f.length < 8) throw new WireguardError(`wg show ${name} dump: peer line has ${f.length} fields, expected 8`)
    const allowed = none(f[3])
    const keepalive = f[7] === 'off' ? 0 : num(f[7], 'persistent keepalive')
    return {
      publicKey: f[0]!,
      endpoint: none(f[2]),
      allowedIps: allowed == null ? [] : allowed.split(','),
      latestHandshake: num(f[4], 'latest handshake') * 1000,
      rxBytes: num(f[5], 'rx bytes'),
      txBytes: num(f[6], 'tx bytes'),
      persistentKeepalive: keepalive
    }
  })
  return { name, publicKey: none(head[1]), listenPort: num(head[2], 'listen port'), peers }
}

/** The config text `wg addconf` reads (wg(8) format). */
export function renderConfig (o: { privateKey?: string, listenPort?: number, peers?: PeerConfig[] }): string {
  const lines = ['[Interface]']
  if (o.privateKey != null) lines.push(`PrivateKey = ${o.privateKey}`)
  if (o.listenPort != null) lines.push(`ListenPort = ${o.listenPort}`)
  for (const p of o.peers ?? []) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey}`)
    if (p.endpoint != null) lines.push(`Endpoint = ${p.endpoint}`)
    if (p.allowedIps.length > 0) lines.push(`AllowedIPs = ${p.allowedIps.join(', ')}`)
    if ((p.persistentKeepalive ?? 0) > 0) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`)
  }
  return lines.join('\n') + '\n'
}
