// Link rules, pure: from the declared connections, where each VM runs and its overlay
// address, compute one node's nftables ruleset and its WireGuard peers' allowed IPs.
//
// The ruleset filters the forward hook: VM traffic always crosses a node (VM
// interface -> node -> VM interface or WireGuard), so both ends of a connection
// check it. Exactly the declared flows pass (and the replies of a flow, which must
// belong to a tracked connection that the declared direction opened); every other
// packet from or to a VM is dropped and counted per (source, destination) in a
// dynamic set, AppLogic's breach detection.
//
// What is a VM's is decided by interface first, then by address. A VM interface is
// the node's end of a VM link (node/dvmm/host/net.ts: veth "vgp" + hash, tap "vgt" +
// hash), matched by name prefix, so a VM is confined from the moment its interface
// exists, before the LCM knows it. What comes in on one must carry a VM address as
// its source (not the VM's /30 link address, nor anything else) and what goes out on
// one a VM address as its destination; IPv6 on one is dropped (the overlay is IPv4
// only). The input hook drops what a VM opens towards the node itself (its link's
// host end, or any other address of the node: the agent, WireGuard, sshd): VMs talk
// over declared links only. The node may open connections to its VMs (root on the
// node is trusted), and their replies come back. Forwarded traffic with no VM
// interface and no VM address, IPv4 or IPv6, is none of this table's business.
//
// The flow rules match addresses, so a packet whose source is a VM address must
// come in on the interface that address is routed to (strict reverse path, nft's
// `fib saddr . iif`): a local VM's address lives behind its tap or veth (a /32 route,
// local-vm-net.ts), every other VM address behind WireGuard (the VM prefix route),
// whose allowed IPs bind each of those to the peer that hosts it. A forged source (a
// host on the underlay, or a local VM claiming a neighbour's address or any address
// outside the VM prefix) is dropped and counted in its own set, so its reason shows.
import { createHash } from 'node:crypto'

export type Protocol = 'tcp' | 'udp' | 'any'

/** `created`: that of the VM the link was made for (the document's `connections`; absent: from before it was recorded) */
export interface Terminal { vm: string, terminal: string, created?: number }

/** A declared connection, as the cluster document holds it. */
export interface Link {
  id: string
  from: Terminal
  to: Terminal
  protocol: Protocol
  /** null: every port of the protocol */
  port: number | null
}

/** Where a VM runs and the address it keeps wherever it runs. */
export interface VmPlace {
  vm: string
  /** IPv4 overlay address */
  address: string
  /** node id of the lease holder; null while it runs nowhere */
  node: string | null
  /** the terminals its spec declares (absent: a VM from before terminals were declared, which has whatever its links use) */
  inputs?: readonly string[]
  outputs?: readonly string[]
}

export interface NodeTunnel {
  node: string
  publicKey: string
  endpoint: string | null
  /** the node's own overlay address (of its WireGuard interface) */
  address: string
}

export interface RuleInput {
  /** the node this ruleset is for */
  node: string
  /** nft table name (per node: namespaces of one machine may share nothing, but names help reading) */
  table: string
  /** CIDR holding every VM address: traffic from or to it is VM traffic */
  vmPrefix: string
  vms: VmPlace[]
  links: Link[]
}

export interface AllowedFlow {
  link: string
  counter: string
  src: string
  dst: string
  protocol: Protocol
  port: number | null
}

export interface Ruleset {
  table: string
  /** `nft -f` input: one transaction replacing the table's rules (counters and drop set kept) */
  script: string
  flows: AllowedFlow[]
  /** links this node has no part in or cannot enforce yet, with why */
  skipped: Array<{ link: string, reason: string }>
  /** named counters the script declares (the apply step deletes others) */
  counters: string[]
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

export function isIpv4 (s: string): boolean {
  const m = IPV4.exec(s)
  return m != null && m.slice(1).every(o => Number(o) <= 255)
}

export function isIpv4Cidr (s: string): boolean {
  const [a, l] = s.split('/')
  return a != null && l != null && isIpv4(a) && /^\d{1,2}$/.test(l) && Number(l) <= 32
}

/** The dynamic sets counting drops per (source, destination), by why they were dropped. */
export const DROP_SETS = { undeclared: 'drops', spoofed: 'spoofs' } as const

/**
 * Name patterns of the node's ends of VM links (node/dvmm/host/net.ts `vethName`,
 * `tapName`). Nothing else vgrid makes starts so: the WireGuard interface is "vgw" +
 * 12 (wireguard-format.ts), test namespaces' links are eth0, p<N>, br0.
 */
export const VM_INTERFACES = ['vgp*', 'vgt*'] as const
/** a VM's interface on its node (tap or veth), by its name */
export const isVmInterface = (dev: string): boolean => VM_INTERFACES.some(p => dev.startsWith(p.replace(/\*$/, '')))

/** nft identifiers: letters, digits, underscore; a hash keeps them unique and short. */
export function counterName (name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 24)
  return `c_${safe}_${createHash('sha256').update(name).digest('hex').slice(0, 8)}`
}

/**
 * A flow's counter is named after the flow (protocol, addresses, port), not after a
 * link: links with the same flow carry the same packets and share it (the flow maps'
 * keys are unique), and adding or removing one of them leaves the others' counts
 * (a name taken from the first link's id would change, and the count go with it).
 * Addresses stay with their VMs wherever they run, so the name does too.
 */
export const flowCounter = (f: Pick<AllowedFlow, 'protocol' | 'src' | 'dst' | 'port'>): string =>
  counterName(`${f.protocol}_${f.src}_${f.dst}_${f.port ?? 'all'}`)

/** The table name for a node: one table per node (its own rules only). */
export function tableName (nodeId: string): string {
  return `vgrid_lcm_${createHash('sha256').update(nodeId).digest('hex').slice(0, 10)}`
}

/**
 * Which links a node enforces and how: a link whose source or destination VM runs
 * on `node`, both ends placed and addressed. A link with an end that runs nowhere is
 * skipped (with the reason): nothing passes until it runs.
 */
/** a link's skip reason that is this node's alone: the link may carry traffic elsewhere */
export const NEITHER_END_HERE = 'neither end runs on this node'

export function computeFlows (input: Omit<RuleInput, 'table'>): { flows: AllowedFlow[], skipped: Ruleset['skipped'] } {
  const byVm = new Map(input.vms.map(v => [v.vm, v]))
  const flows: AllowedFlow[] = []
  const skipped: Ruleset['skipped'] = []
  for (const l of [...input.links].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) {
    const s = byVm.get(l.from.vm)
    const d = byVm.get(l.to.vm)
    if (s == null || d == null) { skipped.push({ link: l.id, reason: `VM ${s == null ? l.from.vm : l.to.vm} has no overlay address` }); continue }
    // a link whose terminal its VM no longer declares (the VM removed and made again
    // under the same name with other terminals) lets nothing through
    if (s.outputs != null && !s.outputs.includes(l.from.terminal)) { skipped.push({ link: l.id, reason: `VM ${s.vm} has no output terminal "${l.from.terminal}"` }); continue }
    if (d.inputs != null && !d.inputs.includes(l.to.terminal)) { skipped.push({ link: l.id, reason: `VM ${d.vm} has no input terminal "${l.to.terminal}"` }); continue }
    // the real reason first: a node that holds neither end said only that (bb27)
    if (s.node == null || d.node == null) { skipped.push({ link: l.id, reason: `VM ${s.node == null ? s.vm : d.vm} runs nowhere` }); continue }
    if (s.node !== input.node && d.node !== input.node) { skipped.push({ link: l.id, reason: NEITHER_END_HERE }); continue }
    if (!isIpv4(s.address) || !isIpv4(d.address)) { skipped.push({ link: l.id, reason: 'an end has no IPv4 address' }); continue }
    if (l.port != null && (l.protocol === 'any' || !Number.isInteger(l.port) || l.port < 1 || l.port > 65535)) {
      skipped.push({ link: l.id, reason: `port ${l.port} needs protocol tcp or udp and 1-65535` })
      continue
    }
    const flow = { src: s.address, dst: d.address, protocol: l.protocol, port: l.port }
    flows.push({ link: l.id, counter: flowCounter(flow), ...flow })
  }
  return { flows, skipped }
}

/**
 * The flows as nft maps from a packet's addresses (and protocol and port) to its
 * link's named counter, so the forward chain has a fixed number of rules however
 * many links a node enforces: one hash lookup per map instead of one rule per link
 * (measured: rules in a list cost about 16 ns each per packet, 30 µs a packet at
 * 1,000 links). A lookup that finds nothing ends its rule, so a flow passes only by
 * its own element. Two links with the same addresses, protocol and port carry the
 * same packets and share one counter (flowCounter).
 */
const FLOW_MAPS = {
  /** tcp or udp to one port: src . dst . protocol . dport, and the replies: dst . src . protocol . sport */
  port: { type: 'ipv4_addr . ipv4_addr . inet_proto . inet_service', match: 'ip saddr . ip daddr . meta l4proto . th dport', reply: 'ip saddr . ip daddr . meta l4proto . th sport' },
  /** tcp or udp to any port */
  proto: { type: 'ipv4_addr . ipv4_addr . inet_proto', match: 'ip saddr . ip daddr . meta l4proto', reply: 'ip saddr . ip daddr . meta l4proto' },
  /** any protocol */
  any: { type: 'ipv4_addr . ipv4_addr', match: 'ip saddr . ip daddr', reply: 'ip saddr . ip daddr' }
} as const
type FlowKind = keyof typeof FLOW_MAPS
const FLOW_MAP_NAMES = [...Object.keys(FLOW_MAPS).flatMap(k => [`flows_${k}`, `replies_${k}`]), 'icmp_errors']
const kindOf = (f: AllowedFlow): FlowKind => f.protocol === 'any' ? 'any' : f.port == null ? 'proto' : 'port'

/** a flow's map key, one way or the other (`back`: the replies' key) */
function flowKey (f: AllowedFlow, back: boolean): string {
  const [a, b] = back ? [f.dst, f.src] : [f.src, f.dst]
  const kind = kindOf(f)
  return kind === 'any' ? `${a} . ${b}` : kind === 'proto' ? `${a} . ${b} . ${f.protocol}` : `${a} . ${b} . ${f.protocol} . ${String(f.port)}`
}

/** the maps' elements, each key once (the first flow's), as `add element` lines */
function mapElements (table: string, flows: AllowedFlow[]): string[] {
  const maps = new Map<string, Map<string, string>>()
  const put = (map: string, key: string, counter: string): void => {
    const m = maps.get(map) ?? new Map<string, string>()
    if (!m.has(key)) m.set(key, counter)
    maps.set(map, m)
  }
  for (const f of flows) {
    const kind = kindOf(f)
    put(`flows_${kind}`, flowKey(f, false), f.counter)
    put(`replies_${kind}`, flowKey(f, true), f.counter)
    // the ICMP errors of a flow (port unreachable, fragmentation needed) from its
    // destination only: another VM cannot send errors about connections not its own
    put('icmp_errors', `${f.dst} . ${f.src}`, f.counter)
  }
  return [...maps].map(([map, m]) => `add element ${table} ${map} { ${[...m].map(([k, c]) => `${k} : "${c}"`).join(', ')} }`)
}

/**
 * The node's ruleset as an `nft -f` script. Re-applying it replaces the rules in one
 * transaction and keeps the counters and the drop sets (declaring an existing named
 * object is a no-op), so counts survive recomputation.
 */
export function computeRuleset (input: RuleInput): Ruleset {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(input.table)) throw new Error(`bad nft table name ${JSON.stringify(input.table)}`)
  if (!isIpv4Cidr(input.vmPrefix)) throw new Error(`VM prefix ${JSON.stringify(input.vmPrefix)} is not an IPv4 CIDR`)
  const { flows, skipped } = computeFlows(input)
  const t = `inet ${input.table}`
  const counters = [...new Set(flows.map(f => f.counter))]
  const pair = '{ ip saddr . ip daddr }'
  const vmIf = `{ ${VM_INTERFACES.map(p => `"${p}"`).join(', ')} }`
  const vm = input.vmPrefix
  const chains = ['forward', 'input', 'output', 'spoofed', 'undeclared']
  const lines = [
    `table ${t} {`,
    `  set ${DROP_SETS.undeclared} { type ipv4_addr . ipv4_addr; size 65536; flags dynamic; counter; }`,
    `  set ${DROP_SETS.spoofed} { type ipv4_addr . ipv4_addr; size 65536; flags dynamic; counter; }`,
    ...counters.map(c => `  counter ${c} { }`),
    ...Object.entries(FLOW_MAPS).flatMap(([kind, m]) => [`  map flows_${kind} { type ${m.type} : counter; }`, `  map replies_${kind} { type ${m.type} : counter; }`]),
    `  map icmp_errors { type ${FLOW_MAPS.any.type} : counter; }`,
    '  chain spoofed { }',
    '  chain undeclared { }',
    '  chain forward { type filter hook forward priority 0; policy accept; }',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    ...chains.map(c => `flush chain ${t} ${c}`),
    ...FLOW_MAP_NAMES.map(m => `flush map ${t} ${m}`),
    `table ${t} {`,
    // each drop is a rule of its own: an update of a full set ends its rule unmatched.
    // An IPv6 packet matches no `ip` update and is dropped uncounted (the sets are IPv4).
    '  chain spoofed {',
    `    update @${DROP_SETS.spoofed} ${pair}`,
    '    drop',
    '  }',
    '  chain undeclared {',
    `    update @${DROP_SETS.undeclared} ${pair}`,
    // a tracked TCP connection that no link on this node carries any more (its link
    // removed, or an end no longer placed): reset, so each end fails at its next packet
    // instead of hanging until its own timeouts. New connections never get here
    // established: their first packet was dropped
    '    meta l4proto tcp ct state established reject with tcp reset',
    '    drop',
    '  }',
    '  chain forward {',
    // the host's own IPv6 forwarding: not VM traffic (IPv6 on a VM interface falls through to the drop)
    `    meta nfproto ipv6 iifname != ${vmIf} oifname != ${vmIf} accept`,
    // a VM sends from a VM address and receives at one, never at its link address or another
    `    iifname ${vmIf} ip saddr != ${vm} goto spoofed`,
    `    oifname ${vmIf} ip daddr != ${vm} goto undeclared`,
    // no VM interface and no VM address: none of our business
    `    ip saddr != ${vm} ip daddr != ${vm} accept`,
    // a VM source must come in where its address is routed (replies too)
    `    ip saddr ${vm} fib saddr . iif oif missing goto spoofed`,
    // ICMP errors about a VM's connections from routers and nodes on the way (not VMs)
    `    ip saddr != ${vm} meta l4proto icmp ct state related accept`,
    // replies of a tracked connection that the declared direction opened: first those the
    // tracker knows as replies, so a reply that also fits a link the other way (an `any`
    // or port-less one) counts for its own link; then, after the flows, any tracked one
    // (a connection the tracker first saw from the reply side, e.g. after a reboot)
    ...Object.entries(FLOW_MAPS).map(([kind, m]) => `    ct direction reply ct state established,related counter name ${m.reply} map @replies_${kind} accept`),
    ...Object.entries(FLOW_MAPS).map(([kind, m]) => `    counter name ${m.match} map @flows_${kind} accept`),
    ...Object.entries(FLOW_MAPS).map(([kind, m]) => `    ct state established,related counter name ${m.reply} map @replies_${kind} accept`),
    '    meta l4proto icmp ct state related counter name ip saddr . ip daddr map @icmp_errors accept',
    '    goto undeclared',
    '  }',
    // the node itself: a VM may answer it, never open a connection to it
    '  chain input {',
    `    iifname != ${vmIf} accept`,
    // a reply must come from where its source is routed: a VM cannot answer in another's
    // name, or as a host beyond the node, into the node's own connections
    '    fib saddr . iif oif missing goto spoofed',
    '    ct state established,related accept',
    '    goto undeclared',
    '  }',
    // the node's own users: root (the agent, the operator) reaches its VMs, as it may
    // reach anything of the node; a socket of another user may not (bb48: any local user
    // reached every port of every VM of the node). A packet of no socket (the kernel's
    // own replies and errors) has no owner, and passes
    '  chain output {',
    `    oifname ${vmIf} meta skuid != 0 goto undeclared`,
    // nor in a VM's name towards another node's VMs (a freebind socket needs no privilege: rv47)
    `    ip saddr ${vm} meta skuid != 0 goto spoofed`,
    '  }',
    '}',
    ...mapElements(t, flows)
  ]
  return { table: input.table, script: lines.join('\n') + '\n', flows, skipped, counters }
}

/**
 * Allowed IPs per WireGuard peer: each remote node's own address plus the address of
 * every VM it hosts, so the kernel routes a VM's address to the agent that runs it.
 * A VM that moves changes only which peer lists it.
 */
export function peerAllowedIps (self: string, nodes: NodeTunnel[], vms: VmPlace[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const n of nodes) {
    if (n.node === self) continue
    const hosted = vms.filter(v => v.node === n.node && isIpv4(v.address)).map(v => `${v.address}/32`).sort()
    out.set(n.node, [`${n.address}/32`, ...hosted])
  }
  return out
}
