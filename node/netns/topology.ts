// A switched LAN on one machine: a "switch" namespace holding a bridge, and hosts,
// each a namespace with one veth (eth0) plugged into that bridge, a /24 address
// and loopback up. It can cut a host off (nftables rules, or its link down), heal
// it, and move it to another address. Every namespace it makes is recorded the
// moment it exists, so destroy() removes exactly what was made, also after a
// half-finished create.
import {
  addAddress, connectToBridge, createBridge, createNamespace, deleteNamespace, deleteNamespaceSync,
  ensureMulticastRoute, firewallCut, firewallHeal, pickSubnet, replaceAddress, setLink, NetnsError
} from './netns.ts'

export const HOST_IF = 'eth0'
const BRIDGE = 'br0'

export interface NetHost {
  readonly name: string
  readonly ns: string
  readonly index: number
  /** current IPv4 address (changes with changeAddress) */
  address: string
  /** how it is cut off right now, if it is */
  cut?: { how: 'firewall', peers: string[] } | { how: 'link' }
}

export interface TopologyOptions {
  /** namespace name prefix, unique to this run, e.g. "vgt-1234-a1"; names are PREFIX-sw, PREFIX-NAME */
  prefix: string
  /** spreads parallel runs over subnets */
  seed?: number
}

export class Topology {
  readonly prefix: string
  readonly switchNs: string
  /** "A.B.C" of the /24 the hosts live in */
  subnet = ''
  readonly hosts = new Map<string, NetHost>()
  /** namespaces made, in creation order */
  readonly made: string[] = []
  private nextIndex = 1
  private nextMoved = 100
  private destroyed = false

  private constructor (opts: TopologyOptions) {
    this.prefix = opts.prefix
    this.switchNs = `${opts.prefix}-sw`
  }

  static async create (opts: TopologyOptions): Promise<Topology> {
    const t = new Topology(opts)
    try {
      t.subnet = await pickSubnet(opts.seed ?? 0)
      await t.makeNamespace(t.switchNs)
      await createBridge(t.switchNs, BRIDGE)
    } catch (err) {
      await t.destroy()
      throw err
    }
    return t
  }

  host (name: string): NetHost {
    const h = this.hosts.get(name)
    if (h == null) throw new NetnsError(`no host "${name}" (have: ${[...this.hosts.keys()].join(', ')})`)
    return h
  }

  /** A new host namespace on the switch; its name must be short and unique here. */
  async addHost (name: string): Promise<NetHost> {
    if (this.destroyed) throw new NetnsError('topology already destroyed')
    if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw new NetnsError(`host name "${name}": use a-z, 0-9 and "-" (at most 31)`)
    if (this.hosts.has(name)) throw new NetnsError(`host "${name}" exists already`)
    const index = this.nextIndex++
    if (index > 80) throw new NetnsError('at most 80 hosts per topology')
    const h: NetHost = { name, ns: `${this.prefix}-${name}`, index, address: `${this.subnet}.${10 + index}` }
    await this.makeNamespace(h.ns)
    this.hosts.set(name, h)
    // the switch-side port is named by index: interface names stop at 15 characters
    await connectToBridge({ hostNs: h.ns, hostIf: HOST_IF, switchNs: this.switchNs, portIf: `p${index}`, bridge: BRIDGE })
    await addAddress(h.ns, HOST_IF, `${h.address}/24`)
    await ensureMulticastRoute(h.ns, HOST_IF)
    return h
  }

  /**
   * Cuts `name` off from `from` (host names; default: every other host), both ways.
   * "firewall": nftables rules in the host's namespace drop traffic to and from
   * those hosts' addresses; "link": its veth goes down (always from everyone).
   */
  async cut (name: string, opts: { from?: string[], how?: 'firewall' | 'link' } = {}): Promise<void> {
    const h = this.host(name)
    // a firewall cut adds to one already there (a chain of cuts: h1 from h2, then from h3);
    // a link cut, or a cut of the other kind, replaces it
    if (h.cut != null && !(h.cut.how === 'firewall' && opts.how !== 'link')) await this.heal(name)
    if (opts.how === 'link') {
      if (opts.from != null) throw new NetnsError('a link cut is from everyone; use how: "firewall" to cut off from some hosts')
      await setLink(h.ns, HOST_IF, false)
      h.cut = { how: 'link' }
      return
    }
    const peers = (opts.from ?? [...this.hosts.keys()].filter(n => n !== name)).map(n => this.host(n).address)
    await firewallCut(h.ns, peers)
    h.cut = { how: 'firewall', peers: [...new Set([...h.cut?.how === 'firewall' ? h.cut.peers : [], ...peers])] }
  }

  /** The hosts a host is cut off from by its firewall now (by name, sorted). */
  cutFrom (name: string): string[] {
    const c = this.host(name).cut
    if (c?.how !== 'firewall') return []
    return [...this.hosts.entries()].filter(([, h]) => c.peers.includes(h.address)).map(([n]) => n).sort()
  }

  /** Undoes cut(): the host can talk to everyone again. */
  async heal (name: string): Promise<void> {
    const h = this.host(name)
    if (h.cut?.how === 'link') {
      await setLink(h.ns, HOST_IF, true)
      // the link going down took the multicast route with it
      await ensureMulticastRoute(h.ns, HOST_IF)
    } else {
      await firewallHeal(h.ns)
    }
    h.cut = undefined
  }

  /** Moves a host to a new address (or `to`) while whatever runs there keeps running. */
  async changeAddress (name: string, to?: string): Promise<string> {
    const h = this.host(name)
    const next = to ?? `${this.subnet}.${this.nextMoved++}`
    if ([...this.hosts.values()].some(o => o.address === next)) throw new NetnsError(`address ${next} is taken`)
    await replaceAddress(h.ns, HOST_IF, `${h.address}/24`, `${next}/24`)
    await ensureMulticastRoute(h.ns, HOST_IF)
    h.address = next
    return next
  }

  /** Removes every namespace made (killing what still runs in them), newest first. */
  async destroy (graceMs = 0): Promise<void> {
    this.destroyed = true
    const all = [...this.made].reverse()
    // hosts in parallel: each can take graceMs to stop its processes
    await Promise.all(all.filter(n => n !== this.switchNs).map(async ns => await deleteNamespace(ns, graceMs)))
    if (all.includes(this.switchNs)) await deleteNamespace(this.switchNs)
    this.made.length = 0
    this.hosts.clear()
  }

  destroySync (): void {
    this.destroyed = true
    for (const ns of [...this.made].reverse()) deleteNamespaceSync(ns)
    this.made.length = 0
  }

  private async makeNamespace (ns: string): Promise<void> {
    // recorded right after `ip netns add` succeeds, never before: a name that was
    // already taken (someone else's) must not be deleted by our cleanup
    await createNamespace(ns, () => { this.made.push(ns) })
  }
}
