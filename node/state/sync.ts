// The state sync protocol: long-lived libp2p streams ("sessions") carrying Automerge
// sync messages as length-prefixed frames (1 type byte + message); both ends run the
// Automerge sync protocol over them. A change goes out on every session as soon as it
// is made and travels on through the receivers' own sessions.
//
// Each agent opens sessions to at most `syncPeers` (4) connected peers, those with the
// lowest pair score (overlay.ts), and accepts the sessions others open: the union is a
// well-connected overlay whose cost per change grows linearly with the grid, where
// syncing every connection grows with its square. Heads heard on gossip that no session
// delivers are pulled directly. Of a pair that picked each other the smaller id opens
// at once and the larger after a grace period; if both did, both keep the smaller's.
// A peer whose frame is oversized or malformed, or whose changes fail the schema,
// is disconnected and its sessions refused for a while (quarantine).
//
// This file is which sessions exist (picks, opening, closing, quarantine, pulls); what
// one session does on its stream is sync-session.ts.
import { EventEmitter } from 'node:events'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Replica } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'
import { PeerTable, type PeerStatus } from './peers.ts'
import { pairScore, pickPeers, DEFAULT_SYNC_PEERS } from './overlay.ts'
import { SyncSession, DEFAULT_COALESCE_MS, type SessionOwner, type SyncRejectReason } from './sync-session.ts'

export const STATE_SYNC_PROTOCOL = '/vgrid/state/sync/1.0.0'
/** a whole document travels in one message to a fresh peer: leave room */
export const DEFAULT_MAX_SYNC_MESSAGE_BYTES = 32 * 1024 * 1024
/** peers whose last announced heads are kept */
const MAX_ANNOUNCED = 16_384

export interface SyncEvents {
  changed: [peer: string, changes: number]
  rejected: [peer: string, reason: SyncRejectReason, detail: string]
  traffic: [direction: 'in' | 'out', bytes: number]
  sessions: [count: number]
}

export interface SyncServiceInit {
  host: Libp2p
  replica: Replica
  log: Logger
  maxMessageBytes?: number
  maxSessions?: number
  quarantineMs?: number
  /** how long the larger peer waits for the smaller one to open before opening itself */
  graceMs?: number
  /** how many connected peers this agent opens sessions to (it accepts more) */
  syncPeers?: number
  /** where a member listens (from its advert), to reach a peer we are not connected to */
  addrsOf?: (peer: string) => string[]
  /** the least time between two messages on one session (ms): what arrives meanwhile goes in one */
  coalesceMs?: number
  /** a member's name (from its advert), for log lines */
  nameOf?: (peer: string) => string | undefined
}

type CloseWhy = 'remote' | 'error' | 'replaced' | 'rejected' | 'blocked' | 'disconnected' | 'stopped' | 'unpicked'

export class SyncService extends EventEmitter<SyncEvents> {
  readonly peers = new PeerTable()
  private readonly init: SyncServiceInit
  private readonly self: string
  private readonly sessions = new Map<string, SyncSession>()
  private readonly opening = new Set<string>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly attempts = new Map<string, number>()
  private readonly quarantine = new Map<string, number>()
  private readonly lastPull = new Map<string, number>()
  private blocked = new Set<string>()
  private running = false
  /** what the sessions report to */
  private readonly owner: SessionOwner

  constructor (init: SyncServiceInit) {
    super()
    this.init = init
    this.self = init.host.peerId.toString()
    this.owner = {
      replica: init.replica,
      log: init.log,
      maxBytes: init.maxMessageBytes ?? DEFAULT_MAX_SYNC_MESSAGE_BYTES,
      coalesceMs: init.coalesceMs ?? DEFAULT_COALESCE_MS,
      traffic: (s, direction, bytes) => {
        if (direction === 'out') this.peers.sent(s.peer, bytes)
        else this.peers.received(s.peer, bytes)
        this.emit('traffic', direction, bytes)
      },
      received: (s, changes, changed) => {
        this.attempts.delete(s.peer)
        if (changes > 0) this.peers.changes(s.peer, changes)
        if (changed) {
          this.emit('changed', s.peer, changes)
          this.pokeAll(s.peer)
        }
        s.poke()
        this.peers.inSync(s.peer, init.replica.peerInSync(s.sync))
      },
      reject: (s, reason, detail) => { this.reject(s, reason, detail) },
      ended: (s, why) => { this.close(s, why) }
    }
  }

  async start (): Promise<void> {
    this.running = true
    const { host } = this.init
    await host.handle(STATE_SYNC_PROTOCOL, (stream, conn) => { this.onInbound(stream, conn) }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    host.addEventListener('peer:connect', this.onConnect)
    host.addEventListener('peer:disconnect', this.onDisconnect)
    for (const p of new Set(host.getConnections().map(c => c.remotePeer.toString()))) this.connected(p)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    const { host } = this.init
    host.removeEventListener('peer:connect', this.onConnect)
    host.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    await host.unhandle(STATE_SYNC_PROTOCOL).catch(() => {})
    for (const s of [...this.sessions.values()]) this.close(s, 'stopped')
  }

  get sessionCount (): number { return this.sessions.size }
  /** the peers this node has a sync session with */
  get sessionPeers (): string[] { return [...this.sessions.keys()] }

  /** Send what is new to every peer (after any change to the document). */
  pokeAll (except?: string): void {
    for (const s of this.sessions.values()) if (s.peer !== except) s.poke()
  }

  /** the heads each peer last announced (gossip or advert), sync refused or not; at most MAX_ANNOUNCED peers */
  private readonly announced = new Map<string, string[]>()

  /** the heads `peer` last announced, if any */
  announcedHeads (peer: string): string[] | undefined { return this.announced.get(peer) }

  /** A peer announced its heads (gossip or advert): pull them if we lack them. */
  noteHeads (peer: string, heads: string[]): void {
    if (!this.running || peer === this.self || heads.length === 0) return
    // kept also from a peer whose sync is refused: what it has that this node lacks is
    // what the volume store waits for before it frees anything (node/gvs/layer-reclaim.ts)
    this.announced.delete(peer)
    this.announced.set(peer, heads)
    // bounded against peers that come and go, well above any grid's members: a member
    // pushed out would count as unheard, and the volume store would free nothing (rv32)
    if (this.announced.size > MAX_ANNOUNCED) this.announced.delete(this.announced.keys().next().value!)
    if (this.blocked.has(peer)) return
    // a pull already waits (it checks when due); Automerge is asked only then, at most
    // once a second per peer: asking it about heads it lacks throws inside it, which
    // cost 7-9 % of a 25-agent grid's CPU when every advert and announcement asked
    if (this.timers.has('pull:' + peer)) return
    if (this.init.replica.knowsHeads(heads)) return
    // give the overlay a moment: a change usually arrives through it first
    this.timer('pull:' + peer, 1000, () => {
      if (!this.init.replica.hasHeads(heads)) void this.pull(peer)
    })
  }

  /** Test hook and partition knob: refuse all sync with these peers. */
  setBlocked (peers: Iterable<string>): void {
    this.blocked = new Set(peers)
    for (const s of [...this.sessions.values()]) if (this.blocked.has(s.peer)) this.close(s, 'blocked')
    for (const p of new Set(this.init.host.getConnections().map(c => c.remotePeer.toString()))) this.connected(p)
  }

  get blockedPeers (): string[] { return [...this.blocked] }

  // ---- connections and session lifecycle ----

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    this.connected(evt.detail.toString())
    this.rebalanceSoon()
  }

  /** After connections settle: open sessions to our picks, close those we opened to others. */
  private rebalanceSoon (): void {
    this.timer('rebalance', 1000, () => {
      const picks = new Set(this.picks())
      for (const s of [...this.sessions.values()]) if (s.opener === this.self && !picks.has(s.peer)) this.close(s, 'unpicked')
      for (const p of picks) this.connected(p)
    })
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    const s = this.sessions.get(peer)
    if (s != null) this.close(s, 'disconnected')
    for (const k of ['open:', 'pull:']) this.clearTimer(k + peer)
    this.attempts.delete(peer)
    this.scores.delete(peer)
    // someone else may now be among our picks
    this.rebalanceSoon()
  }

  private readonly scores = new Map<string, string>()

  /** The connected peers this agent opens sessions to (scores cached per peer). */
  private picks (): string[] {
    const peers = this.init.host.getConnections().map(c => c.remotePeer.toString()).filter(p => !this.refused(p))
    return pickPeers(this.self, peers, this.init.syncPeers ?? DEFAULT_SYNC_PEERS, p => {
      let sc = this.scores.get(p)
      if (sc == null) this.scores.set(p, sc = pairScore(this.self, p))
      return sc
    })
  }

  private isConnected (peer: string): boolean {
    return this.init.host.getConnections(peerIdFromString(peer)).some(c => c.status === 'open')
  }

  private refused (peer: string): boolean {
    const until = this.quarantine.get(peer)
    if (until != null && until <= Date.now()) this.quarantine.delete(peer)
    return this.blocked.has(peer) || (until != null && until > Date.now())
  }

  /** A connection to `peer` exists: open a session if it is among our picks. */
  private connected (peer: string): void {
    if (!this.running || peer === this.self || this.sessions.has(peer) || this.refused(peer)) return
    if (!this.picks().includes(peer)) return
    if (this.self < peer) this.timer('open:' + peer, 0, () => { void this.open(peer) })
    else this.timer('open:' + peer, this.init.graceMs ?? 750, () => { void this.open(peer) })
  }

  private async open (peer: string): Promise<void> {
    if (!this.running || this.sessions.has(peer) || this.opening.has(peer) || this.refused(peer)) return
    if (this.sessions.size >= (this.init.maxSessions ?? 256)) return
    this.opening.add(peer)
    try {
      const stream = await this.init.host.dialProtocol(peerIdFromString(peer), STATE_SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) })
      if (!this.running || this.refused(peer)) {
        stream.abort(new Error('not syncing with this peer'))
        return
      }
      this.adopt(stream, peer, this.self)
    } catch (err) {
      // most often the peer has not registered the protocol yet (it is starting)
      const n = (this.attempts.get(peer) ?? 0) + 1
      this.attempts.set(peer, n)
      this.init.log.debug('state sync stream failed to open', { peer, attempt: n, error: (err as Error).message })
      if (this.running && n < 8 && this.isConnected(peer)) this.timer('open:' + peer, Math.min(250 * 2 ** n, 5000), () => { void this.open(peer) })
    } finally {
      this.opening.delete(peer)
    }
  }

  private onInbound (stream: Stream, conn: Connection): void {
    const peer = conn.remotePeer.toString()
    if (!this.running || this.refused(peer) || (!this.sessions.has(peer) && this.sessions.size >= (this.init.maxSessions ?? 256))) {
      stream.abort(new Error('state sync refused'))
      return
    }
    this.adopt(stream, peer, peer)
  }

  private adopt (stream: Stream, peer: string, opener: string): void {
    const cur = this.sessions.get(peer)
    if (cur != null) {
      // a reopen by the same side replaces; otherwise the stream opened by the smaller id wins
      if (cur.opener !== opener && cur.opener < opener) {
        stream.abort(new Error('duplicate state sync session'))
        return
      }
      this.close(cur, 'replaced')
    }
    this.clearTimer('open:' + peer)
    const s = new SyncSession(this.owner, stream, peer, opener)
    this.sessions.set(peer, s)
    this.peers.opened(peer)
    this.emit('sessions', this.sessions.size)
    s.start()
  }

  private close (s: SyncSession, why: CloseWhy): void {
    if (s.closed) return
    s.closed = true
    if (this.sessions.get(s.peer) === s) {
      this.sessions.delete(s.peer)
      this.peers.closed(s.peer)
      this.emit('sessions', this.sessions.size)
    }
    if (why === 'remote' || why === 'stopped' || why === 'replaced' || why === 'unpicked') {
      s.stream.close({ signal: AbortSignal.timeout(500) }).catch(() => s.stream.abort(new Error('closed')))
    } else {
      s.stream.abort(new Error(`state sync closed: ${why}`))
    }
    // a broken stream on a live connection: open again (backing off if it keeps failing)
    if ((why === 'remote' || why === 'error') && this.running && this.isConnected(s.peer)) this.connected(s.peer)
  }

  private reject (s: SyncSession, reason: SyncRejectReason, detail: string): void {
    this.emit('rejected', s.peer, reason, detail)
    this.init.log.warn('rejected state sync data from peer; closing its connection', { peer: this.init.nameOf?.(s.peer) ?? s.peer, reason, detail: detail.slice(0, 200) })
    this.quarantine.set(s.peer, Date.now() + (this.init.quarantineMs ?? 30_000))
    this.close(s, 'rejected')
    void this.init.host.hangUp(peerIdFromString(s.peer)).catch(() => {})
    this.rebalanceSoon()
  }

  // ---- pulls ----

  /** Fetch heads a peer announced: through its session, or by connecting to it. */
  private async pull (peer: string): Promise<void> {
    const last = this.lastPull.get(peer) ?? 0
    if (Date.now() - last < 1000 || this.refused(peer)) return
    this.lastPull.set(peer, Date.now())
    if (this.lastPull.size > 4096) this.lastPull.clear()
    const s = this.sessions.get(peer)
    if (s != null) {
      if (Date.now() - s.lastHeard < 1000) return // a live session: it is on its way
      s.restart()
      return
    }
    if (!this.isConnected(peer)) {
      const addrs = (this.init.addrsOf?.(peer) ?? []).flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      try {
        await this.init.host.dial(addrs.length > 0 ? addrs : peerIdFromString(peer), { signal: AbortSignal.timeout(5000) })
      } catch (err) {
        this.init.log.debug('cannot reach peer to pull state', { peer, error: (err as Error).message })
        return
      }
    }
    await this.open(peer)
  }

  private timer (key: string, ms: number, fn: () => void): void {
    if (this.timers.has(key) || !this.running) return
    this.timers.set(key, setTimeout(() => {
      this.timers.delete(key)
      if (this.running) fn()
    }, ms))
  }

  private clearTimer (key: string): void {
    clearTimeout(this.timers.get(key))
    this.timers.delete(key)
  }
}

export type { PeerStatus }
