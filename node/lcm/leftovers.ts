// What an earlier agent on this host left behind, as pure functions over what `ip`,
// `nft` and /proc/net/unix print. An agent SIGKILLed and replaced by one with a new
// identity (its data dir moved aside) leaves its WireGuard interface (wireguard-go
// runs on by design: it is a process of its own), holding the listen port and routes
// in the overlay range, and its nftables table, whose drop set goes on dropping link
// traffic. Only one agent with the overlay runs per network namespace (agents sharing
// one run with --no-overlay), so at overlay start whatever of this kind is not the
// agent's own is a predecessor's, and is removed (wireguard.ts, nft.ts, service.ts).
import { isVmInterface } from './rules.ts'

/** one entry of `ip -j -d link show` (the fields read here) */
export interface LinkEntry {
  ifname?: string
  linkinfo?: { info_kind?: string, info_data?: { type?: string } }
}

/** an LCM interface name, this version's ("vgw" + 12) or an earlier one's ("vg" + 13) */
const LCM_IF_RE = /^vg[a-z2-7]{13}$/

/** the interface names of LCM control sockets in wireguard-go's run dir, other than `own`'s (pure) */
export function lcmSocketNames (files: readonly string[], own: string): string[] {
  return files.flatMap(f => {
    const m = /^(.+)\.sock$/.exec(f)
    return m != null && m[1] !== own && LCM_IF_RE.test(m[1]!) && !isVmInterface(m[1]!) ? [m[1]!] : []
  })
}

/**
 * The LCM WireGuard interfaces in `links` other than `own`: a name an LCM gives, of the
 * kernel's wireguard kind or wireguard-go's tun (a tap is a VM's: `vgp*`/`vgt*` are
 * left out by name too, as they fit the pattern).
 */
export function leftoverInterfaces (links: readonly LinkEntry[], own: string): string[] {
  return links.flatMap(l => {
    const name = l.ifname
    if (name == null || name === own || !LCM_IF_RE.test(name) || isVmInterface(name)) return []
    const kind = l.linkinfo?.info_kind
    const wg = kind === 'wireguard' || (kind === 'tun' && l.linkinfo?.info_data?.type === 'tun')
    return wg ? [name] : []
  })
}

/** an LCM table name (rules.ts tableName) */
const LCM_TABLE_RE = /^vgrid_lcm_[0-9a-f]{10}$/

/** The LCM tables in `nft -j list tables` other than `own` (inet family only, as tableName's are). */
export function foreignTables (nftJson: string, own: string): string[] {
  let doc: unknown
  try {
    doc = JSON.parse(nftJson)
  } catch (err) {
    throw new Error(`nft -j list tables gave no JSON: ${(err as Error).message}`)
  }
  const items = (doc as { nftables?: unknown }).nftables
  if (!Array.isArray(items)) throw new Error('nft -j list tables: no "nftables" array')
  return items.flatMap(it => {
    const t = (it as { table?: { family?: unknown, name?: unknown } }).table
    return t?.family === 'inet' && typeof t.name === 'string' && t.name !== own && LCM_TABLE_RE.test(t.name) ? [t.name] : []
  })
}

/**
 * The inodes of the listening unix sockets for wireguard-go's control socket of
 * `ifname`, from /proc/net/unix ("Num RefCount Protocol Flags Type St Inode Path";
 * Flags 00010000 is a listener). The path is /run/wireguard/IF.sock, or
 * /var/run/wireguard/IF.sock as wireguard-go names it.
 */
export function listenerInodes (procNetUnix: string, ifname: string): number[] {
  const suffix = `/wireguard/${ifname}.sock`
  return listeningUnixInodes(procNetUnix, path => path.endsWith(suffix))
}

/** the inodes of the listening unix sockets in a /proc/net/unix text whose path (`@name` for an abstract one) `matches` (pure) */
export function listeningUnixInodes (procNetUnix: string, matches: (path: string) => boolean): number[] {
  return procNetUnix.split('\n').slice(1).flatMap(line => {
    const f = line.trim().split(/\s+/)
    if (f.length < 8) return []
    const flags = parseInt(f[3]!, 16)
    const inode = Number(f[6])
    return matches(f.slice(7).join(' ')) && (flags & 0x10000) !== 0 && Number.isSafeInteger(inode) && inode > 0 ? [inode] : []
  })
}
