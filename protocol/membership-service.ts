// The membership component: hears the others' adverts, keeps heartbeats with its
// neighbours, turns their silence into gossiped suspicions (and unrefuted ones into
// death reports), has its own advert (own-advert.ts) refute suspicions about itself,
// and drives the pure state machine in membership.ts with the real clock: the
// monotonic one (mono-clock.ts), so that a step of the wall clock neither makes every
// member's silence long at once nor delays its end. Members' since and lastSeen are
// therefore monotonic readings (ms on the epoch scale), for this process only.
import { EventEmitter } from 'node:events'
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { decodeAdvert, decodeRelayedAdvert, type Advert, type AdvertRejection } from './advert.ts'
import { OwnAdvert, refreshFor, type AdvertBody } from './own-advert.ts'
import { decodeSuspicion, encodeSuspicion } from './suspicion.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import {
  onAdvert, onHeartbeat, onSuspect, onDeathReport, onTick, compareVersions, DEFAULT_MEMBERSHIP,
  type Member, type MemberTable, type MembershipConfig, type Step, type Transition, type Version
} from './membership.ts'
import { Heartbeats, type ClockOffset } from './heartbeat.ts'
import { encodeTable, LivenessTable } from './liveness.ts'
import { monoNow } from './mono-clock.ts'
import type { Registry } from 'prom-client'
import { MemberSync, syncPartner } from './member-sync.ts'
import { CompatReports, protocolCompat, type Compat } from './compat.ts'
import { advertTopic, heartbeatProtocol, memberSyncProtocol, suspicionTopic } from './topics.ts'
import { ReachWatch, type OutOfReach, type ReachWhy } from './reach-watch.ts'

export type { OutOfReach, ReachWhy } from './reach-watch.ts'

export interface MembershipTiming {
  /** re-publish the advert at least this often even if nothing changed (see refreshFor) */
  advertRefreshMs: number
  heartbeatIntervalMs: number
  /** peers that receive this node's heartbeats and raise the alarm if they stop */
  watchers: number
  tickMs: number
  /** push-pull member sync with one random neighbour this often (anti-entropy) */
  syncIntervalMs: number
}

export const DEFAULT_TIMING: MembershipTiming = { advertRefreshMs: 10_000, heartbeatIntervalMs: 500, watchers: 4, tickMs: 250, syncIntervalMs: 30_000 }

/** how long after a member was doubted we still ask it directly, and how often */
const RECHECK_DOUBTED_MS = 60_000
const DOUBT_SYNC_MS = 3_000
const isDoubted = (m: Member): boolean => m.state === 'suspect' || m.state === 'dead'
/** a heartbeat that brings no news updates lastSeen at most this often (a volume store counting a dead member's silence from it adds this: node/gvs/silent-since.ts) */
export const LAST_SEEN_GRAIN_MS = 5_000
/** The silence timeout follows the refresh period (see refreshFor), so that two lost refreshes never suspect anyone. */
export function silenceFor (members: number, cfg: MembershipConfig, baseRefresh: number): number {
  return Math.max(cfg.silenceAfterMs, 3 * refreshFor(members, baseRefresh))
}

/**
 * The liveness window (protocol/liveness.ts): a member is in sight while it is known
 * alive within it. News of a member one hop away is at most about two heartbeat
 * intervals old (a beat's echo waits for the neighbour's next tick, then the next table),
 * and each further hop adds about two more. With about 8 heartbeat partners a node, a
 * majority of `members` is within ceil(log8 members) hops: the window allows that many
 * and one more, on top of the suspicion timeout, as a direct watcher allows a missed
 * beat or two (3.5 s up to 8 members, 4.5 s up to 64, 5.5 s up to 512, by default; rv25:
 * with loops lagging, 3.5 s was too little for 50 or 200).
 */
export function livenessWindowMs (c: Pick<MembershipConfig, 'suspectAfterMs'>, heartbeatIntervalMs: number, members = 1): number {
  const hops = Math.max(1, Math.ceil(Math.log(Math.max(2, members)) / Math.log(8)))
  return c.suspectAfterMs + heartbeatIntervalMs * (2 + 2 * hops)
}

/** the advert's `unreached`: the members this node does not reach though others do, sorted, at most 64 */
function unreachedField (reach: ReadonlyMap<string, unknown>): { unreached?: string[] } {
  const ids = [...reach.keys()].sort().slice(0, 64)
  return ids.length === 0 ? {} : { unreached: ids }
}

export interface MembershipServiceInit {
  host: Libp2p<{ pubsub: GossipSub }>
  /** the node's identity key, which signs its adverts */
  privateKey: PrivateKey
  clusterId: string
  body: () => AdvertBody
  config?: Partial<MembershipConfig>
  timing?: Partial<MembershipTiming>
  /** where the heartbeats' clock-offset metrics go (none without it) */
  registry?: Registry
  /** this run's advert incarnation (see OwnAdvertInit.incarnation); default: the wall clock now */
  incarnation?: number
}

export interface MembershipEvents {
  transition: [Transition & { member?: Advert }]
  advert: [Advert]
  rejected: [topic: 'adverts' | 'suspicions' | 'heartbeats' | 'member-sync', reason: AdvertRejection, detail: string]
  sent: [bytes: number]
  received: [bytes: number]
  suspected: [target: string, by: string, why: 'silent' | 'lost' | 'unreachable' | 'gossip']
  /**
   * a neighbour's heartbeats stopped here (or its connections dropped), or a member did
   * not answer this node's probes (reach-watch.ts: `unanswered`, `probed`, `named`),
   * but another member reached it: out of reach here, not suspected (a partial
   * partition between this node and it?)
   */
  vouched: [target: string, by: string, why: ReachWhy]
  /** a member speaks no protocol version this node speaks (once per member, see compat.ts) */
  incompatible: [nodeId: string, compat: Compat, member: Advert]
  /** a neighbour's clock crossed the offset bound, one way or the other (heartbeat.ts) */
  'clock-offset': [peer: string, offsetMs: number, over: boolean]
}

export class MembershipService extends EventEmitter<MembershipEvents> {
  readonly config: MembershipConfig
  readonly timing: MembershipTiming
  readonly nodeId: string
  private readonly init: MembershipServiceInit
  private readonly topics: { adverts: string, suspicions: string }
  private readonly heartbeats: Heartbeats
  private readonly sync: MemberSync
  /** silent neighbours that another member still reaches (a partial partition) */
  private readonly reach: ReachWatch
  /** adverts decoded by the topic validator, handed to the message handler */
  private readonly validated = new WeakMap<Message, Advert>()
  /** when we last pulled adverts from a neighbour whose heartbeat was ahead */
  private readonly fetched = new Map<string, number>()
  private readonly own: OwnAdvert
  private table: MemberTable = new Map()
  /** the silence timeout in force at the last tick (re-advertised when it changes) */
  private silenceSaid: number | null = null
  /** the liveness window at the last tick (re-advertised when it changes) */
  private windowSaid: number | null = null
  private timers: NodeJS.Timeout[] = []
  private syncTimer?: NodeJS.Timeout
  /** members whose current suspicion we raised ourselves: we report their death */
  private readonly raised = new Set<string>()
  private readonly compat = new CompatReports()
  private running = false
  /** the members known alive lately, first- or second-hand, and this node's own beats (protocol/liveness.ts) */
  private readonly liveness: LivenessTable
  /** this tick's table frame, encoded once for every peer */
  private tableFrame?: Uint8Array
  /** when this run first knew each member to keep liveness tables (inSight) */
  private readonly tablesSince = new Map<string, number>()

  constructor (init: MembershipServiceInit) {
    super()
    this.init = init
    this.nodeId = init.host.peerId.toString()
    this.config = { ...DEFAULT_MEMBERSHIP, ...init.config }
    this.timing = { ...DEFAULT_TIMING, ...init.timing }
    this.topics = { adverts: advertTopic(init.clusterId), suspicions: suspicionTopic(init.clusterId) }
    this.own = new OwnAdvert({
      pubsub: init.host.services.pubsub,
      topic: this.topics.adverts,
      privateKey: init.privateKey,
      clusterId: init.clusterId,
      nodeId: this.nodeId,
      // the members this node does not reach though others do go with every advert: placement
      // reads them, and a member named there checks whether it reaches this node (reach-watch.ts)
      body: () => ({ ...init.body(), ...unreachedField(this.reach.outOfReach()) }),
      refreshMs: this.timing.advertRefreshMs,
      members: () => this.table.size,
      onSigned: advert => { this.apply(onAdvert(this.table, advert, monoNow()), advert) },
      onSent: bytes => { this.emit('sent', bytes) },
      incarnation: init.incarnation
    })
    this.liveness = new LivenessTable(this.nodeId, this.own.version.incarnation)
    this.heartbeats = new Heartbeats({
      host: init.host,
      protocol: heartbeatProtocol(init.clusterId),
      intervalMs: this.timing.heartbeatIntervalMs,
      timeoutMs: this.config.suspectAfterMs,
      watchers: this.timing.watchers,
      version: () => this.version,
      onBeat: (peer, v) => { this.onBeat(peer, v) },
      onSilent: peer => { void this.reach.silent(peer, 'silent') },
      onLost: peer => { void this.reach.silent(peer, 'lost') },
      onGarbage: peer => { this.emit('rejected', 'heartbeats', 'malformed', peer) },
      // the frame with a clock is protocol 2: an older agent would drop the stream
      sendClockTo: peer => (this.compatOf(peer)?.speak ?? 1) >= 2,
      onClockOffset: (peer, offsetMs, over) => { this.emit('clock-offset', peer, offsetMs, over) },
      registry: init.registry,
      onTickStart: () => {
        this.liveness.beat(monoNow())
        this.tableFrame = undefined
        for (const id of this.table.keys()) this.noteTables(id)
      },
      // liveness tables are protocol 3: an older agent would drop the stream
      tableFor: peer => this.keepsTables(peer) ? (this.tableFrame ??= encodeTable(this.liveness.toSend(monoNow(), id => this.windowOf(id)))) : null,
      onTable: (_peer, entries) => { this.liveness.merge(entries, this.table.keys(), monoNow()) },
      prefer: peer => this.keepsTables(peer),
      onUnanswered: peer => { void this.reach.check(peer, 'unanswered') }
    })
    this.reach = new ReachWatch({
      host: init.host,
      clusterId: init.clusterId,
      nodeId: this.nodeId,
      suspectAfterMs: this.config.suspectAfterMs,
      members: () => this.table,
      sighted: peer => { this.sighted(peer) },
      suspect: (peer, why) => { this.suspect(peer, why) },
      vouched: (peer, by, why) => {
        // said at once (placement keeps VMs with connections or disks off a node cut off from some member)
        this.advertiseNow()
        this.emit('vouched', peer, by, why)
      },
      partners: () => this.heartbeats.partners,
      // others reach it: dated news in some table (an older member, with no table, by its state)
      seen: peer => !this.keepsTables(peer) || this.liveness.fresh(peer, monoNow(), this.windowOf(peer)),
      addressesOf: peer => this.table.get(peer)?.advert.addrs ?? [],
      // a node late on its own loop finds fresh connections slow everywhere: no sweep then
      stalled: () => this.heartbeats.inStall()
    })
    this.sync = new MemberSync({
      host: init.host,
      protocol: memberSyncProtocol(init.clusterId),
      adverts: () => [...this.table.values()].filter(m => m.state === 'alive').map(m => m.advert),
      doubted: () => [...this.table.values()].filter(isDoubted).map(m => ({ nodeId: m.nodeId, ...(m.suspectedVersion ?? m.version) })),
      onAdverts: (raw, from) => { void this.applyRelayed(raw, from) },
      onDoubted: async v => { await this.own.refuteNow(v) },
      onError: (peer, err) => { this.emit('rejected', 'member-sync', 'malformed', `${peer}: ${err.message}`) }
    })
  }

  get members (): MemberTable { return this.table }
  /** heartbeat partners: peers whose connections carry this node's failure detection */
  get partners (): Set<string> { return this.heartbeats.partners }
  get version (): Version { return this.own.version }
  /** Whether this node can work with a member (its advert's protocol versions against ours); for /v1/nodes. */
  /** measured clock offsets of the neighbours this node watches or is watched by (ms, theirs minus ours) */
  clockOffsets (): ReadonlyMap<string, ClockOffset> { return this.heartbeats.clockOffsets() }

  compatOf (nodeId: string): Compat | undefined {
    const m = this.table.get(nodeId)
    return m == null ? undefined : protocolCompat(m.advert)
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    const { pubsub } = this.init.host.services
    pubsub.topicValidators.set(this.topics.adverts, this.validateAdvert)
    pubsub.topicValidators.set(this.topics.suspicions, this.validateSuspicion)
    pubsub.addEventListener('message', this.onMessage)
    pubsub.addEventListener('subscription-change', this.onNewTopicPeer)
    pubsub.subscribe(this.topics.adverts)
    pubsub.subscribe(this.topics.suspicions)
    await this.heartbeats.start()
    await this.reach.start()
    await this.sync.start()
    this.own.start()
    this.timers = [setInterval(() => { this.tick() }, this.timing.tickMs)]
    this.scheduleSync()
  }

  /**
   * Anti-entropy: every sync interval (±25 %) a push-pull digest exchange with one
   * random connected member, so an advert change that gossip lost reaches everyone
   * within a few intervals instead of waiting for a refresh. A digest is about 60
   * bytes per member; only newer adverts travel. While members we doubted in the
   * last minute are still suspect or dead, every few seconds one of them is asked
   * directly (dialled if need be): if it is alive after all, it sees the doubt in our
   * digest and the same exchange brings its refutation (a grid starting at once,
   * whose first heartbeats were late, heals in seconds). A node that knows no member
   * but itself (its first exchange failed) asks as often.
   */
  private scheduleSync (): void {
    const now = monoNow()
    const doubted = [...this.table.values()].filter(m => isDoubted(m) && now - m.since < RECHECK_DOUBTED_MS)
    const lonely = this.table.size <= 1
    const base = doubted.length > 0 || lonely ? Math.min(this.timing.syncIntervalMs, DOUBT_SYNC_MS) : this.timing.syncIntervalMs
    this.syncTimer = setTimeout(() => {
      if (!this.running) return
      if (doubted.length > 0) {
        void this.askDoubted(doubted[Math.floor(Math.random() * doubted.length)]!)
      } else {
        const peer = syncPartner(this.table, this.init.host.getConnections().map(c => c.remotePeer.toString()), Math.random())
        if (peer != null) void this.sync.exchange(peerIdFromString(peer))
      }
      this.scheduleSync()
    }, base * (0.75 + Math.random() * 0.5))
  }

  /** A member sync with a doubted member, at the addresses of its last advert (we hung up on it). */
  private async askDoubted (m: Member): Promise<void> {
    const peer = peerIdFromString(m.nodeId)
    const addrs: Multiaddr[] = []
    for (const a of m.advert.addrs) {
      try { addrs.push(multiaddr(a)) } catch { /* checked when the advert came in */ }
    }
    await this.init.host.peerStore.merge(peer, { multiaddrs: addrs }).catch(() => {})
    await this.sync.exchange(peer)
  }

  /** Graceful stop announces "leaving", so peers mark this node left, not dead. */
  async stop (opts: { graceful?: boolean } = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    for (const t of this.timers) clearInterval(t)
    clearTimeout(this.syncTimer)
    await this.own.stop(opts)
    // the reach watch first: streams the heartbeats close as they stop are no cut to check
    await this.reach.stop()
    await this.heartbeats.stop()
    await this.sync.stop()
    const { pubsub } = this.init.host.services
    pubsub.removeEventListener('message', this.onMessage)
    pubsub.removeEventListener('subscription-change', this.onNewTopicPeer)
    pubsub.topicValidators.delete(this.topics.adverts)
    pubsub.topicValidators.delete(this.topics.suspicions)
  }

  /**
   * The clock: suspects die, the silent are suspected. A death that ends a suspicion
   * we raised is gossiped, so that every node marks it dead now rather than when its
   * own countdown ends (it began when the suspicion reached it, late on a busy node).
   * Only the few nodes that raised the suspicion report, so a death costs a handful
   * of messages, not one per node.
   */
  private tick (): void {
    const cfg = { ...this.config, silenceAfterMs: silenceFor(this.table.size, this.config, this.timing.advertRefreshMs) }
    // the advert says the silence timeout in force (takers wait for it): said again as it changes
    if (this.silenceSaid != null && this.silenceSaid !== cfg.silenceAfterMs) this.advertiseNow()
    this.silenceSaid = cfg.silenceAfterMs
    if (this.windowSaid != null && this.windowSaid !== this.livenessMs) this.advertiseNow()
    this.windowSaid = this.livenessMs
    const step = onTick(this.table, monoNow(), cfg, this.nodeId)
    if (step.transitions.some(t => t.to === 'forgotten')) {
      this.liveness.retain(new Set(step.table.keys()))
      for (const id of this.tablesSince.keys()) if (!step.table.has(id)) this.tablesSince.delete(id)
    }
    const deaths = step.transitions.filter(t => t.to === 'dead' && this.raised.has(t.nodeId)).map(t => step.table.get(t.nodeId)!)
    this.apply(step)
    for (const m of deaths) this.gossipDoubt(m.nodeId, m.suspectedVersion ?? m.version, 'dead')
  }

  /**
   * How this node finds a member silent: heartbeats from the members that picked it as
   * one of their `watchers`, and for the others the silence timeout in force now (it
   * grows with the grid: silenceFor). The fence's takeover wait reads it (fence.ts
   * holderNoticeMs).
   */
  detection (): { watchers: number, silenceMs: number, agents: number, livenessMs: number } {
    // the agents that may have been watchers of a holder now dead: every one not gone for
    // good (the dead too: those cut off with the holder are dead here), this node too
    let agents = this.table.has(this.nodeId) ? 0 : 1
    for (const m of this.table.values()) if (m.state !== 'left') agents++
    return { watchers: this.timing.watchers, silenceMs: silenceFor(this.table.size, this.config, this.timing.advertRefreshMs), agents, livenessMs: this.livenessMs }
  }

  /** the liveness window this node runs with now (livenessWindowMs, for the members it knows) */
  get livenessMs (): number { return Math.ceil(livenessWindowMs(this.config, this.timing.heartbeatIntervalMs, this.table.size)) }

  /** This node's monotonic time by which the member is known alive through the liveness tables (a lower bound), if ever. */
  aliveAt (id: string): number | undefined { return this.liveness.aliveAt(id) }

  /** whether a member speaks protocol 3, and so sends and takes liveness tables (an older one drops a stream with one) */
  private keepsTables (id: string): boolean { return (this.compatOf(id)?.speak ?? 1) >= 3 }

  /** the window a member is judged by: the longer of this node's and its own (a member set to beat slower advertises a longer one) */
  private windowOf (id: string): number {
    const theirs = this.table.get(id)?.advert.livenessMs
    return theirs != null && theirs > this.livenessMs ? theirs : this.livenessMs
  }

  /**
   * Whether a member is in sight by the liveness table: known alive, first- or
   * second-hand, within the window (windowOf). A member of an older release (protocol
   * < 3) sends no table: true, and only its state in the member table counts (the
   * fence counts by this only where every roll member advertises a window: Fencing).
   */
  inSight (id: string): boolean {
    if (id === this.nodeId || !this.keepsTables(id)) return true
    const now = monoNow()
    if (this.liveness.fresh(id, now, this.windowOf(id))) return true
    // not dated yet: in sight for one window from when its tables could first come (a
    // table needs a beat's round trip to be dated; at a start every member was out of
    // sight for a moment, and a restart grace or a create found no majority). Cut off
    // before that, this node loses sight of it within a window of the cut all the same
    const since = this.noteTables(id)
    return this.liveness.aliveAt(id) == null && now - since < this.windowOf(id)
  }

  /** when this run first knew the member to keep tables (this run's start at the earliest) */
  private noteTables (id: string): number {
    let at = this.tablesSince.get(id)
    if (at == null && this.keepsTables(id)) this.tablesSince.set(id, at = monoNow())
    return at ?? monoNow()
  }

  /** Something in our advert changed: publish it once the current burst of work is done. */
  advertiseNow (): void { this.own.advertiseNow() }

  /** Members this node does not reach directly while others do (vouched for), by id. */
  outOfReach (): ReadonlyMap<string, OutOfReach> { return this.reach.outOfReach() }

  /** Another member reached `peer` for us: as good a sign of life as a heartbeat at its version. */
  private sighted (peer: string): void {
    const m = this.table.get(peer)
    if (m?.state === 'alive') this.apply(onHeartbeat(this.table, peer, m.version, monoNow(), Math.min(LAST_SEEN_GRAIN_MS, this.config.silenceAfterMs / 4)))
  }

  private onBeat (peer: string, v: Version): void {
    this.reach.clear(peer)
    const m = this.table.get(peer)
    // lastSeen only feeds the silence timeout: a quarter of it (at most 5 s) is fresh enough
    this.apply(onHeartbeat(this.table, peer, v, monoNow(), Math.min(LAST_SEEN_GRAIN_MS, this.config.silenceAfterMs / 4)))
    // the neighbour is ahead of the advert we hold (one published while we could not
    // hear it, e.g. its new address): fetch it straight from the neighbour
    if (m != null && compareVersions(v, m.advert) > 0 && monoNow() - (this.fetched.get(peer) ?? 0) > 2000) {
      this.fetched.set(peer, monoNow())
      void this.sync.exchange(peerIdFromString(peer))
    }
  }

  /** A member we could not dial (and have no connection to) is as good as silent. */
  unreachable (peer: string): void { this.suspect(peer, 'unreachable') }

  /** Our own suspicion of a member: apply it here and tell everyone. */
  private suspect (peer: string, why: 'silent' | 'lost' | 'unreachable'): void {
    const m = this.table.get(peer)
    if (!this.running || m == null || m.state !== 'alive') return
    this.apply(onSuspect(this.table, peer, m.version, monoNow()))
    this.raised.add(peer)
    this.emit('suspected', peer, this.nodeId, why)
    this.gossipDoubt(peer, m.version, 'suspect')
  }

  private gossipDoubt (target: string, v: Version, kind: 'suspect' | 'dead'): void {
    const data = encodeSuspicion({
      v: 1, cluster: this.init.clusterId, from: this.nodeId, target, incarnation: v.incarnation, seq: v.seq, ...(kind === 'dead' ? { kind } : {})
    })
    this.init.host.services.pubsub.publish(this.topics.suspicions, data).then(
      () => { this.emit('sent', data.byteLength) }, () => {})
  }

  private readonly validateAdvert = async (_peer: unknown, msg: Message): Promise<TopicValidatorResult> => {
    if (msg.type !== 'signed') return this.reject('adverts', 'forged', 'unsigned message')
    const res = await decodeAdvert(msg.data, msg.from.toString(), this.init.clusterId)
    if (!res.ok) return this.reject('adverts', res.reason, res.detail)
    this.validated.set(msg, res.advert)
    return TopicValidatorResult.Accept
  }

  /** Adverts relayed by member sync: each is checked on its own signature. */
  private async applyRelayed (raw: Uint8Array[], from: string): Promise<void> {
    for (const data of raw) {
      const res = await decodeRelayedAdvert(data, this.init.clusterId, a => {
        const held = this.table.get(a.nodeId)
        return held == null || compareVersions(a, held.advert) > 0
      })
      if (res == null) continue
      if (!res.ok) {
        this.emit('rejected', 'member-sync', res.reason, `${from}: ${res.detail}`)
        continue
      }
      if (res.advert.nodeId === this.nodeId) continue
      this.applyAdvert(res.advert)
    }
  }

  private readonly validateSuspicion = (_peer: unknown, msg: Message): TopicValidatorResult => {
    if (msg.type !== 'signed') return this.reject('suspicions', 'forged', 'unsigned message')
    const res = decodeSuspicion(msg.data, msg.from.toString(), this.init.clusterId)
    return res.ok ? TopicValidatorResult.Accept : this.reject('suspicions', res.reason, res.detail)
  }

  private reject (topic: 'adverts' | 'suspicions', reason: AdvertRejection, detail: string): TopicValidatorResult {
    this.emit('rejected', topic, reason, detail)
    return TopicValidatorResult.Reject
  }

  private readonly onMessage = (evt: CustomEvent<Message>): void => {
    const msg = evt.detail
    if (msg.type !== 'signed') return
    const now = monoNow()
    if (msg.topic === this.topics.adverts) {
      const advert = this.validated.get(msg)
      if (advert == null) return
      this.emit('received', msg.data.byteLength)
      this.applyAdvert(advert, now)
    } else if (msg.topic === this.topics.suspicions) {
      const res = decodeSuspicion(msg.data, msg.from.toString(), this.init.clusterId)
      if (!res.ok) return
      this.emit('received', msg.data.byteLength)
      const s = res.suspicion
      if (s.target === this.nodeId) {
        this.own.refute(s)
        return
      }
      if (s.kind === 'dead') {
        this.apply(onDeathReport(this.table, s.target, s, now))
      } else {
        this.emit('suspected', s.target, s.from, 'gossip')
        this.apply(onSuspect(this.table, s.target, s, now))
      }
    }
  }

  private readonly onNewTopicPeer = (): void => { this.own.onNewTopicPeer() }

  /** An advert that passed every check; 'advert' fires only if it was news. */
  private applyAdvert (advert: Advert, now = monoNow()): void {
    const step = onAdvert(this.table, advert, now)
    if (step.table === this.table) return
    this.apply(step, advert)
    this.checkProtocol(advert)
    this.emit('advert', advert)
    // it says it does not reach this node: does this node reach it? (a cut one side found shows on both)
    if (advert.unreached?.includes(this.nodeId) === true) void this.reach.check(advert.nodeId, 'named')
  }

  /**
   * A member we share no protocol version with stays in the table (its advert is
   * valid and it is alive), but the operator must hear of it: an event once per
   * member, which the agent logs.
   */
  private checkProtocol (advert: Advert): void {
    const { compat, report } = this.compat.note(advert.nodeId, advert)
    if (report) this.emit('incompatible', advert.nodeId, compat, advert)
  }

  private apply (step: Step, member?: Advert): void {
    this.table = step.table
    for (const t of step.transitions) {
      if (t.to === 'forgotten') { this.fetched.delete(t.nodeId); this.compat.forget(t.nodeId) }
      if (t.to !== 'suspect') this.raised.delete(t.nodeId)
      if (t.to !== 'alive') this.reach.clear(t.nodeId)
      this.emit('transition', { ...t, member })
      // someone came back (a healed partition, a restart): they may think we are
      // dead too, so tell them we are not
      if (t.to === 'alive' && t.from === 'dead' && t.nodeId !== this.nodeId) this.own.advertiseNow()
    }
  }
}
