// The dialer keeps this node connected to the grid: it dials --join addresses,
// members it has heard of (adverts, mDNS, the saved peer list) and keeps retrying
// with capped exponential backoff, so the grid heals after restarts and partitions.
// Choosing what to dial is a pure function (planDials); the class only does I/O.
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { monoNow } from './mono-clock.ts'
import type { Libp2p, PeerInfo } from '@libp2p/interface'

/** connections the dialer adds up to (and trims back to): a grid of up to this many + 1 is connected whole */
export const DEFAULT_TARGET_PEERS = 16

export interface DialTarget {
  /** peer id when known, otherwise the address itself */
  key: string
  peerId?: string
  addrs: string[]
  source: 'join' | 'member' | 'mdns'
  /** a member that left gracefully (from the peer book): dialled after the others */
  left?: boolean
  attempts: number
  nextAt: number
  /** a join address: whether a dial to it ever succeeded, and the last dial's error */
  reached?: boolean
  lastError?: string
}

export interface DialPlanInput {
  targets: Iterable<DialTarget>
  connected: ReadonlySet<string>
  now: number
  /** stop adding connections above this many */
  targetPeers: number
  /** dials in flight at most, counting those already under way */
  maxParallel: number
  /** keys of the targets being dialled now (not dialled again) */
  inFlight?: ReadonlySet<string>
  /** below this many connections join addresses are dialled whatever the budget (default 3) */
  minPeers?: number
  /** breaks ties between equally good targets (default Math.random) */
  random?: () => number
}

/**
 * Which targets to dial now: due, not connected, not already being dialled, fewest
 * failures first. While this node has fewer than minPeers connections (it is new, or
 * cut off) its join addresses come first, budget or not: they are how it gets (back)
 * in. Past that they are ordinary targets: every token of a grid names the same few
 * servers, and a rule that kept everyone connected to them made those servers carry
 * a connection from every member.
 */
export function planDials (input: DialPlanInput): DialTarget[] {
  // dials still under way count against both limits: when a busy grid answers slowly,
  // more dials on top of the slow ones only make every handshake slower (and time out)
  const busy = input.inFlight?.size ?? 0
  const room = Math.max(0, Math.min(input.maxParallel - busy, input.targetPeers - input.connected.size - busy))
  const isDue = (t: DialTarget): boolean => t.nextAt <= input.now && input.inFlight?.has(t.key) !== true &&
    (t.peerId == null || !input.connected.has(t.peerId))
  const isolated = input.connected.size < (input.minPeers ?? 3)
  const joins: DialTarget[] = []
  const rest: DialTarget[] = []
  // with no room only an isolated node's join targets matter (this runs twice a second on every node)
  for (const t of input.targets) {
    if (t.source === 'join' && isolated) { if (isDue(t)) joins.push(t) } else if (room > 0 && isDue(t)) rest.push(t)
  }
  // at random among equals: every member learns the others in about the same order,
  // and taking the first ones would have everybody dial the same few
  const random = input.random ?? Math.random
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j]!, rest[i]!]
  }
  // members that left gracefully last: they are likely down, but after a whole-grid
  // restart they are all there is
  rest.sort((a, b) => Number(a.left === true) - Number(b.left === true) || a.attempts - b.attempts)
  return [...joins, ...rest.slice(0, room)].slice(0, Math.max(room, joins.length))
}

export interface TrimInput {
  /** one entry per connected peer, oldest connection first; outbound: we dialled it; openedAt: its newest connection */
  peers: ReadonlyArray<{ peerId: string, outbound: boolean, openedAt: number }>
  /** peers whose connection carries something that must not be cut (heartbeats, the gossip mesh) */
  keep: ReadonlySet<string>
  targetPeers: number
  /** trimming starts above this many connections, and goes down to targetPeers at once */
  highWater: number
  now: number
  /** connections younger than this are never trimmed */
  minAgeMs: number
}

/**
 * Which peers to hang up on: a node far above its peer budget (a join address that
 * every new member dialled) sheds connections that carry nothing it or the peer
 * relies on, those the peer dialled first. Neither side then suspects anyone: a lost
 * connection is suspected only between heartbeat partners, which are kept. Young
 * connections are kept too: a newcomer's first connection is how it learns the grid
 * (member sync) and whom else to dial, and cut at once it only dialled back.
 */
export function planTrim (input: TrimInput): string[] {
  if (input.peers.length <= input.highWater) return []
  const excess = input.peers.length - input.targetPeers
  const spare = input.peers.filter(p => !input.keep.has(p.peerId) && input.now - p.openedAt >= input.minAgeMs)
  return [...spare.filter(p => !p.outbound), ...spare.filter(p => p.outbound)].slice(0, excess).map(p => p.peerId)
}

/** a connection is not trimmed before it is this old (see planTrim) */
const TRIM_MIN_AGE_MS = 30_000

export function backoffMs (attempts: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1))
}

export interface DialerInit {
  host: Libp2p
  /** a dial to this known peer failed twice while this node had no connection at all */
  onUnreachable?: (peerId: string) => void
  onDialError?: (target: string, err: Error) => void
  /** peers whose connections must not be trimmed (see planTrim) */
  keep?: () => ReadonlySet<string>
  /** connections younger than this are not trimmed (default 30 s) */
  trimMinAgeMs?: number
  join?: string[]
  targetPeers?: number
  baseBackoffMs?: number
  maxBackoffMs?: number
  tickMs?: number
}

export class Dialer {
  private readonly init: DialerInit
  private readonly targets = new Map<string, DialTarget>()
  private readonly inFlight = new Set<string>()
  private timer?: NodeJS.Timeout

  constructor (init: DialerInit) {
    this.init = init
    for (const a of init.join ?? []) this.addJoin(a)
    // listen from construction on: mDNS answers can arrive while the host starts
    this.init.host.addEventListener('peer:discovery', this.onDiscovery)
  }

  start (): void {
    this.timer = setInterval(() => this.tick(), this.init.tickMs ?? 500)
    this.tick()
  }

  stop (): void {
    clearInterval(this.timer)
    this.init.host.removeEventListener('peer:discovery', this.onDiscovery)
  }

  /** the join addresses: whether each was ever reached, and the last error of one never reached */
  joinStatus (): Array<{ addr: string, reached: boolean, attempts: number, lastError?: string }> {
    return [...this.targets.values()].filter(t => t.source === 'join').map(t => ({ addr: t.key, reached: t.reached === true, attempts: t.attempts, ...(t.lastError != null ? { lastError: t.lastError } : {}) }))
  }

  addJoin (addr: string): void {
    const peerId = multiaddr(addr).getComponents().findLast(c => c.name === 'p2p')?.value
    this.targets.set(addr, { key: addr, peerId, addrs: [addr], source: 'join', attempts: 0, nextAt: 0 })
  }

  /** A member we know of (from its advert or the saved peer list) and where it listens; `left`: it stopped gracefully. */
  noteMember (peerId: string, addrs: string[], left = false): void {
    if (peerId === this.init.host.peerId.toString() || addrs.length === 0) return
    const prev = this.targets.get(peerId)
    if (prev?.source === 'join') return
    const changed = prev == null || prev.addrs.join() !== addrs.join()
    this.targets.set(peerId, {
      key: peerId,
      peerId,
      addrs,
      // a member now, however it was first found: an mDNS neighbour's target is dropped
      // after five failed dials, and a member found by mDNS first was then dialled no
      // more once a partition outlasted them (a tester's 2 + 3 split of 6 min never healed)
      source: 'member',
      left,
      // new addresses deserve a prompt try (a member that moved)
      attempts: changed ? 0 : prev.attempts,
      nextAt: changed ? 0 : prev.nextAt
    })
  }

  forget (peerId: string): void {
    const t = this.targets.get(peerId)
    if (t != null && t.source !== 'join') this.targets.delete(peerId)
  }

  get size (): number { return this.targets.size }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    const id = evt.detail.id.toString()
    const addrs = evt.detail.multiaddrs.map(m => m.toString())
    if (addrs.length === 0 || id === this.init.host.peerId.toString()) return
    const prev = this.targets.get(id)
    if (prev == null) {
      this.targets.set(id, { key: id, peerId: id, addrs, source: 'mdns', attempts: 0, nextAt: 0 })
    } else if (prev.source !== 'join' && prev.addrs.join() !== addrs.join()) {
      // a known peer answering mDNS from new addresses has moved: try those now
      this.targets.set(id, { ...prev, addrs, attempts: 0, nextAt: 0 })
    }
  }

  private tick (): void {
    const { host } = this.init
    // one pass over the connections feeds both the dial plan and the trim
    const byPeer = new Map<string, { peerId: string, outbound: boolean, openedAt: number }>()
    for (const c of host.getConnections()) {
      const id = c.remotePeer.toString()
      const p = byPeer.get(id)
      if (p == null) byPeer.set(id, { peerId: id, outbound: c.direction === 'outbound', openedAt: c.timeline.open })
      else p.openedAt = Math.max(p.openedAt, c.timeline.open)
    }
    const targetPeers = this.init.targetPeers ?? DEFAULT_TARGET_PEERS
    const now = monoNow()
    const plan = planDials({
      targets: this.targets.values(),
      connected: new Set(byPeer.keys()),
      now,
      targetPeers,
      maxParallel: 8,
      inFlight: this.inFlight
    })
    for (const t of plan) void this.dial(t)
    // what is in use (heartbeats, mesh, sync sessions) is only worth asking above the mark
    const highWater = 2 * targetPeers
    if (byPeer.size <= highWater) return
    const drop = planTrim({
      peers: [...byPeer.values()], keep: this.init.keep?.() ?? new Set(), targetPeers, highWater, now, minAgeMs: this.init.trimMinAgeMs ?? TRIM_MIN_AGE_MS
    })
    for (const id of drop) void host.hangUp(peerIdFromString(id)).catch(() => {})
  }

  private async dial (t: DialTarget): Promise<void> {
    this.inFlight.add(t.key)
    try {
      const addrs: Multiaddr[] = t.addrs.map(a => multiaddr(a))
      const conn = await this.init.host.dial(addrs.length === 1 ? addrs[0]! : addrs, { signal: AbortSignal.timeout(3000) })
      t.attempts = 0
      t.nextAt = monoNow() + (this.init.baseBackoffMs ?? 1000)
      if (t.source === 'join') { t.peerId = conn.remotePeer.toString(); t.reached = true }
    } catch (err) {
      this.init.onDialError?.(t.key, err as Error)
      t.attempts++
      t.lastError = (err as Error).message
      // a failed dial is weak evidence: a busy peer answers late, and the member's own
      // watchers are the ones to judge it. It counts only for a node with no connection
      // at all (cut off right after joining, before any heartbeat stream existed), and
      // only the second failure in a row. On 200 agents over loopback, suspicions from
      // failed dials between busy peers turned into deaths, hang-ups and more failed
      // dials, until every agent saw only itself.
      if (t.peerId != null && t.attempts >= 2 && this.init.host.getConnections().length === 0) {
        this.init.onUnreachable?.(t.peerId)
      }
      // an mDNS neighbour we never reached (another grid on the LAN, a dead box) is
      // not worth dialling forever; it comes back if it answers mDNS again as a member
      if (t.source === 'mdns' && t.attempts >= 5) { this.targets.delete(t.key); return }
      t.nextAt = monoNow() + backoffMs(t.attempts, this.init.baseBackoffMs ?? 1000, this.init.maxBackoffMs ?? 5000)
    } finally {
      this.inFlight.delete(t.key)
    }
  }
}
