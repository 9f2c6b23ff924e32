// Who serves a TCP connection the CLI made, when the server is on this machine (from
// /proc/net/tcp and tcp6, which every user may read). The API's port is unprivileged:
// while the agent is down any local user may listen there, show the CLI a grid of its
// own making and take the API token the CLI presents (bb48). The agent runs as root, so
// the CLI sends nothing over a connection whose server side is another user's socket.
//
// The connection itself is judged, once made and before anything is written on it
// (rv48): a look at the listeners before connecting took a user's IPv6-only wildcard
// listener beside the agent's 127.0.0.1 for the agent's (every request refused), missed
// one bound between the look and the connect, and judged loopback names only (not the
// node's own LAN address). The server side of a connection is its accepted socket,
// which carries the listener's owner; it is found by the connection's two ends swapped.
import { readFileSync } from 'node:fs'
import { isIPv4, isIPv6 } from 'node:net'

/** a socket of /proc/net/tcp*: its two ends as the kernel writes them (hex), state and owner */
export interface ProcSocket { local: string, remote: string, state: string, uid: number }

/** the sockets in a /proc/net/tcp or tcp6 text (pure) */
export function parseSockets (text: string): ProcSocket[] {
  const out: ProcSocket[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (f.length < 8) continue
    const uid = Number(f[7])
    if (f[1] == null || f[2] == null || f[3] == null || !Number.isSafeInteger(uid)) continue
    out.push({ local: f[1], remote: f[2], state: f[3], uid })
  }
  return out
}

/** an IPv4 address as /proc/net/tcp writes it: its four bytes in host order (little-endian here) */
const hex4 = (ip: string): string => ip.split('.').map(b => Number(b).toString(16).padStart(2, '0').toUpperCase()).reverse().join('')

/** an IPv6 address's 16 bytes (pure; `::`, and a dotted IPv4 tail, as Node writes them) */
function bytes6 (ip: string): number[] {
  let text = ip
  const tail: number[] = []
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted != null) {
    tail.push(...dotted[1]!.split('.').map(Number))
    text = text.slice(0, -dotted[1]!.length) + '0:0'
  }
  const [head, rest] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined]
  const words = (s: string): number[] => s === '' ? [] : s.split(':').map(w => parseInt(w, 16))
  const h = words(head)
  const r = rest == null ? [] : words(rest)
  const all = [...h, ...Array(8 - h.length - r.length).fill(0) as number[], ...r]
  const out = all.flatMap(w => [w >> 8, w & 0xff])
  if (tail.length === 4) out.splice(12, 4, ...tail)
  return out
}

/** an IPv6 address as /proc/net/tcp6 writes it: four 32-bit words, each in host order */
const hex6 = (ip: string): string => {
  const b = bytes6(ip)
  let s = ''
  for (let w = 0; w < 16; w += 4) s += b.slice(w, w + 4).reverse().map(x => x.toString(16).padStart(2, '0').toUpperCase()).join('')
  return s
}

/** the forms an address may take in /proc/net/tcp and tcp6 (an IPv4 one as itself, or mapped into IPv6) */
function forms (ip: string): { v4?: string, v6?: string } {
  if (isIPv4(ip)) return { v4: hex4(ip), v6: hex6(`::ffff:${ip}`) }
  if (isIPv6(ip)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
    return mapped != null ? { v4: hex4(mapped[1]!), v6: hex6(ip) } : { v6: hex6(ip) }
  }
  return {}
}

const portHex = (port: number): string => port.toString(16).padStart(4, '0').toUpperCase()

/**
 * The owner of the server side of the connection from `client` to `server` (the two
 * ends as the client's socket says them), or undefined when no socket here has those
 * ends (a server on another machine), or null when no table could be read. A server side in
 * TIME_WAIT (uid 0 there) has closed: nothing sent can reach anyone.
 */
export function serverSideUid (client: { address: string, port: number }, server: { address: string, port: number }, read: (file: string) => string = f => readFileSync(f, 'utf8')): number | undefined | null {
  const c = forms(client.address)
  const s = forms(server.address)
  let readAny = false
  for (const [file, key] of [['/proc/net/tcp', 'v4'], ['/proc/net/tcp6', 'v6']] as const) {
    const local = s[key]
    const remote = c[key]
    if (local == null || remote == null) continue
    let text: string
    try { text = read(file) } catch { continue }
    readAny = true
    const found = parseSockets(text).find(x => x.local === `${local}:${portHex(server.port)}` && x.remote === `${remote}:${portHex(client.port)}`)
    if (found != null) return found.uid
  }
  // null: no table could be read (a /proc that hides them), so nothing can be told (rv50)
  return readAny ? undefined : null
}
