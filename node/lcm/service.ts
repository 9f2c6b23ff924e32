// The connection manager (LCM) of one agent: one WireGuard peer per live member, VM
// addresses routed through the peer that hosts them, and the node's link rules. Every
// decision is in plan.ts, rules.ts and overlay.ts; this file reads the inputs, applies
// the differences and reports. The interface, its keypair, address and peers, and the
// advert are tunnel.ts's; routing this node's own VMs and telling them their names is
// local-vm-net.ts's.
import { EventEmitter } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { Counter, type Registry } from 'prom-client'
import type { MemberTable, Transition } from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'
import type { Draft } from '../../crdt/schema.ts'
import type { Logger } from '../log.ts'
import type { Service } from '../service.ts'
import { removeLeftoverInterfaces, type Backend } from './wireguard.ts'
import { interfaceName, type InterfaceState } from './wireguard-format.ts'
import { overlayPrefix, type OverlayPrefix } from './overlay.ts'
import { addressing, planPeers, type Addressing, type DocView, type PeerPlan } from './plan.ts'
import { computeRuleset, tableName, type Link, type Ruleset } from './rules.ts'
import { applyRuleset, readCounters, removeForeignTables, removeRuleset, type TableCounters } from './nft.ts'
import { lcmRoutes } from './routes.ts'
import { LINK_SETTLE_MS, oneLinkPerOutput, standingLinks, terminalHosts } from './links.ts'
import { registerCounters } from './metrics.ts'
import { OverlayRoutes } from './overlay-routes.ts'
import { Condition } from './condition.ts'
import { LocalVmNet, type LocalVms } from './local-vm-net.ts'
import { AddressWatch } from './address-watch.ts'
import { RETRY_MAX_MS, RETRY_MIN_MS, Tunnel, type WireguardAdvert } from './tunnel.ts'
import { KEEPALIVE_S, tunnelsDown, type TunnelDown } from './tunnel-health.ts'
import { lcmProblems, membersOverlayDown, overlayDownReason } from './health.ts'
import type { HealthProblem } from '../api/types.ts'
import type { LcmState, LcmStatus, LcmView } from './types.ts'
import type { RequestHost } from '../p2p/request.ts'
import { countsOf, LinkCountsService, type LinkCounts } from './link-counts.ts'
import { takeOverlayNamespace } from './namespace-lock.ts'

export type { LcmState, LcmStatus, LcmView } from './types.ts'
export type { LocalVms } from './local-vm-net.ts'

export type { WireguardAdvert } from './tunnel.ts'

export interface LcmComponents {
  config: { dataDir: string }
  log: Logger
  registry: Registry
  peerId: string
  clusterId: string
  membership: {
    readonly members: MemberTable
    /** members alive that this node does not reach while another does (a partial partition), by id: their tunnels pass nothing */
    outOfReach?: () => ReadonlyMap<string, { by: string }>
    on: (event: 'transition', fn: (t: Transition) => void) => unknown
    off: (event: 'transition', fn: (t: Transition) => void) => unknown
  }
  state: LcmState
  /**
   * the adverts that were news (the membership service's 'advert' events): a member's
   * WireGuard key or endpoint arriving or changing is no transition (an agent restarted
   * at once was alive again before its tunnel was up, and its peers stayed removed)
   */
  adverts?: {
    on: (event: 'advert', fn: (a: Pick<Advert, 'nodeId' | 'wireguard'>) => void) => unknown
    off: (event: 'advert', fn: (a: Pick<Advert, 'nodeId' | 'wireguard'>) => void) => unknown
  }
  /** the agent puts this in its advert's `wireguard` slot and re-advertises */
  onAdvert: (wg: WireguardAdvert | null) => void
  /** the VMs of this node (DVMM): each one's interface (tap or veth), to route its address, and its terminal names */
  vms?: LocalVms
  /** to answer and ask for links' counts (link-counts.ts); absent: this node's own only */
  host?: RequestHost
}

/** What a VM is given when it starts: its overlay address and its terminal names. */
export interface VmOverlay { address: string, names: Record<string, string> }

export interface LcmInit {
  /** UDP port of the WireGuard interface (a fixed one, in the config) */
  port?: number
  /** the address peers reach this host at; default: its first non-loopback IPv4 */
  endpointHost?: string
  keepaliveS?: number
  /** how often to look for a change of this host's addresses (ms); 0: never */
  addressPollMs?: number
  /** force a backend (tests); default: probed */
  backend?: Backend
  /** leave the nftables rules in place when the service stops (default true: fail closed) */
  keepRulesOnStop?: boolean
  /** how long a link create waits for others' writes of the same moment before it answers (default LINK_SETTLE_MS) */
  settleMs?: number
}


export interface LcmEvents {
  reconciled: [PeerPlan, Ruleset]
  /** a plan could not be applied (logged; the next change or poll tries again). Not 'error': an EventEmitter throws that when nobody listens */
  failed: [Error]
}

/** how often routes others may have added inside the overlay range are looked for */
const ROUTE_CHECK_MS = 30_000
/**
 * how often the handshake times of the tunnels this node's links need are read (`wg
 * show IF dump`, tunnel-health.ts): a tunnel that went down shows at most this long
 * after its bound, and one that came back clears as late
 */
const TUNNEL_CHECK_MS = 5_000

export class LcmService extends EventEmitter<LcmEvents> implements Service, LcmView {
  readonly name = 'lcm'
  readonly prefix: OverlayPrefix
  readonly ifname: string
  readonly table: string
  private readonly c: LcmComponents
  private readonly init: Required<Omit<LcmInit, 'endpointHost' | 'backend'>> & Pick<LcmInit, 'endpointHost' | 'backend'>
  private readonly log: Logger
  /** this node's WireGuard interface, its address and peers, and its advert */
  private readonly tunnel: Tunnel
  /** why the last plan could not be applied */
  private readonly unapplied = new Condition()
  /** a read of the table's counts under way */
  private countersRead?: Promise<TableCounters>
  private readonly overlayRoutes: OverlayRoutes
  private routeTimer?: NodeJS.Timeout
  private tunnelTimer?: NodeJS.Timeout
  /** the needed tunnels without handshakes, as the last check found them */
  private down: TunnelDown[] = []
  /** per peer (public key): the bytes received from it when last read, and since when that count stands */
  private readonly rxSeen = new Map<string, { rx: number, at: number }>()
  private hostAddrs = ''
  private running = false
  private timer?: NodeJS.Timeout
  private pollTimer?: NodeJS.Timeout
  private queue: Promise<void> = Promise.resolve()
  private dirty = false
  /** the wait before applying again after a failed apply (doubles up to RETRY_MAX_MS, reset by a success) */
  private retryMs = RETRY_MIN_MS
  /** passes of reconcile started, and the number of the last one that ended (settled) */
  private passesStarted = 0
  private lastPassDone = 0
  private readonly localVms: LocalVmNet
  private readonly counts?: LinkCountsService
  private rejectedSeen = new Set<string>()
  /** an earlier agent's tables were looked for and removed (after this agent's own first applied: fail closed) */
  private foreignTablesCleared = false
  /** gives up this namespace's overlay lock (taken at start) */
  private releaseNamespace?: () => void
  private foreignTablesError: string | null = null
  private readonly addressWatch: AddressWatch
  last: { plan: PeerPlan, rules: Ruleset, addr: Addressing, links: Link[] } | null = null
  /** each VM address's holder (`vm@created`) at the last apply: whose drop records are whose */
  private addressHolders = new Map<string, string>()
  private readonly rejected: Counter<'reason'>
  private readonly listener = (): void => { this.schedule() }
  /** a member's tunnel as the last plan has it differs from its advert now: plan again */
  private readonly advertListener = (a: Pick<Advert, 'nodeId' | 'wireguard'>): void => {
    if (a.nodeId === this.c.peerId) return
    const t = this.last?.plan.tunnels.find(x => x.node === a.nodeId)
    if ((t?.publicKey ?? null) !== (a.wireguard?.publicKey ?? null) || (t?.endpoint ?? null) !== (a.wireguard?.endpoint ?? null)) this.schedule()
  }

  constructor (components: LcmComponents, init: LcmInit = {}) {
    super()
    this.c = components
    this.init = { port: 51820, keepaliveS: KEEPALIVE_S, addressPollMs: 1000, keepRulesOnStop: true, settleMs: LINK_SETTLE_MS, ...init }
    this.log = components.log.child('lcm')
    this.prefix = overlayPrefix(components.clusterId)
    this.ifname = interfaceName(components.peerId)
    this.table = tableName(components.peerId)
    this.localVms = new LocalVmNet(components.peerId, components.vms, this.log)
    if (components.host != null) this.counts = new LinkCountsService({ host: components.host, local: async ids => await this.linkCounts(ids) })
    this.addressWatch = new AddressWatch(() => { if (this.running) this.checkAddresses() }, this.log)
    this.overlayRoutes = new OverlayRoutes({ log: this.log, prefix: this.prefix, wgIf: this.ifname })
    this.tunnel = new Tunnel({
      log: this.log, registry: components.registry, dataDir: components.config.dataDir, peerId: components.peerId, onAdvert: components.onAdvert, schedule: ms => { this.schedule(ms) }
    }, { ifname: this.ifname, prefix: this.prefix, port: this.init.port, endpointHost: this.init.endpointHost, backend: this.init.backend })
    this.rejected = new Counter({ name: 'vgrid_lcm_peers_rejected_total', help: 'Adverts whose WireGuard key or endpoint was rejected, by reason', labelNames: ['reason'] as const, registers: [components.registry] })
    registerCounters(components.registry, this)
  }

  async start (): Promise<void> {
    // one agent runs the overlay per network namespace (namespace-lock.ts)
    this.releaseNamespace = await takeOverlayNamespace()
    this.running = true
    // first on the queue, before any plan the listeners below may schedule: what an
    // earlier agent of another identity left (a plan first logged its "Address already in use")
    this.queue = this.queue.then(async () => { await this.removeLeftoverInterfaces() })
    this.tunnel.start()
    this.c.membership.on('transition', this.listener)
    this.c.adverts?.on('advert', this.advertListener)
    this.c.state.on('changed', this.listener)
    if (this.init.addressPollMs > 0) {
      this.pollTimer = setInterval(() => { this.checkAddresses() }, this.init.addressPollMs)
      this.addressWatch.start()
    }
    this.hostAddrs = this.tunnel.addressKey()
    await this.queue
    await this.counts?.start()
    await this.overlayRoutes.fallback('replace')
    // routes others add are looked for after every plan, and now and then besides
    this.routeTimer = setInterval(() => { this.queue = this.queue.then(async () => { await this.overlayRoutes.check() }) }, ROUTE_CHECK_MS)
    // a partial partition stops only the handshakes of a tunnel (membership goes round through others)
    // and an interface set down by hand loses its routes for good unless they are put back
    this.tunnelTimer = setInterval(() => {
      this.queue = this.queue.then(async () => {
        await this.tunnel.checkInterface().catch((err: unknown) => { this.log.warn('could not check the WireGuard interface', { error: (err as Error).message }) })
        await this.checkTunnels()
      })
    }, TUNNEL_CHECK_MS)
    // the first plan (which makes the interface) is applied before start returns: the link
    // rules must be in the kernel before this node reports ready (a timer here let start return first)
    this.dirty = true
    this.queue = this.queue.then(async () => { if (this.dirty && this.running) await this.reconcile() })
    await this.queue
  }

  async stop (): Promise<void> {
    this.running = false
    await this.counts?.stop()
    clearTimeout(this.timer)
    clearInterval(this.pollTimer)
    this.addressWatch.stop()
    clearInterval(this.routeTimer)
    clearInterval(this.tunnelTimer)
    this.c.membership.off('transition', this.listener)
    this.c.adverts?.off('advert', this.advertListener)
    this.c.state.off('changed', this.listener)
    await this.queue
    // the rules stay in the kernel unless asked: VMs that outlive the agent stay
    // confined to their declared connections (fail closed); the next start replaces them
    if (!this.init.keepRulesOnStop) await removeRuleset(null, this.table).catch(err => { this.log.warn('could not remove the link rules', { error: (err as Error).message }) })
    await this.tunnel.stop()
    // VMs that outlive the agent keep their declared links, and the fallback route keeps
    // anything of theirs from leaving in clear
    if (!this.init.keepRulesOnStop) await this.overlayRoutes.fallback('del')
    this.releaseNamespace?.()
    this.releaseNamespace = undefined
  }

  routes (app: FastifyInstance): void { lcmRoutes(this)(app) }

  status (): LcmStatus {
    const { unapplied, overlayRoutes: { conflict }, tunnel } = this
    const { down } = tunnel
    return { ok: down.value == null, error: down.value, errorSince: down.since, applyError: unapplied.value, applyErrorSince: unapplied.since, routeConflict: conflict.value, routeConflictSince: conflict.since, tunnelsDown: this.down, backend: tunnel.backend, interface: this.ifname, publicKey: tunnel.publicKey, endpoint: tunnel.endpoint, address: tunnel.address, prefix: this.prefix }
  }

  /** why this node's WireGuard is down (null: up): its advert says it: the last choice for VMs with connections, which it moves elsewhere once down a while (dvmm/overlay-moves.ts) */
  overlayDown (): string | null { return this.tunnel.down.value }
  /** whether the tunnel to `node` carries nothing for a link that needs it (tunnel-health.ts, its last check) */
  tunnelDown (node: string): boolean { return this.down.some(d => d.node === node) }

  /** what /v1/status lists for the LCM (health.ts): this node's overlay, and other members' that is down */
  problems (): HealthProblem[] { return [...lcmProblems(this.status()), ...membersOverlayDown(this.c.membership.members, this.c.peerId)] }

  get state (): LcmState { return this.c.state }
  get members (): MemberTable { return this.c.membership.members }
  /** who reaches a member this node does not (a partial partition), or undefined */
  unreachedBy (node: string): string | undefined { return this.c.membership.outOfReach?.().get(node)?.by }
  get selfId (): string { return this.c.peerId }
  get linkSettleMs (): number { return this.init.settleMs }

  /** Recompute and apply soon (coalesces bursts of document and membership events). */
  schedule (delayMs = 50): void {
    if (!this.running) return
    this.dirty = true
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.queue = this.queue.then(async () => { if (this.dirty && this.running) await this.reconcile() })
    }, delayMs)
  }

  /**
   * Waits until what is scheduled now has been applied, or failed to apply: a pass that
   * started after this call has ended (a failed one retries later on its own).
   */
  async settled (): Promise<void> {
    if (!this.dirty) return
    const mark = this.passesStarted
    while (this.running && this.lastPassDone <= mark) {
      await new Promise(resolve => setTimeout(resolve, 20))
      await this.queue
    }
  }

  /** `links`: one per output (oneLinkPerOutput); `contested`: the others, skipped */
  private docView (): DocView & { links: Link[], contested: Ruleset['skipped'] } {
    const r = this.c.state.read()
    const vms = r.list('vms')
    // a link whose VM is gone (removed while it was made, or a former VM of the name) takes no output's place
    const current = standingLinks(r.list('connections').map(c => ({ id: c.id, from: c.from, to: c.to, protocol: c.protocol, port: c.port, at: c.at })), new Map(vms.map(v => [v.id, v])))
    const { links, skipped } = oneLinkPerOutput(current.links)
    return {
      vms: vms.map(v => ({ id: v.id, at: v.at, created: v.created, overlayIndex: (v as { overlayIndex?: unknown }).overlayIndex, inputs: v.spec.inputs, outputs: v.spec.outputs })),
      leases: r.list('leases').map(l => ({ vm: l.vm, holder: l.holder })),
      roll: r.list('roll').map(n => ({ node: n.node, joined: n.joined, overlayIndex: (n as { overlayIndex?: unknown }).overlayIndex })),
      links,
      contested: [...current.skipped, ...skipped]
    }
  }

  private async reconcile (): Promise<void> {
    this.dirty = false
    const pass = ++this.passesStarted
    try {
      await this.tunnel.ensure()
      const doc = this.docView()
      const addr = addressing(this.prefix, doc, this.c.membership.members.keys())
      const plan = planPeers(this.c.peerId, this.tunnel.publicKey, this.c.membership.members, addr, this.init.keepaliveS)
      // counted once per advert content while it is seen, not on every recomputation;
      // only the adverts rejected now are kept, so the set stays as small as the grid
      const seen = new Set<string>()
      for (const r of plan.rejected) {
        const key = `${r.node}\n${r.reason}\n${r.detail}`
        seen.add(key)
        if (this.rejectedSeen.has(key)) continue
        this.rejected.inc({ reason: r.reason })
        this.log.warn('peer rejected', { node: this.c.membership.members.get(r.node)?.advert.name ?? r.node, id: r.node, reason: r.reason, detail: r.detail })
      }
      this.rejectedSeen = seen
      const rules = computeRuleset({ node: this.c.peerId, table: this.table, vmPrefix: this.prefix.vmV4, vms: addr.vms, links: doc.links })
      rules.skipped.push(...doc.contested)
      await this.tunnel.applyAddress(addr)
      await this.tunnel.applyPeers(plan)
      await this.localVms.route(addr)
      await this.overlayRoutes.check()
      // the addresses whose VM went, or is another VM now, since the last apply: their drop records go
      const createdOf = new Map(doc.vms.map(v => [v.id, v.created]))
      const holders = new Map(addr.vms.map(v => [v.address, `${v.vm}@${createdOf.get(v.vm) ?? ''}`]))
      const former = new Set([...this.addressHolders].filter(([a, h]) => holders.get(a) !== h).map(([a]) => a))
      await applyRuleset(null, rules, former)
      this.addressHolders = holders
      await this.removeForeignTables()
      await this.localVms.name(addr, doc.links)
      await this.writeBackIndexes(doc, addr)
      this.last = { plan, rules, addr, links: doc.links }
      this.retryMs = RETRY_MIN_MS
      const after = this.unapplied.value
      if (this.unapplied.set(null)) this.log.info('connections applied again', { after })
      this.emit('reconciled', plan, rules)
    } catch (err) {
      // nothing else may come to ask again (a quiet grid): try again, less often each time;
      // said once per cause, and shown in the status while it lasts
      const error = (err as Error).message
      if (this.unapplied.set(error)) this.log.error('could not apply connections; trying again', { error, inMs: this.retryMs })
      this.emit('failed', err as Error)
      this.schedule(this.retryMs)
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS)
    } finally {
      this.lastPassDone = pass
    }
  }

  /**
   * An earlier agent of another identity on this host (its data dir moved aside, it
   * SIGKILLed) left its WireGuard interface, held by its wireguard-go: the listen port
   * ("Address already in use") and routes in the overlay range. Removed before this
   * agent makes its own (leftovers.ts says why whatever is not ours is a predecessor's).
   */
  private async removeLeftoverInterfaces (): Promise<void> {
    try {
      for (const r of await removeLeftoverInterfaces(this.ifname, null)) {
        this.log.warn('removed a WireGuard interface an earlier agent on this host left (another node identity)', { interface: r.name, wireguardGo: r.pids, signalled: r.killed })
      }
    } catch (err) {
      this.log.warn('could not look for WireGuard interfaces an earlier agent left', { error: (err as Error).message })
    }
  }

  /** An earlier agent's link table (its drop set would go on dropping what this node's rules pass): removed once, after ours is in. */
  private async removeForeignTables (): Promise<void> {
    if (this.foreignTablesCleared) return
    try {
      for (const t of await removeForeignTables(null, this.table)) this.log.warn('removed the nftables table an earlier agent on this host left (another node identity)', { table: t })
      this.foreignTablesCleared = true
    } catch (err) {
      const error = (err as Error).message
      if (error !== this.foreignTablesError) this.log.warn('could not look for nftables tables an earlier agent left; trying again at the next plan', { error })
      this.foreignTablesError = error
    }
  }

  /**
   * A VM whose index is new or lost a conflict: its holder stores the index. An unplaced
   * VM's is not stored: every agent computes the same index for it from the document.
   */
  private async writeBackIndexes (doc: DocView, addr: Addressing): Promise<void> {
    const holder = new Map(doc.leases.map(l => [l.vm, l.holder]))
    const mine = [...addr.vmAlloc].filter(([vm, a]) => a.changed && (holder.get(vm) ?? null) === this.c.peerId)
    if (mine.length === 0) return
    await this.c.state.write(w => {
      // a VM removed, or its lease moved, since the pass read the document: not this node's to write
      for (const [vm, a] of mine) {
        if (w.reader.get('vms', vm) == null || w.reader.get('leases', vm)?.value.holder !== this.c.peerId) continue
        w.update('vms', vm, { overlayIndex: a.index } as Partial<Draft<'vms'>>)
      }
    })
    for (const [vm, a] of mine) this.log.info('overlay address stored', { vm, index: a.index, reason: a.reason })
  }

  private checkAddresses (): void {
    const k = this.tunnel.addressKey()
    if (k === this.hostAddrs) return
    this.hostAddrs = k
    // peer endpoints re-set at once, the new endpoint advertised (Tunnel.addressChanged)
    this.queue = this.queue.then(async () => { await this.tunnel.addressChanged() })
  }

  /**
   * A VM's overlay address and terminal names (its /etc/hosts, environment or kernel
   * command line), from the document as it is now: DVMM asks just before it starts
   * the VM, which may be before this service's next plan. Null for a VM not in the document.
   */
  overlayOf (vm: string): VmOverlay | null {
    const doc = this.docView()
    const addr = addressing(this.prefix, doc, this.c.membership.members.keys())
    const byVm = new Map(addr.vms.map(v => [v.vm, v.address]))
    const address = byVm.get(vm)
    if (address == null) return null
    return { address, names: terminalHosts(vm, doc.links, x => byVm.get(x) ?? null, addr.vms.find(v => v.vm === vm)?.outputs) }
  }

  /**
   * Reads the handshake times of the peers and judges the tunnels this node's links
   * need (tunnel-health.ts): the status, the health problem and the links' views
   * follow; each change is logged once. Never throws (a failed read judges no peer).
   */
  async checkTunnels (now = Date.now()): Promise<TunnelDown[]> {
    const last = this.last
    const peers = last == null ? [] : await this.peerStates()
    const members = this.c.membership.members
    const place = new Map((last?.addr.vms ?? []).map(v => [v.vm, v.node]))
    // since when nothing came from each peer (as far as this agent has watched)
    for (const p of peers) {
      const seen = this.rxSeen.get(p.publicKey)
      if (seen == null || seen.rx !== p.rxBytes) this.rxSeen.set(p.publicKey, { rx: p.rxBytes, at: now })
    }
    for (const k of this.rxSeen.keys()) if (!peers.some(p => p.publicKey === k)) this.rxSeen.delete(k)
    const down = tunnelsDown(
      this.c.peerId,
      peers.flatMap(p => p.node == null ? [] : [{ node: p.node, name: members.get(p.node)?.advert.name ?? null, latestHandshake: p.latestHandshake, addedAt: this.tunnel.addedAt(p.publicKey), rxChangedAt: this.rxSeen.get(p.publicKey)?.at ?? null }]),
      (last?.links ?? []).map(l => ({ id: l.id, from: { ...l.from, node: place.get(l.from.vm) ?? null }, to: { ...l.to, node: place.get(l.to.vm) ?? null } })),
      now, this.init.keepaliveS)
    const was = new Map(this.down.map(d => [d.node, d]))
    for (const d of down) {
      const before = was.get(d.node)
      if (before == null || before.links.join() !== d.links.join()) this.log.warn('tunnel down: links to its node carry nothing', { node: d.node, name: d.name, latestHandshake: d.latestHandshake, links: d.links, message: d.message })
      was.delete(d.node)
    }
    for (const d of was.values()) this.log.info('tunnel no longer down (a handshake again, or no link needs it now)', { node: d.node, name: d.name, links: d.links })
    this.down = down
    return down
  }

  /** The interface's peers with the node each belongs to. */
  async peerStates (): Promise<Array<InterfaceState['peers'][number] & { node: string | null }>> {
    const wg = this.tunnel.wg
    if (wg == null) return []
    const byKey = new Map((this.last?.plan.tunnels ?? []).map(t => [t.publicKey, t.node]))
    try {
      return (await wg.show()).peers.map(p => ({ ...p, node: byKey.get(p.publicKey) ?? null }))
    } catch {
      return []
    }
  }

  /** The table's counts; callers at the same moment (the gauges of one /metrics scrape, a view) share one `nft -j` read. */
  async counters (): Promise<TableCounters> {
    this.countersRead ??= readCounters(null, this.table)
      .catch(() => ({ counters: new Map(), drops: [] }))
      .finally(() => { this.countersRead = undefined })
    return await this.countersRead
  }

  async linkCounts (ids: readonly string[]): Promise<Map<string, LinkCounts>> {
    const links = new Map(this.c.state.read().list('connections').map(l => [l.id, l]))
    const out = countsOf(ids, links, this.last, await this.counters())
    // this node's word on each link's tunnel, for a node that holds neither end
    const overlayDown = overlayDownReason(this.status())
    if (overlayDown != null) {
      // with no WireGuard here, every link between this node and another carries nothing
      const node = new Map((this.last?.addr.vms ?? []).map(v => [v.vm, v.node]))
      for (const [id, c] of out) {
        const l = links.get(id)
        const from = l == null ? null : node.get(l.from.vm) ?? null
        const to = l == null ? null : node.get(l.to.vm) ?? null
        if (from != null && to != null && from !== to) c.down = overlayDown
      }
    }
    for (const d of this.down) {
      for (const id of d.links) {
        const c = out.get(id)
        if (c != null) c.down ??= d.reason
      }
    }
    return out
  }

  get askCounts (): LcmView['askCounts'] {
    const c = this.counts
    return c == null ? undefined : async (node, ids) => await c.ask(node, ids)
  }

  /** Drops on this node by address pair, with the VMs the addresses belong to. */
  async drops (): ReturnType<LcmView['drops']> {
    const byAddr = new Map((this.last?.addr.vms ?? []).map(v => [v.address, v.vm]))
    const linkOf = this.c.vms?.vmOfLinkAddress
    return (await this.counters()).drops.map(d => {
      const srcVm = byAddr.get(d.src) ?? null
      return { ...d, srcVm, dstVm: byAddr.get(d.dst) ?? null, srcLink: srcVm == null ? linkOf?.(d.src) ?? null : null }
    })
  }
}
