// This node's own VMs on the overlay: each one's address routed to its interface
// (tap or veth) with proxy ARP, forwarding on, and the terminal names each is told.
// LcmService calls it on every plan; it remembers what it set, to undo what goes.
import { writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import type { Logger } from '../log.ts'
import { ip } from '../netns/netns.ts'
import type { Addressing } from './plan.ts'
import type { Link } from './rules.ts'
import { terminalHosts } from './links.ts'

export interface LocalVms {
  interfaceOf: (vm: string) => string | null
  /** which run of the VM's interface it is now (a VM started again has a new one of the same name); absent: routed on every plan */
  interfaceRun?: (vm: string) => string | null
  /** tells a running VM its terminal names anew; false where its driver cannot */
  setNames?: (vm: string, names: Record<string, string>) => Promise<boolean>
  /** the VM here whose link address (its end of the /30 to this node) `address` is, or null */
  vmOfLinkAddress?: (address: string) => string | null
}

/** The addresses of `node`'s VMs that have an interface, each with it. */
export function localRoutes (node: string, vms: Addressing['vms'], interfaceOf: (vm: string) => string | null): Map<string, string> {
  const want = new Map<string, string>()
  for (const v of vms) {
    if (v.node !== node) continue
    const dev = interfaceOf(v.vm)
    if (dev != null) want.set(v.address, dev)
  }
  return want
}

/** routed again however unchanged, this often: a route someone removed by hand comes back */
const REFRESH_MS = 60_000

export class LocalVmNet {
  private readonly routed = new Set<string>()
  /**
   * what each address was routed to, by run of its interface: a plan with nothing new
   * for it does nothing (bb25: with 100 VMs a node, every link made or removed ran 100
   * `ip route` and 200 sysctl writes, two seconds a link)
   */
  private readonly routedRun = new Map<string, string>()
  private refreshedAt = -Infinity
  /** terminal names last given to each local VM, as JSON */
  private readonly named = new Map<string, string>()
  private forwarding = false
  private readonly node: string
  private readonly vms: LocalVms | undefined
  private readonly log: Logger

  constructor (node: string, vms: LocalVms | undefined, log: Logger) {
    this.node = node
    this.vms = vms
    this.log = log
  }

  /** Local VMs' addresses go to their interfaces; everything else in the VM range to WireGuard. */
  async route (addr: Addressing): Promise<void> {
    const ifs = this.vms
    if (ifs == null) return
    const want = localRoutes(this.node, addr.vms, vm => ifs.interfaceOf(vm))
    const runOf = new Map(addr.vms.flatMap(v => { const r = v.node === this.node ? ifs.interfaceRun?.(v.vm) ?? null : null; return r == null ? [] : [[v.address, r] as const] }))
    if (performance.now() - this.refreshedAt > REFRESH_MS) {
      this.refreshedAt = performance.now()
      this.routedRun.clear()
    }
    for (const [a, dev] of [...want]) {
      const run = runOf.get(a)
      if (run != null && this.routedRun.get(a) === run) continue
      this.routedRun.delete(a)
      try {
        // the VM's default route points at its link (no gateway address): answer its ARP
        // for every destination, and forward what it sends. At once: the kernel delays
        // a proxy answer by up to proxy_delay (0.8 s by default) for each new neighbour
        await writeFile(`/proc/sys/net/ipv4/conf/${dev}/proxy_arp`, '1')
        await writeFile(`/proc/sys/net/ipv4/neigh/${dev}/proxy_delay`, '0')
        await ip(['route', 'replace', `${a}/32`, 'dev', dev])
        this.routed.add(a)
        if (run != null) this.routedRun.set(a, run)
      } catch (err) {
        // the VM went (killed, stopped, moved) between the plan and now: its route goes with its interface
        if (existsSync(`/sys/class/net/${dev}`)) throw err
        want.delete(a)
        this.log.debug('a VM interface went while routing it', { address: a, interface: dev })
      }
    }
    if (want.size > 0 && !this.forwarding) {
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1')
      this.forwarding = true
    }
    for (const a of [...this.routed].filter(a => !want.has(a))) {
      await ip(['route', 'del', `${a}/32`], { allowFail: true })
      this.routed.delete(a)
      this.routedRun.delete(a)
    }
  }

  /** Local VMs whose terminal names changed (a link made, removed, or its peer readdressed) are told. */
  async name (addr: Addressing, links: Link[]): Promise<void> {
    const vms = this.vms
    if (vms?.setNames == null) return
    const byVm = new Map(addr.vms.map(v => [v.vm, v.address]))
    const here = new Set<string>()
    for (const v of addr.vms) {
      if (v.node !== this.node || vms.interfaceOf(v.vm) == null) continue
      here.add(v.vm)
      const names = terminalHosts(v.vm, links, x => byVm.get(x) ?? null, v.outputs)
      const key = JSON.stringify(names)
      if (this.named.get(v.vm) === key) continue
      try {
        if (await vms.setNames(v.vm, names)) this.log.info('terminal names updated', { vm: v.vm, names })
        this.named.set(v.vm, key)
      } catch (err) {
        this.log.warn('could not update terminal names', { vm: v.vm, error: (err as Error).message })
      }
    }
    for (const vm of this.named.keys()) if (!here.has(vm)) this.named.delete(vm)
  }
}
