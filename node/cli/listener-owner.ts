// Who listens on a loopback TCP port (from /proc/net/tcp and tcp6, which every user may
// read). The API's port is unprivileged: while the agent is down any local user may
// listen there, show the CLI a grid of its own making and take the API token the CLI
// presents (bb48). The agent runs as root, so the CLI talks over loopback only to a
// listener of root's.
import { readFileSync } from 'node:fs'
import { isIPv4 } from 'node:net'

/** a listening socket of /proc/net/tcp*: its address as the kernel writes it (hex), port and owner */
export interface Listener { address: string, port: number, uid: number }

/** the listening sockets in a /proc/net/tcp or tcp6 text (pure) */
export function parseListeners (text: string): Listener[] {
  const out: Listener[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode; 0A is LISTEN
    if (f.length < 8 || f[3] !== '0A') continue
    const [address, port] = f[1]!.split(':')
    const uid = Number(f[7])
    if (address == null || port == null || !Number.isSafeInteger(uid)) continue
    out.push({ address, port: parseInt(port, 16), uid })
  }
  return out
}

/** an IPv4 address as /proc/net/tcp writes it (its four bytes in host order, little-endian here) */
const hex4 = (ip: string): string => ip.split('.').map(b => Number(b).toString(16).padStart(2, '0').toUpperCase()).reverse().join('')

const V6_ANY = '00000000000000000000000000000000'
const V6_LOOPBACK = '00000000000000000000000001000000'

/**
 * The owners of what listens on `host`:`port` here (each exact or wildcard address that
 * takes a connection to it; `localhost` is 127.0.0.1 and ::1, either of which a connect
 * may take: rv47), or [] when none is found (an address not loopback, /proc not readable).
 */
export function listenerUids (host: string, port: number, read: (file: string) => string = f => readFileSync(f, 'utf8')): number[] {
  const v4 = host === 'localhost' || (isIPv4(host) && host.startsWith('127.'))
  const v6 = host === 'localhost' || host === '::1'
  if (!v4 && !v6) return []
  const ip4 = hex4(host === 'localhost' ? '127.0.0.1' : host)
  // an IPv6 wildcard listener takes IPv4 too, as a mapped address
  const wanted: Array<[string, string[]]> = [
    ...v4 ? [['/proc/net/tcp', [ip4, '00000000']] as [string, string[]]] : [],
    ['/proc/net/tcp6', [V6_ANY, ...v6 ? [V6_LOOPBACK] : [], ...v4 ? [`0000000000000000FFFF0000${ip4}`] : []]]
  ]
  const uids: number[] = []
  for (const [file, addresses] of wanted) {
    let text: string
    try { text = read(file) } catch { continue }
    for (const l of parseListeners(text)) if (l.port === port && addresses.includes(l.address)) uids.push(l.uid)
  }
  return uids
}
