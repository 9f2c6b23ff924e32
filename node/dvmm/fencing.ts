// This node's fence and when the others were last heard of: the two clocks a
// takeover is safe by. A node without a majority of the roll for the fence timeout
// kills its VMs (fenced, crdt/placement); another node takes its leases over only a
// fence timeout (plus margin) after it last heard of the holder. The judgement is
// pure (fenced, activeFenceMs); this part keeps its state and carries out the kill.
// The fence timeout it runs with (`active`) is the node's setting, held shorter while
// another member could take its VMs over sooner (activeFenceMs).
import type { Reader } from '../../crdt/index.ts'
import { activeFenceMs, fenced, lentVotes, voteLockedUntil, voters, type FenceDecision, type RestartRecord } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { Logger } from '../log.ts'
import { wallNow, type Clock } from '../service.ts'
import type { LocalVms } from './local-vms.ts'
import type { DvmmMetrics } from './metrics.ts'
import { FENCE_TIMEOUT_MS } from './timing.ts'

export interface FencingComponents {
  peerId: string
  log: Logger
  clock: Clock
  state: { read: () => Reader }
  /** `inSight`: a member's beat counter advanced here lately (MembershipService.inSight); absent: its state alone counts */
  membership: { readonly members: MemberTable, inSight?: (id: string) => boolean, aliveAt?: (id: string) => number | undefined }
  metrics: Pick<DvmmMetrics, 'fenced'>
  local: Pick<LocalVms, 'live' | 'act'>
  /** the fence timeout it runs with changed (the watchdog follows it) */
  onActiveFence?: (ms: number) => void
}

export interface FencingInit {
  /** the node's setting */
  fenceTimeoutMs: number
  /** the fence timeout this node ran with last (fence-record.ts previousFence; undefined: none), see activeFenceMs */
  previousFenceMs?: number
  takeoverMarginMs: number
  /** when this node last knew it was alive in the grid before this run (0: none), see DvmmInit.lastAliveAt */
  lastAliveAt: number
  /** the fence timeout promised from lastAliveAt (a restart grace's), see DvmmInit.lastAliveFenceMs */
  lastAliveFenceMs?: number
}

export class Fencing {
  private readonly c: FencingComponents
  private readonly cfg: FencingInit
  private startedAt = 0
  private lastMajorityAt = 0
  /** after a stall of this agent: no claim and no start before this time (see DvmmInit.stallMs) */
  private quarantineUntil = 0
  private fence?: FenceDecision
  /** this run has seen a majority: the fence a previous run's last feed promised no longer holds */
  private seenMajority = false
  /** the VMs this fence has logged a kill of (cleared once it is over) */
  private readonly killing = new Set<string>()
  private readonly heard = new Map<string, number>()
  private readonly silentSince = new Map<string, number>()
  /** when each member was last seen to go (its last sign of life then) */
  private readonly awayAt = new Map<string, number>()
  /** the roll's restart records, as of the last check */
  private records = new Map<string, RestartRecord | null | undefined>()
  /** the fence timeout this node runs with now (activeFenceMs) */
  private active: number

  constructor (components: FencingComponents, init: FencingInit) {
    this.c = components
    this.cfg = init
    // before it knows any other member: as if one were there, not known
    this.active = activeFenceMs({ configuredMs: init.fenceTimeoutMs, previousMs: init.previousFenceMs, others: [undefined], legacyMs: FENCE_TIMEOUT_MS })
  }

  /** the fence timeout this node runs with now (its watchdog's is 3/5 of it) */
  get activeMs (): number { return this.active }

  /** when this run started (the clock's `now`; 0 before start) */
  get startedAtMs (): number { return this.startedAt }

  /** the last judgement (undefined before the first) */
  get state (): FenceDecision | undefined { return this.fence }

  /** before the first step: the fence counts from this run's start, or from the previous run's last sign of life */
  start (): void {
    this.startedAt = this.c.clock.now()
    this.lastMajorityAt = this.cfg.lastAliveAt > 0 ? Math.min(this.startedAt, this.cfg.lastAliveAt) : this.startedAt
  }

  /** This agent stalled `lateMs` (its timers ran late): it claims and starts nothing for fence timeout + margin. */
  stalled (now: number, lateMs: number): void {
    this.quarantineUntil = now + this.active + this.cfg.takeoverMarginMs
    this.c.log.warn('this agent stalled: starting nothing until it has heard the grid again', { stalledMs: Math.round(lateMs), until: new Date(this.quarantineUntil).toISOString() })
  }

  /** Judges this node's fence now and, when fenced, kills every VM here, busy ones too (a stop or start in flight). */
  check (now: number): FenceDecision {
    const members = this.c.membership.members
    const entries = this.c.state.read().list('roll')
    this.records = new Map(entries.map(e => [e.node, e.restart]))
    // only roll members vote: this node too only once on it (fence.ts voters)
    const roll = voters(entries.map(e => e.node), this.c.peerId)
    const alive = (id: string): boolean => members.get(id)?.state === 'alive'
    // in sight: alive, and known alive lately by the liveness table: cut off from all, a
    // node loses sight of the members it hears no heartbeat from within the liveness
    // window, not after their silence timeout (holderNoticeMs). Only where every other
    // roll member alive here advertises a window: a member of an older release carries no
    // tables, and a node whose heartbeat partners are all old would see too few (rv24);
    // takers then wait the silence timeout. One not alive here counts for nothing either
    // way (rv25: a dead member's advert, which a node started since never got, made it
    // count by state alone while takers, holding that advert, waited only the window)
    const tables = [...roll].every(id => id === this.c.peerId || !alive(id) || members.get(id)?.advert.livenessMs != null)
    const aliveSeen = [...roll].filter(id => id === this.c.peerId || (alive(id) && (!tables || (this.c.membership.inSight?.(id) ?? true)))).length
    this.updateActive(roll, members)
    // until this run first sees a majority, its fence counts from the previous run's last
    // feed with the timeout that feed promised (others wait that long for a restart: restart-grace.ts)
    const window = this.seenMajority ? this.active : Math.max(this.active, this.cfg.lastAliveFenceMs ?? 0)
    // members away for a confirmed restart keep this node's VMs alive on their votes
    const lent = lentVotes({ roll, me: this.c.peerId, alive, record: id => this.records.get(id), lastHeard: id => this.heard.get(id), now, wallNow: wallNow(this.c.clock) })
    let f = fenced({ rollSize: roll.size, aliveSeen, lent: lent.length, lastMajorityAt: this.lastMajorityAt, now, fenceTimeoutMs: window })
    this.lastMajorityAt = f.lastMajorityAt
    if (f.majority) this.seenMajority = true
    // a stalled agent's view is stale: its watchdog killed its VMs, its leases may have moved
    // said so as to follow "this node" (bb28 read "this node this agent stalled; ...")
    if (now < this.quarantineUntil) f = { ...f, fenced: true, mayClaim: false, reason: `had its agent stall (its VMs were killed by its watchdog), and waits until ${new Date(this.quarantineUntil).toISOString()} to hear the grid again` }
    this.fence = f
    this.c.metrics.fenced.set(f.fenced ? 1 : 0)
    const live = this.c.local.live
    if (f.fenced && live.size > 0) {
      // logged once per fence for the VMs it kills (a kill in flight is asked again every
      // tick, and waited for; the set shrinks as they end: bb22 read two lines a fence)
      const fresh = [...live].filter(vm => !this.killing.has(vm))
      if (fresh.length > 0) this.c.log.warn('fenced: killing every VM', { reason: f.reason, vms: fresh.length })
      for (const vm of fresh) this.killing.add(vm)
      for (const vm of live) void this.c.local.act(vm, 'kill', `fenced: ${f.reason}`)
    } else if (!f.fenced) this.killing.clear()
    return f
  }

  private updateActive (roll: ReadonlySet<string>, members: MemberTable): void {
    const ids = new Set([...roll, ...members.keys()])
    ids.delete(this.c.peerId)
    const others = [...ids].map(id => { const m = members.get(id); return m == null ? undefined : m.advert.fenceTimeoutMs ?? null })
    const next = activeFenceMs({ configuredMs: this.cfg.fenceTimeoutMs, previousMs: this.cfg.previousFenceMs, others, legacyMs: FENCE_TIMEOUT_MS })
    if (next === this.active) return
    // the watchdog first: if it refuses the value, this node keeps the one it has and asks again on the next check
    try {
      this.c.onActiveFence?.(next)
    } catch (err) {
      this.c.log.error('could not pass the fence timeout in force to the watchdog', { ms: next, error: (err as Error).message })
      return
    }
    this.active = next
    this.c.log.info('fence timeout in force', {
      ms: next,
      setting: this.cfg.fenceTimeoutMs,
      ...(next < this.cfg.fenceTimeoutMs ? { why: 'another member\'s setting is shorter, or not known here' } : {})
    })
  }

  /** Notes when each member was last heard of, from the member table (every step). */
  hear (members: MemberTable): void {
    for (const m of members.values()) {
      // last heard of: its own beats, or once it went silent, the moment this node
      // learned so (its first suspicion); a death declared later does not move it on:
      // its watchdog or its own fence ended its VMs within the fence timeout of that
      if (m.state === 'alive') this.silentSince.delete(m.nodeId)
      else if (!this.silentSince.has(m.nodeId)) {
        this.silentSince.set(m.nodeId, m.since)
        // when it went: the lock on a vote it may lend counts from it too (voteLockedUntil)
        this.awayAt.set(m.nodeId, Math.max(this.heard.get(m.nodeId) ?? 0, m.lastSeen, m.since))
      }
      // and the liveness tables' news of it: a holder renews its majority only by beats
      // that reach the others, so a takeover counts from the last of those (rv25: a link
      // back for a second kept the holder unfenced past the wait of a taker that had
      // heard nothing of it directly)
      this.heard.set(m.nodeId, Math.max(this.heard.get(m.nodeId) ?? 0, m.lastSeen, this.silentSince.get(m.nodeId) ?? 0, this.c.membership.aliveAt?.(m.nodeId) ?? 0))
    }
  }

  /** local time the node was last heard of (this run's start for a node not heard of yet) */
  lastHeard (id: string): number { return this.heard.get(id) ?? this.startedAt }

  /**
   * Until when the node's vote may not count towards a takeover or a stale lease's start
   * (voteLockedUntil over its restart record, as of the last check): -Infinity for most.
   */
  voteLock (id: string, now: number): number {
    return voteLockedUntil(this.records.get(id), id === this.c.peerId ? undefined : this.awayAt.get(id), now, wallNow(this.c.clock))
  }
}
