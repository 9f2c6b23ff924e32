// The membership service: the failure detector (protocol/membership-service.ts) on
// this agent's host, the dialer that keeps it connected (join addresses, members,
// mDNS, the peer book), this node's advert, the address watch, and the metrics and
// API views of who is in the grid.
import type { GossipSub } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import type { FastifyInstance } from 'fastify'
import { peerIdFromString } from '@libp2p/peer-id'
import { resetConnections } from '../../protocol/reset-connections.ts'
import { Counter, Gauge, type Registry } from 'prom-client'
import { MembershipService, type MembershipTiming, type ReachWhy } from '../../protocol/membership-service.ts'
import type { MembershipConfig } from '../../protocol/membership.ts'
import { countStates, type MemberCounts } from '../../protocol/membership.ts'
import type { AdvertBody } from '../../protocol/own-advert.ts'
import { MAX_LIVENESS_MS, type Resources, type VmHostAdvert } from '../../protocol/advert.ts'
import { Dialer } from '../../protocol/dialer.ts'
import { MAX_CLOCK_OFFSET_MS } from '../../protocol/heartbeat.ts'
import type { HealthProblem, StatusView } from '../api/types.ts'
import type { VgridHost } from '../../protocol/host.ts'
import type { Logger } from '../log.ts'
import type { Service } from '../service.ts'
import { freeOf, loadAverage } from '../resources.ts'
import { loadPeerBook, peerBookEntries, savePeerBook } from '../peer-book.ts'
import { claimIncarnation } from '../incarnation.ts'
import { VERSION } from '../version.ts'
import type { AdvertFields } from './advert-fields.ts'
import type { MemberDirectory } from './directory.ts'
import { advertisedAddrs, CLOCK_STEADY_MS, gone, ipsOf, vanished } from './views.ts'
import { ClockWarnings } from './clock-warnings.ts'
import { membershipRoutes } from './routes.ts'
import { encodeToken, type ClusterKey } from '../../protocol/cluster-key.ts'

export { AdvertFields } from './advert-fields.ts'
export { MemberDirectory } from './directory.ts'

/** a dead member that answers a ping within this keeps its connections (see dropIfSilent) */
const DEAD_PING_TIMEOUT_MS = 3000

export interface MembershipComponents {
  config: { name: string, dataDir: string, labels: Record<string, string>, membership: MembershipConfig, timing: MembershipTiming, fenceTimeoutMs?: number }
  log: Logger
  registry: Registry
  host: VgridHost
  privateKey: PrivateKey
  clusterKey: ClusterKey
  capacity: Resources
  /** join addresses (--join and the token's) */
  join: string[]
  advert: AdvertFields
  directory: MemberDirectory
  /** operator labels from the cluster document, shown over a node's own */
  labels: { labelsOf: (node: string) => Record<string, string> }
  /** a node's entry on the member roll in the cluster document: draining, stopped for a restart */
  roll?: (node: string) => { draining?: boolean, restart?: { fenceMs: number, since: number } | null } | undefined
  /** a node no longer in the grid's roll (forgotten): not shown once dead */
  forgotten?: (node: string) => boolean
  /** the grid's member roll: those on it this agent never heard from are listed apart */
  rollEntries?: () => ReadonlyArray<{ node: string, name: string, joined: number }>
  /** peers whose connections carry something of another service's (never trimmed) */
  busyPeers: () => Iterable<string>
  /** what keeps this node from working fully (a service's disk trouble, ...), for /v1/status */
  health: () => Promise<HealthProblem[]>
  /** the VM manager's HA check, for /v1/status */
  ha?: () => StatusView['ha']
}

export class MembershipMetrics {
  readonly members: Gauge<'state'>
  readonly advertsIn: Counter
  readonly advertsOut: Counter
  readonly gossipRejected: Counter<'topic' | 'reason'>
  readonly bytes: Counter<'direction'>
  readonly suspicions: Counter<'origin'>
  readonly vouched: Counter
  readonly cutsFound: Counter<'why'>

  /** the members by state now, as the gauge reports them when scraped */
  membersNow: (() => MemberCounts) | null = null

  constructor (registry: Registry) {
    const registers = [registry]
    // counted when scraped, as /v1/status counts them (a dead member forgotten is left out:
    // set at transitions only, a tester's /metrics kept it dead for the forget time)
    const now = (): MemberCounts | undefined => this.membersNow?.() ?? undefined
    this.members = new Gauge({
      name: 'vgrid_members',
      help: 'Members by state, as this node sees them',
      labelNames: ['state'] as const,
      registers,
      collect () { const c = now(); if (c != null) for (const [state, n] of Object.entries(c)) this.set({ state }, n) }
    })
    this.advertsIn = new Counter({ name: 'vgrid_adverts_received_total', help: 'Adverts accepted from other members', registers })
    this.advertsOut = new Counter({ name: 'vgrid_adverts_sent_total', help: 'Adverts published by this node', registers })
    this.gossipRejected = new Counter({ name: 'vgrid_gossip_rejected_total', help: 'Gossip messages dropped, by reason', labelNames: ['topic', 'reason'] as const, registers })
    this.bytes = new Counter({ name: 'vgrid_membership_gossip_bytes_total', help: 'Payload bytes of membership gossip (adverts, suspicions)', labelNames: ['direction'] as const, registers })
    this.suspicions = new Counter({ name: 'vgrid_suspicions_total', help: 'Suspicions raised here (local) or heard from others (remote)', labelNames: ['origin'] as const, registers })
    this.vouched = new Counter({ name: 'vgrid_suspicions_vouched_total', help: 'Neighbours silent here that another member reached, so not suspected (indirect probes)', registers })
    this.cutsFound = new Counter({ name: 'vgrid_reach_cuts_found_total', help: 'Members found out of reach from here while another member reaches them, by what found it (unanswered, probed, named)', labelNames: ['why'], registers })
  }
}

export class GridMembership implements Service {
  readonly name = 'membership'
  readonly metrics: MembershipMetrics
  readonly detector: MembershipService
  readonly routes: (app: FastifyInstance) => void
  private readonly c: MembershipComponents
  private readonly log: Logger
  private readonly dialer: Dialer
  private lastAddrs = ''
  private addrTimer?: NodeJS.Timeout
  private peerBookTimer?: NodeJS.Timeout
  private peerBookDirty = false
  private started = false
  private readonly clockWarnings = new ClockWarnings({
    offsetOf: peer => this.detector.clockOffsets().get(peer),
    warn: (peer, offsetMs) => { this.log.warn(`a member's clock has been off from this node's by more than the bound for ${CLOCK_STEADY_MS / 1000} s: writes it stamps in the future are held back; check NTP on both`, { node: this.detector.members.get(peer)?.advert.name ?? peer, offsetMs: Math.round(offsetMs), boundMs: MAX_CLOCK_OFFSET_MS }) },
    back: (peer, offsetMs) => { this.log.info('a member\'s clock is back within the bound', { node: this.detector.members.get(peer)?.advert.name ?? peer, offsetMs: Math.round(offsetMs) }) }
  })

  /** the join addresses: whether each was ever reached (membership/views.ts joinUnreached) */
  joinStatus (): ReturnType<Dialer['joinStatus']> { return this.dialer.joinStatus() }

  constructor (components: MembershipComponents) {
    const c = this.c = components
    this.log = c.log
    this.metrics = new MembershipMetrics(c.registry)
    this.metrics.membersNow = () => {
      const counts = countStates(this.detector.members)
      // a member down and off the roll (vgrid node forget, a leave) is not counted, as in /v1/status
      for (const m of this.detector.members.values()) if (gone(m.state) && c.forgotten?.(m.nodeId) === true) counts[m.state as 'dead' | 'left']--
      return counts
    }
    // the dialer hears discoveries from the moment the host starts (mDNS answers come early)
    this.dialer = new Dialer({
      host: c.host,
      join: c.join,
      onUnreachable: peer => { this.detector.unreachable(peer) },
      keep: () => this.connectionsInUse(),
      onDialError: (target, err) => { this.log.debug('dial failed', { target, error: err.message }) }
    })
    this.detector = new MembershipService({
      host: c.host,
      privateKey: c.privateKey,
      clusterId: c.clusterKey.clusterId,
      body: () => this.advertBody(),
      config: c.config.membership,
      timing: c.config.timing,
      registry: c.registry,
      // after the previous run's whatever the clock says, recorded before any advert goes out
      incarnation: claimIncarnation(c.config.dataDir, this.log)
    })
    c.directory.attach(() => this.detector.members)
    c.advert.on('changed', () => { if (this.started) this.detector.advertiseNow() })
    this.listen()
    this.routes = membershipRoutes({
      self: () => ({ id: this.id, name: c.config.name, version: VERSION, cluster: c.clusterKey.clusterId, addrs: this.addrs() }),
      directory: c.directory,
      labels: c.labels,
      roll: c.roll,
      forgotten: c.forgotten,
      rollEntries: c.rollEntries,
      compat: id => this.detector.compatOf(id),
      clock: id => this.detector.clockOffsets().get(id),
      inSight: id => this.detector.inSight(id),
      outOfReach: id => this.detector.outOfReach().get(id),
      health: c.health,
      ha: () => c.ha?.() ?? null,
      token: () => this.token()
    })
  }

  get id (): string { return this.c.host.peerId.toString() }

  /** members the gossip table forgot that are still dialled, being on the roll */
  private readonly dialedOffTable = new Set<string>()

  private onRoll (node: string): boolean { return this.c.rollEntries?.().some(e => e.node === node) ?? false }

  /** those of them back in the table, or gone from the roll too (forgotten by an operator): no longer kept */
  private pruneDialed (): void {
    for (const id of this.dialedOffTable) {
      if (this.detector.members.has(id)) this.dialedOffTable.delete(id)
      else if (!this.onRoll(id)) { this.dialedOffTable.delete(id); this.dialer.forget(id) }
    }
  }

  async start (): Promise<void> {
    for (const p of await loadPeerBook(this.c.config.dataDir, this.log)) this.dialer.noteMember(p.id, p.addrs, p.state === 'left')
    await this.detector.start()
    this.started = true
    this.dialer.start()
    this.lastAddrs = this.addrs().join()
    this.addrTimer = setInterval(() => this.checkAddrs(), 1000)
    this.peerBookTimer = setInterval(() => {
      this.pruneDialed()
      this.flushPeerBook().catch((err: unknown) => this.log.warn('could not save the peer book', { error: (err as Error).message }))
    }, 2000)
  }

  async stop (opts: { graceful: boolean }): Promise<void> {
    this.clockWarnings.stop()
    clearInterval(this.addrTimer)
    clearInterval(this.peerBookTimer)
    this.dialer.stop()
    await this.detector.stop({ graceful: opts.graceful })
    // give the last advert a moment to leave the socket before connections close
    if (opts.graceful) await new Promise(resolve => setTimeout(resolve, 150))
    await this.flushPeerBook().catch(() => {})
  }

  addrs (): string[] {
    return this.c.host.getMultiaddrs().map(m => m.toString())
  }

  /** A join token: the cluster key plus this node's and a few alive members' addresses. */
  token (): string {
    const routable = (a: string): boolean => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/')
    const others = [...this.detector.members.values()]
      .filter(m => m.state === 'alive' && m.nodeId !== this.id)
      .flatMap(m => m.advert.addrs.slice(0, 1))
    const all = [...this.addrs(), ...others]
    const good = all.filter(routable)
    return encodeToken(this.c.clusterKey, (good.length > 0 ? good : all).slice(0, 6))
  }

  private listen (): void {
    const { detector, metrics, log } = this
    detector.on('advert', a => {
      metrics.advertsIn.inc()
      this.dialer.noteMember(a.nodeId, a.addrs)
      this.dropVanished(a.nodeId, a.addrs)
    })
    detector.on('sent', bytes => { metrics.advertsOut.inc(); metrics.bytes.inc({ direction: 'out' }, bytes) })
    detector.on('received', bytes => { metrics.bytes.inc({ direction: 'in' }, bytes) })
    detector.on('rejected', (topic, reason, detail) => {
      metrics.gossipRejected.inc({ topic, reason })
      log.debug('message rejected', { topic, reason, detail })
    })
    detector.on('incompatible', (nodeId, compat, member) => {
      log.warn('member speaks no protocol version this agent speaks', { node: member.name, id: nodeId, version: member.version, reason: compat.reason })
    })
    detector.on('clock-offset', (peer, offsetMs, over) => { this.clockWarnings.crossed(peer, offsetMs, over) })
    detector.on('suspected', (_target, by) => { metrics.suspicions.inc({ origin: by === this.id ? 'local' : 'remote' }) })
    // the advert says so at once (the detector's own advert field, unreached)
    detector.on('vouched', (target, by, why) => {
      if (why === 'silent' || why === 'lost') metrics.vouched.inc()
      else metrics.cutsFound.inc({ why })
      const name = (id: string): string => this.c.directory.nameOf(id) ?? id
      log.warn(vouchedText(why, name(target), name(by)), { node: name(target), through: name(by) })
    })
    detector.on('transition', t => {
      const name = t.member?.name ?? detector.members.get(t.nodeId)?.advert.name ?? t.nodeId
      if (t.nodeId !== this.id) log.info('member ' + t.to, { node: name, id: t.nodeId, from: t.from })
      // still on the grid's roll (a server down for long, or across a long partition): its
      // last addresses stay dialled, or the two sides would never find each other again;
      // until it is off the roll too (vgrid node forget), checked with the peer book's flush
      if (t.to === 'forgotten') {
        if (this.onRoll(t.nodeId)) this.dialedOffTable.add(t.nodeId)
        else this.dialer.forget(t.nodeId)
      }
      if (t.to === 'dead') void this.dropIfSilent(t.nodeId)
      this.peerBookDirty = true
    })
  }

  private advertBody (): AdvertBody {
    const { c } = this
    const reserved = c.advert.get('reserved')
    const free = freeOf(c.capacity, reserved, { stored: c.advert.get('diskStored'), room: c.advert.get('diskAvailable') })
    return {
      name: c.config.name,
      addrs: advertisedAddrs(this.addrs()),
      capacity: c.capacity,
      reserved,
      free,
      load: loadAverage(),
      version: VERSION,
      labels: c.config.labels,
      wireguard: c.advert.get('wireguard'),
      ...reasonField('overlayDown', c.advert.get('overlayDown')),
      ...reasonField('dataDiskFull', c.advert.get('dataDiskFull')),
      ...vmHostField(c.advert.get('vmHost')),
      ...(c.config.fenceTimeoutMs != null ? { fenceTimeoutMs: c.config.fenceTimeoutMs } : {}),
      ...(this.detector != null ? { silenceMs: this.detector.detection().silenceMs } : {}),
      // past the schema's bound it says none: takers then wait its silence timeout
      ...(this.detector != null && this.detector.livenessMs <= MAX_LIVENESS_MS ? { livenessMs: this.detector.livenessMs } : {}),
      // lets peers that missed a heads announcement notice they are behind
      stateHeads: c.advert.get('stateHeads').slice(0, 64)
    }
  }

  /** addresses change when interfaces do (a server moved networks): re-advertise */
  private checkAddrs (): void {
    const now = this.addrs().join()
    if (now === this.lastAddrs) return
    const current = new Set(now.split(','))
    const gone = this.lastAddrs.split(',').filter(a => a !== '' && !current.has(a))
    this.lastAddrs = now
    this.log.info('listen addresses changed', { addrs: now })
    this.detector.advertiseNow()
    // connections bound to a vanished address are dead, and the far side cannot
    // tell: start afresh, and the new connections carry the new advert at once
    if (gone.length > 0) for (const conn of this.c.host.getConnections()) void conn.close().catch(() => {})
  }

  private readonly advertIps = new Map<string, Set<string>>()

  /**
   * A member whose address vanished (it moved networks) closed its connections, but
   * from an address it no longer has: its FIN never reaches us, and our side stays
   * open, swallowing gossip for it until a keep-alive ping fails (30 s). Its new
   * advert says which addresses went: connections to those are closed now.
   */
  private dropVanished (id: string, addrs: string[]): void {
    const now = ipsOf(addrs)
    const gone = vanished(this.advertIps.get(id), now)
    this.advertIps.set(id, now)
    if (gone.size === 0 || id === this.id) return
    for (const conn of this.c.host.getConnections(peerIdFromString(id))) {
      const ip = conn.remoteAddr.toString().split('/')[2]
      if (ip !== undefined && gone.has(ip)) {
        this.log.info('closing a connection to an address the member no longer has', { node: this.c.directory.nameOf(id) ?? id, id, addr: conn.remoteAddr.toString() })
        void conn.close().catch(() => {})
      }
    }
  }

  /**
   * Connections to a dead member are likely stale (its address changed, the link is
   * gone): drop them, so that reconnecting is a fresh start that re-syncs. But only
   * if it does not answer a ping on them: a member declared dead while it was merely
   * slow (a stalled process) refutes in a moment, and hanging up on it everywhere made
   * it suspect its own watchers in turn, which on a saturated machine cascaded.
   */
  private async dropIfSilent (id: string): Promise<void> {
    const { host } = this.c
    const peer = peerIdFromString(id)
    if (host.getConnections(peer).length === 0) return
    const answered = await host.services.ping.ping(peer, { signal: AbortSignal.timeout(DEAD_PING_TIMEOUT_MS) }).then(() => true, () => false)
    // reset, not closed: what they queued for it during the cut must not go out late (reset-connections.ts)
    if (!answered && this.detector.members.get(id)?.state === 'dead') resetConnections(host, id, 'a dead member that does not answer a ping')
  }

  /** peers whose connections carry something ongoing: the dialer never trims these */
  private connectionsInUse (): Set<string> {
    const keep = new Set(this.detector.partners)
    // the mesh is not in GossipSub's public interface, but its implementation has it
    const pubsub = this.c.host.services.pubsub as GossipSub & { getMeshPeers?: (topic: string) => string[] }
    for (const topic of pubsub.getTopics()) for (const p of pubsub.getMeshPeers?.(topic) ?? []) keep.add(p)
    for (const p of this.c.busyPeers()) keep.add(p)
    return keep
  }

  private async flushPeerBook (): Promise<void> {
    if (!this.peerBookDirty) return
    this.peerBookDirty = false
    // members that left stay in the book: a whole grid restarted without mDNS finds itself through them
    await savePeerBook(this.c.config.dataDir, peerBookEntries(this.detector.members, this.id))
  }
}

/** Absent until the node runtime has probed (an advert without it is what older agents send). */
function vmHostField (h: VmHostAdvert | null): { vmHost?: VmHostAdvert } {
  return h == null ? {} : { vmHost: h }
}

/** the log line of a member found out of reach, by what found it (reach-watch.ts) */
export function vouchedText (why: ReachWhy, target: string, by: string): string {
  const found = {
    silent: `heartbeats from ${target} stopped here, but ${by} reaches it: not suspected`,
    lost: `every connection to ${target} stopped here, but ${by} reaches it: not suspected`,
    unanswered: `${target} stopped answering this server's heartbeats and does not answer its probes, but ${by} reaches it`,
    probed: `${target} does not answer this server's probes, but ${by} reaches it`,
    named: `${target} says it does not reach this server, and does not answer its probes, but ${by} reaches it`
  }[why]
  return `${found}; is the network between this server and ${target} cut?`
}

/** an advert field that says why (overlayDown, dataDiskFull): absent when there is nothing to say, cut to what its schema takes */
function reasonField<K extends string> (key: K, why: string | null): Partial<Record<K, string>> {
  return why == null ? {} : { [key]: why.slice(0, 512) } as Partial<Record<K, string>>
}
