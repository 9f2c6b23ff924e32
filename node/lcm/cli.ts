// CLI commands of the LCM: `vgrid link create|ls|rm` (declared connections) and
// `vgrid net` (this agent's WireGuard interface and peers). Clients of /v1/links and
// /v1/net; main.ts wires them in.
import { parse, API_OPTION, JSON_OPTION } from '../cli/args.ts'
import { ApiClient, CliError } from '../cli/client.ts'
import { bytes, shortId, table } from '../cli/format.ts'
import type { LinkView } from './links.ts'
import type { NetView } from './routes.ts'

const CREATE = 'vgrid link create FROM_VM.OUTPUT TO_VM.INPUT --port N [--protocol tcp|udp (default tcp)] [--json] [--api HOST:PORT]'
const LS = 'vgrid link ls [--json] [--api HOST:PORT]'
const RM = 'vgrid link rm LINK_ID [--json] [--api HOST:PORT]'
const USAGE = `usage: ${CREATE}\n       ${LS}\n       ${RM}`

const end = (e: LinkView['from']): string => `${e.vm}.${e.terminal}${e.node == null ? '' : `@${e.nodeName ?? shortId(e.node)}`}${e.down != null ? ` (${e.down})` : ''}`

/** the TUNNEL column: the peer node that carries it from here, and whether it is down */
function tunnelCell (l: LinkView): string {
  // a skipped link carries nothing, whatever its tunnel (bb27: the link that lost a
  // race for its output showed its tunnel, as if it worked, on its ends' nodes)
  if (l.skipped != null) return l.skipped
  if (l.tunnel != null) return `${l.tunnel.name ?? shortId(l.tunnel.node)}${l.tunnel.down == null ? '' : ` DOWN: ${l.tunnel.down}`}`
  // neither end here: the FROM end's node says whether its tunnel for the link is down
  if (l.path === 'elsewhere' && l.counts?.tunnelDown != null) return `${l.to.nodeName ?? shortId(l.to.node ?? '')} DOWN on ${l.counts.name ?? shortId(l.counts.node ?? '')}: ${l.counts.tunnelDown}`
  if (l.noTunnel != null) return `${l.noTunnel.name ?? shortId(l.noTunnel.node)} DOWN: ${l.noTunnel.why}`
  return l.path === 'local' ? 'local' : '-'
}

/** One link as `vm show` lists it under its VM: its ends, and whether it carries traffic as this node sees it. */
export function linkLine (l: LinkView): string {
  const cell = tunnelCell(l)
  const how = l.skipped != null ? `carries nothing: ${l.skipped}` : cell === 'local' ? 'both ends on one node' : cell === '-' ? null : `tunnel to ${cell}`
  return `${l.id} ${end(l.from)} -> ${end(l.to)} ${l.protocol} ${l.port == null ? 'any port' : `port ${l.port}`}${how == null ? '' : `; ${how}`}`
}

export function linkRows (links: LinkView[]): string {
  // counts not known (their node not asked, or silent; an agent before link-counts.ts sent none) are not zero traffic
  const known = (l: LinkView): boolean => l.counts === undefined || (l.counts.node != null && l.counts.error == null)
  const rows = table(['ID', 'FROM', 'TO', 'PROTO', 'PORT', 'TUNNEL', 'PACKETS', 'DROPS'], links.map(l => [
    l.id, end(l.from), end(l.to), l.protocol, l.port == null ? 'any' : String(l.port),
    tunnelCell(l), known(l) ? String(l.packets) : '-', known(l) ? String(l.drops) : '-'
  ]))
  // where the counts come from, and that PACKETS counts what the rules passed, also into
  // a tunnel that is down (a tester read a rising count as traffic flowing)
  const down = links.some(l => l.tunnel?.down != null || l.noTunnel != null || (l.path === 'elsewhere' && l.counts?.tunnelDown != null))
  const unknown = links.filter(l => l.counts?.error != null)
  return [rows,
    // as this node sees it (bb32: the column differed from node to node, unexplained)
    'TUNNEL is as this node carries it: the node its WireGuard tunnel takes it to, local (both ends here), or - (neither end here)',
    `PACKETS and DROPS are counted on the node the FROM end runs on; PACKETS are those its rules let through${down ? ', also into a tunnel that is DOWN, where they are lost' : ''}`,
    ...unknown.map(l => `${l.id}: counts not known: ${l.counts!.error!}`)].join('\n')
}

export async function link (argv: string[]): Promise<void> {
  const [sub, ...rest] = argv
  if (sub === 'create') return await create(rest)
  if (sub === 'ls' || sub === 'list') return await ls(rest)
  if (sub === 'rm' || sub === 'remove') return await rm(rest)
  if (sub == null) throw new CliError(`vgrid link: which subcommand?\n${USAGE}`, 2)
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(USAGE + '\n')
    return
  }
  throw new CliError(`unknown subcommand "link ${sub}"\n${USAGE}`, 2)
}

async function create (argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { api: { type: 'string' }, json: { type: 'boolean' }, protocol: { type: 'string' }, port: { type: 'string' } }, CREATE, 2)
  const [from, to] = positionals
  if (from == null || to == null) throw new CliError(`give the output and the input terminal\nusage: ${CREATE}`, 2)
  // decimal digits only: Number() would take 0x50 for 80, and " 80 " or 8e1 too
  const port = v.port != null && /^\d{1,5}$/.test(v.port as string) ? Number(v.port) : NaN
  if (v.port == null) throw new CliError(`--port is missing: the port the link carries, on the input's VM\nusage: ${CREATE}`, 2)
  if (!Number.isInteger(port)) throw new CliError(`--port must be a number (1-65535), not "${String(v.port)}"\nusage: ${CREATE}`, 2)
  const made = await new ApiClient(v.api as string | undefined).request<LinkView>('POST', '/v1/links', { from, to, protocol: v.protocol ?? 'tcp', port })
  process.stdout.write(v.json === true ? JSON.stringify(made, null, 2) + '\n' : `${made.id}\n`)
}

async function ls (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, LS)
  const r = await new ApiClient(v.api as string | undefined).request<{ links: LinkView[] }>('GET', '/v1/links')
  process.stdout.write(v.json === true ? JSON.stringify(r, null, 2) + '\n' : (r.links.length === 0 ? 'no links\n' : linkRows(r.links) + '\n'))
}

async function rm (argv: string[]): Promise<void> {
  const { values: v, positionals } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, RM, 1)
  const [id] = positionals
  if (id == null) throw new CliError(`give a link id (see vgrid link ls)\nusage: ${RM}`, 2)
  const r = await new ApiClient(v.api as string | undefined).request<{ removed: string, notApplied?: Array<{ node: string, name: string | null, state: string }> }>('DELETE', `/v1/links/${encodeURIComponent(id)}`)
  if (v.json === true) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n')
    return
  }
  const later = (r.notApplied ?? []).map(n => `${n.name ?? shortId(n.node)}, where an end runs, is ${n.state}: the rules there pass the link's traffic until its agent runs again and takes the removal in`)
  process.stdout.write([`removed ${r.removed}`, ...later].join('\n') + '\n')
}

/** The text `vgrid net` prints: interface, then one row per peer, then drops. */
export function formatNet (n: NetView, now = Date.now()): string {
  const s = n.status
  const head = s.ok
    ? `${s.interface} (${s.backend ?? '?'})  address ${s.address ?? '-'}  endpoint ${s.endpoint ?? '-'}  key ${s.publicKey ?? '-'}`
    : `${s.interface}: WireGuard is not running: ${s.error ?? 'unknown'}`
  const ago = (iso: string | null): string => iso == null ? 'never' : `${Math.max(0, Math.round((now - Date.parse(iso)) / 1000))} s ago`
  const peers = n.peers.length === 0
    ? 'no peers'
    : table(['PEER', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'ALLOWED IPS'], n.peers.map(p => [
      p.name ?? (p.node == null ? shortId(p.publicKey) : shortId(p.node)), p.endpoint ?? '-', ago(p.latestHandshake), bytes(p.rxBytes), bytes(p.txBytes), p.allowedIps.join(',')
    ]))
  // the source of a forged packet is the address it carried, not who sent it: said so.
  // A VM's own link address (its end of the /30 to this node) is the same few addresses
  // on every node: named by the VM, which did send it
  const linked = (d: typeof n.drops[number]): boolean => d.srcVm == null && d.srcLink != null
  const from = (d: typeof n.drops[number]): string => {
    if (linked(d)) return `${d.srcLink!}, from its link address ${d.src}`
    // a VM's name reads as a name ("web's address"); a bare address as itself (bb27 read "100.1.2.3's address")
    const forged = (d.spoofed ?? 0) >= d.packets && d.packets > 0
    if (!forged) return d.srcVm ?? d.src
    return d.srcVm != null ? `${d.srcVm}'s address, forged` : `${d.src}, forged`
  }
  const drops = n.drops.length === 0 ? [] : ['', table(['DROPPED FROM', 'TO', 'PACKETS', 'FORGED'], n.drops.map(d => [from(d), d.dstVm ?? d.dst, String(d.packets), String(d.spoofed ?? 0)])),
    ...n.drops.some(d => (d.spoofed ?? 0) > 0 && !linked(d)) ? ['(FORGED: packets that carried that source address but came in where it is not routed: sent by another VM or host, which the count cannot name)'] : [],
    ...n.drops.some(linked) ? ['(from its link address: the VM sent from the address of its link to this node, not from its overlay address; VMs reach others only from their overlay address, over declared links)'] : []]
  const unapplied = s.applyError == null ? [] : [`connections not applied${s.applyErrorSince != null ? ` for ${ago(s.applyErrorSince).replace(/ ago$/, '')}` : ''} (trying again): ${s.applyError}`]
  const conflict = s.routeConflict == null ? [] : [`route conflict: ${s.routeConflict}`]
  const tunnels = (s.tunnelsDown ?? []).map(d => d.message)
  return [head, ...unapplied, ...conflict, ...tunnels, `overlay ${s.prefix.v4} (VMs ${s.prefix.vmV4}), ${s.prefix.v6}; rules: table ${n.rules.table}, ${n.rules.flows} flows`, '', peers, ...drops].join('\n')
}

export async function net (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { ...API_OPTION, ...JSON_OPTION }, 'vgrid net [--json] [--api HOST:PORT]')
  const r = await new ApiClient(v.api as string | undefined).request<NetView>('GET', '/v1/net')
  process.stdout.write(v.json === true ? JSON.stringify(r, null, 2) + '\n' : formatNet(r) + '\n')
}
