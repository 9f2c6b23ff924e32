// The agent: one per server. It assembles the libp2p host and the services that run
// on it, owns their lifecycle (start in order, stop in reverse), and exposes the
// read-only views the API serves.
import type { GossipSub } from '@libp2p/gossipsub'
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { loadOrCreateIdentity } from '../protocol/identity.ts'
import { encodeToken, type ClusterKey } from '../protocol/cluster-key.ts'
import { MembershipService } from '../protocol/membership-service.ts'
import type { AdvertBody } from '../protocol/own-advert.ts'
import { Dialer } from '../protocol/dialer.ts'
import { countStates, type Member, type MemberCounts } from '../protocol/membership.ts'
import { poolOf, type Pool } from '../protocol/pool.ts'
import type { Resources } from '../protocol/advert.ts'
import type { AgentConfig } from './config.ts'
import { resolveCluster } from './cluster-key-store.ts'
import { detectCapacity, loadAverage, subtract, ZERO } from './resources.ts'
import { AgentMetrics } from './metrics.ts'
import { createLogger, type Logger } from './log.ts'
import { loadPeerBook, savePeerBook } from './peer-book.ts'
import { ApiServer } from './api/server.ts'
import { StateService } from './state/index.ts'
import { stateRoutes } from './api/state-routes.ts'
import { VERSION } from './version.ts'

/** a dead member that answers a ping within this keeps its connections (see dropIfSilent) */
const DEAD_PING_TIMEOUT_MS = 3000

export interface StatusView {
  node: { id: string, name: string, version: string, cluster: string, addrs: string[] }
  members: MemberCounts
  pool: Pool
}

export interface NodeView {
  id: string
  name: string
  state: Member['state']
  self: boolean
  since: string
  lastSeen: string
  addrs: string[]
  capacity: Resources
  reserved: Resources
  free: Resources
  load: number[]
  version: string
  labels: Record<string, string>
  wireguard: { publicKey: string, endpoint: string } | null
  incarnation: number
  seq: number
}

/** At most 32 addresses fit an advert: loopback ones go first when there are too many. */
export function advertisedAddrs (addrs: string[]): string[] {
  if (addrs.length <= 32) return addrs
  const routable = addrs.filter(a => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/'))
  return (routable.length > 0 ? routable : addrs).slice(0, 32)
}

export interface AgentEvents {
  started: []
  stopped: []
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly config: AgentConfig
  readonly log: Logger
  readonly metrics = new AgentMetrics()
  host!: VgridHost
  membership!: MembershipService
  /** the replicated cluster document */
  state!: StateService
  clusterKey!: ClusterKey
  private dialer!: Dialer
  private api?: ApiServer
  private capacity: Resources = ZERO
  private reserved: Resources = ZERO
  private lastAddrs = ''
  private addrTimer?: NodeJS.Timeout
  private peerBookTimer?: NodeJS.Timeout
  private peerBookDirty = false
  private running = false

  constructor (config: AgentConfig, opts: { logger?: Logger } = {}) {
    super()
    this.config = config
    this.log = opts.logger ?? createLogger({ component: config.name })
  }

  get id (): string { return this.host.peerId.toString() }
  get apiAddress (): { host: string, port: number } | undefined { return this.api?.address }

  async start (opts: { api?: boolean } = {}): Promise<void> {
    try {
      await this.startParts(opts)
    } catch (err) {
      // undo whatever did start, so a failed start leaves nothing running
      await this.teardown(false).catch(() => {})
      throw err
    }
  }

  private async startParts (opts: { api?: boolean }): Promise<void> {
    const cfg = this.config
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    const cluster = await resolveCluster(cfg.dataDir, { keyFile: cfg.keyFile, token: cfg.token })
    this.clusterKey = cluster.key
    const privateKey = await loadOrCreateIdentity(cfg.dataDir)
    this.capacity = await detectCapacity(cfg.dataDir, cfg.capacity)
    const join = [...new Set([...cfg.join, ...cluster.joinAddrs])]

    this.host = await createHost({
      privateKey,
      clusterKey: cluster.key,
      listen: cfg.listen,
      bootstrap: join,
      mdns: cfg.mdns,
      transport: cfg.transport,
      keyCheck: { onRejected: reason => this.metrics.connectionsRejected.inc({ reason }) },
      start: false
    })
    this.host.addEventListener('peer:discovery', evt => {
      this.log.debug('discovered', { peer: evt.detail.id.toString(), addrs: evt.detail.multiaddrs.map(m => m.toString()).join(',') })
    })
    this.host.addEventListener('connection:open', this.onConnectionsChanged)
    this.host.addEventListener('connection:close', this.onConnectionsChanged)
    // the dialer hears discoveries from the moment the host starts (mDNS answers come early)
    this.dialer = new Dialer({
      host: this.host,
      join,
      onUnreachable: peer => { this.membership.unreachable(peer) },
      keep: () => this.connectionsInUse(),
      onDialError: (target, err) => { this.log.debug('dial failed', { target, error: err.message }) }
    })
    await this.host.start()

    this.state = new StateService({
      host: this.host,
      dataDir: cfg.dataDir,
      clusterId: cluster.key.clusterId,
      log: this.log.child('state'),
      metrics: this.metrics,
      nameOf: id => this.membership?.members.get(id)?.advert.name,
      addrsOf: id => this.membership?.members.get(id)?.advert.addrs ?? []
    })
    await this.state.start()

    this.membership = new MembershipService({
      host: this.host,
      privateKey,
      clusterId: cluster.key.clusterId,
      body: () => this.advertBody(),
      config: cfg.membership,
      timing: cfg.timing
    })
    this.membership.on('advert', a => {
      this.metrics.advertsIn.inc()
      this.dialer.noteMember(a.nodeId, a.addrs)
      this.state.noteHeads(a.nodeId, a.stateHeads)
    })
    this.membership.on('sent', bytes => { this.metrics.advertsOut.inc(); this.metrics.membershipBytes.inc({ direction: 'out' }, bytes) })
    this.membership.on('received', bytes => { this.metrics.membershipBytes.inc({ direction: 'in' }, bytes) })
    this.membership.on('rejected', (topic, reason, detail) => {
      this.metrics.gossipRejected.inc({ topic, reason })
      this.log.debug('message rejected', { topic, reason, detail })
    })
    this.membership.on('suspected', (target, by) => { this.metrics.suspicions.inc({ origin: by === this.id ? 'local' : 'remote' }) })
    this.membership.on('transition', t => {
      this.updateMemberGauge()
      const name = t.member?.name ?? this.membership.members.get(t.nodeId)?.advert.name ?? t.nodeId
      if (t.nodeId !== this.id) this.log.info('member ' + t.to, { node: name, id: t.nodeId, from: t.from })
      if (t.to === 'forgotten') this.dialer.forget(t.nodeId)
      if (t.to === 'dead') void this.dropIfSilent(t.nodeId)
      this.peerBookDirty = true
    })

    for (const p of await loadPeerBook(cfg.dataDir, this.log)) this.dialer.noteMember(p.id, p.addrs)

    await this.membership.start()
    this.dialer.start()
    this.lastAddrs = this.addrs().join()
    // addresses change when interfaces do (a server moved networks): re-advertise
    this.addrTimer = setInterval(() => {
      const now = this.addrs().join()
      if (now !== this.lastAddrs) {
        const current = new Set(now.split(','))
        const gone = this.lastAddrs.split(',').filter(a => a !== '' && !current.has(a))
        this.lastAddrs = now
        this.log.info('listen addresses changed', { addrs: now })
        this.membership.advertiseNow()
        // connections bound to a vanished address are dead, and the far side cannot
        // tell: start afresh, and the new connections carry the new advert at once
        if (gone.length > 0) for (const c of this.host.getConnections()) void c.close().catch(() => {})
      }
    }, 1000)
    this.peerBookTimer = setInterval(() => {
      this.flushPeerBook().catch((err: unknown) => this.log.warn('could not save the peer book', { error: (err as Error).message }))
    }, 2000)

    if (opts.api !== false) {
      this.api = new ApiServer({ agent: this, metrics: this.metrics, log: this.log.child('api'), routes: [stateRoutes] })
      await this.api.start(cfg.api)
    }
    this.running = true
    this.log.info('agent started', {
      id: this.id,
      cluster: cluster.key.clusterId,
      listen: this.addrs().join(','),
      api: this.api == null ? 'off' : `${this.api.address.host}:${this.api.address.port}`
    })
    if (cluster.created) {
      this.log.info('started a new grid; join other servers with: vgrid agent --token ' + this.token())
    }
    this.emit('started')
  }

  /**
   * Graceful stop announces "leaving" so peers mark this node left, not dead.
   * `graceful: false` stops without a word, as a crash would (benchmarks, tests).
   */
  async stop (opts: { graceful?: boolean } = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    await this.teardown(opts.graceful !== false)
    this.log.info('agent stopped')
    this.emit('stopped')
  }

  /** Stops every part that exists, in reverse order of start (also after a failed start). */
  private async teardown (graceful: boolean): Promise<void> {
    clearInterval(this.addrTimer)
    clearInterval(this.peerBookTimer)
    await this.api?.stop()
    this.dialer?.stop()
    await this.membership?.stop({ graceful })
    // give the last advert a moment to leave the socket before connections close
    if (graceful) await new Promise(resolve => setTimeout(resolve, 150))
    if (this.membership != null) await this.flushPeerBook().catch(() => {})
    await this.state?.stop()
    await this.host?.stop()
  }

  addrs (): string[] {
    return this.host.getMultiaddrs().map(m => m.toString())
  }

  /** Reserved resources come from the leases this node holds (none until VMs exist). */
  setReserved (r: Resources): void {
    this.reserved = r
    this.membership.advertiseNow()
  }

  private advertBody (): AdvertBody {
    return {
      name: this.config.name,
      addrs: advertisedAddrs(this.addrs()),
      capacity: this.capacity,
      reserved: this.reserved,
      free: subtract(this.capacity, this.reserved),
      load: loadAverage(),
      version: VERSION,
      labels: this.config.labels,
      wireguard: null,
      // lets peers that missed a heads announcement notice they are behind
      stateHeads: this.state.heads().slice(0, 64)
    }
  }

  /** A join token: the cluster key plus this node's and a few alive members' addresses. */
  token (): string {
    const routable = (a: string): boolean => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/')
    const mine = this.addrs()
    const others = [...this.membership.members.values()]
      .filter(m => m.state === 'alive' && m.nodeId !== this.id)
      .flatMap(m => m.advert.addrs.slice(0, 1))
    const all = [...mine, ...others]
    const good = all.filter(routable)
    return encodeToken(this.clusterKey, (good.length > 0 ? good : all).slice(0, 6))
  }

  status (): StatusView {
    return {
      node: { id: this.id, name: this.config.name, version: VERSION, cluster: this.clusterKey.clusterId, addrs: this.addrs() },
      members: countStates(this.membership.members),
      pool: poolOf(this.membership.members)
    }
  }

  nodes (): NodeView[] {
    return [...this.membership.members.values()].map(m => this.nodeView(m)).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** By peer id or by name. */
  node (idOrName: string): NodeView | undefined {
    const m = this.membership.members.get(idOrName) ??
      [...this.membership.members.values()].find(x => x.advert.name === idOrName)
    return m == null ? undefined : this.nodeView(m)
  }

  private nodeView (m: Member): NodeView {
    const a = m.advert
    return {
      id: m.nodeId,
      name: a.name,
      state: m.state,
      self: m.nodeId === this.id,
      since: new Date(m.since).toISOString(),
      lastSeen: new Date(m.lastSeen).toISOString(),
      addrs: a.addrs,
      capacity: a.capacity,
      reserved: a.reserved,
      free: a.free,
      load: a.load,
      version: a.version,
      // operator labels from the cluster document win over the node's own (--label)
      labels: { ...a.labels, ...this.state.labelsOf(m.nodeId) },
      wireguard: a.wireguard,
      incarnation: a.incarnation,
      seq: a.seq
    }
  }

  private readonly onConnectionsChanged = (): void => {
    this.metrics.connectedPeers.set(new Set(this.host.getConnections().map(c => c.remotePeer.toString())).size)
  }

  /**
   * Connections to a dead member are likely stale (its address changed, the link is
   * gone): drop them, so that reconnecting is a fresh start that re-syncs. But only
   * if it does not answer a ping on them: a member declared dead while it was merely
   * slow (a stalled process) refutes in a moment, and hanging up on it everywhere made
   * it suspect its own watchers in turn, which on a saturated machine cascaded.
   */
  private async dropIfSilent (id: string): Promise<void> {
    const peer = peerIdFromString(id)
    if (this.host.getConnections(peer).length === 0) return
    const answered = await this.host.services.ping.ping(peer, { signal: AbortSignal.timeout(DEAD_PING_TIMEOUT_MS) }).then(() => true, () => false)
    if (!answered && this.membership.members.get(id)?.state === 'dead') await this.host.hangUp(peer).catch(() => {})
  }

  /** peers whose connections carry something ongoing: the dialer never trims these */
  private connectionsInUse (): Set<string> {
    const keep = this.membership?.partners ?? new Set<string>()
    // the mesh is not in GossipSub's public interface, but its implementation has it
    const pubsub = this.host.services.pubsub as GossipSub & { getMeshPeers?: (topic: string) => string[] }
    for (const topic of pubsub.getTopics()) for (const p of pubsub.getMeshPeers?.(topic) ?? []) keep.add(p)
    for (const p of this.state?.sessionPeers ?? []) keep.add(p)
    return keep
  }

  private updateMemberGauge (): void {
    const c = countStates(this.membership.members)
    for (const [state, n] of Object.entries(c)) this.metrics.members.set({ state }, n)
  }

  private async flushPeerBook (): Promise<void> {
    if (!this.peerBookDirty) return
    this.peerBookDirty = false
    const peers = [...this.membership.members.values()]
      .filter(m => m.nodeId !== this.id && m.state !== 'left')
      .map(m => ({ id: m.nodeId, addrs: m.advert.addrs }))
    await savePeerBook(this.config.dataDir, peers)
  }
}
