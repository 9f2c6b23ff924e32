// The DVMM service: VMs anywhere on the grid, placed by leases in the cluster
// document. The decisions are pure (crdt/placement, decide.ts); this shell reads the
// document and membership, runs one decision step on every change and on a timer,
// writes claims and statuses in one change per step (an agent gets few acknowledged
// writes per second while many peers sync: update-queue.ts), and carries the answer
// out through the drivers (local-vms.ts, which also ties this node's VMs to the
// overlay, GVS and the other nodes). Its parts: the fence and when others were last
// heard of (fencing.ts), its claims until they settle (claim-watch.ts), what its
// leases reserve (reserved-advert.ts), HA and health (health.ts), its roll entry
// (roll-join.ts). Liveness is never written to the document.
import type { EventEmitter } from 'node:events'
import type { Registry } from 'prom-client'
import type { Reader, Vm, Writer } from '../../crdt/index.ts'
import { drainCheck, holderFenceMs, idle, isParked, rank, recentCrashes, takeoverFenceMs, usageOf, type FenceDecision, type HaReport, type NodeView, type Strategy, type StrandedVms } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { MembershipEvents } from '../../protocol/membership-service.ts'
import type { ClockOffset } from '../../protocol/heartbeat.ts'
import type { Resources } from '../../protocol/advert.ts'
import type { Logger } from '../log.ts'
import { wallNow, type Clock } from '../service.ts'
import type { StateEvents } from '../state/index.ts'
import type { FastifyInstance } from 'fastify'
import type { VmDriver } from './drivers/types.ts'
import { ClaimWatch } from './claim-watch.ts'
import { OUTDATED_LEASE, UNFIT_LEASE, claimMatchesSpec, claimStillApplies, creditWaits, decide, noticeOf, lockedWaitsIfLost, startsStillDue, takeoverMajoritySince, type DecideInput, type Decisions } from './decide.ts'
import { claimLog, History, sameVm } from './history.ts'
import { DvmmMetrics } from './metrics.ts'
import { Fencing } from './fencing.ts'
import { ReservedAdvert } from './reserved-advert.ts'
import { UpdateQueue } from './update-queue.ts'
import { demandOf, docView, holdings, nodeViews, type DocView } from './view.ts'
import { DvmmHealth } from './health.ts'
import { RollJoin } from './roll-join.ts'
import { RestartGrace } from './restart-grace.ts'
import type { HealthProblem } from '../api/types.ts'
import { dvmmRoutes } from './routes.ts'
import { LocalVms, type VmNetworkHooks } from './local-vms.ts'
import type { VolumeAccess } from './vm-disks.ts'
import type { RequestHost } from '../p2p/request.ts'
import { MAX_FENCE_TIMEOUT_MS, watchdogTimeoutFor } from './timing.ts'
import { movesOn, parkedLease } from './run-steps.ts'
import { RepeatedLines } from '../log-repeats.ts'
import { OVERLAY_MOVE_AFTER_MS } from './overlay-moves.ts'
import { SleepClock } from './watchdog/sleep-clock.ts'

// index.ts exports it from here

/** what DVMM uses of the state service */
export interface DvmmState extends Pick<EventEmitter<StateEvents>, 'on' | 'off'> {
  read: () => Reader
  write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
  /** for the restart grace (restart-grace.ts): the document's heads, whether it holds a peer's on disk, a peer's to pull */
  heads?: () => string[]
  holds?: (heads: string[]) => Promise<boolean>
  noteHeads?: (peer: string, heads: string[]) => void
}

/** what DVMM uses of membership */
export interface DvmmMembership extends Pick<EventEmitter<MembershipEvents>, 'on' | 'off'> {
  readonly members: MemberTable
  /** the members' clock offsets from this node's, as the heartbeats measure them (a VM's history is shown in this node's time) */
  clockOffsets?: () => ReadonlyMap<string, ClockOffset>
  /** how members are found silent (MembershipService.detection; absent: every member watches every other) */
  detection?: () => { watchers: number, silenceMs: number, agents: number, livenessMs?: number }
  /** whether a member is in sight by the liveness table (MembershipService.inSight; absent: by its state alone) */
  inSight?: (id: string) => boolean
  /** by when a member is known alive through the liveness tables (MembershipService.aliveAt; the clock's `now`) */
  aliveAt?: (id: string) => number | undefined
  /** members this node does not reach while another does (a partial cut; MembershipService.outOfReach) */
  outOfReach?: () => ReadonlyMap<string, unknown>
}

export interface DvmmComponents {
  peerId: string
  log: Logger
  clock: Clock
  registry: Registry
  /** `join`: the peers this node was told to join through (it writes its roll entry only once it has synced) */
  config: { name: string, join?: readonly string[] }
  /** told to join: it reached a join address and holds a live member's document (roll-join.ts) */
  joinSynced?: () => boolean
  /** it holds the document some live member announced (its heads): synced with the grid at least once (absent: taken as synced) */
  gridSynced?: () => boolean
  state: DvmmState
  membership: DvmmMembership
  /** the drivers this node runs VMs with, by the spec's driver name */
  drivers: Partial<Record<Vm['spec']['driver'], VmDriver>>
  /** the resources the leases this node holds reserve: the agent puts them in its advert */
  onReserved: (r: Resources) => void
  /** the connection manager, where the grid has an overlay: each VM's address and names, told when local VMs come and go */
  network?: VmNetworkHooks
  /** libp2p, to answer and ask for consoles of VMs on other nodes */
  host?: RequestHost
  /** the volume store on this node: where a volume is served over NBD (null: no such volume) */
  volumes?: VolumeAccess
  /** the fence timeout this node runs with changed (activeFenceMs): the watchdog follows it */
  onActiveFence?: (ms: number) => void
  /** a stop for a restart got its grace confirmed (restart-grace.ts): the watchdog's last feed carries these timeouts */
  onRestartGrace?: (t: { watchdogMs: number, fenceMs: number }) => void
  /**
   * whether this run's own watchdog guards its VMs with the usual timeout (NodeRuntime.
   * ownWatchdog: armed by this run and fed, the previous run's bridge stopped, or not
   * needed); absent: no watchdog (the fake driver)
   */
  ownWatchdog?: () => boolean
}

export interface DvmmInit {
  /** a claim starts its VM after this long without a conflicting claim (> document propagation) */
  settleMs?: number
  /** a node without a majority of the roll this long kills its VMs */
  fenceTimeoutMs?: number
  /** takeover waits fence timeout + this, from when the holder was last heard of */
  takeoverMarginMs?: number
  /** the decision step also runs this often (timers: settle, takeover, fence) */
  tickMs?: number
  /** changes arriving within this window are decided on together */
  debounceMs?: number
  stopGraceMs?: number
  strategy?: Strategy
  /**
   * An agent whose own timers were late by this much stalled (SIGSTOP, a hung event
   * loop): its fencing watchdog has killed its VMs, and what it knows of the grid is
   * stale. It then claims and starts nothing for fence timeout + margin, until fresh
   * membership and the document tell it whether its leases moved (default: the
   * watchdog's timeout, 3/5 of the fence timeout in force)
   */
  stallMs?: number
  /** the fence timeout this node ran with last (fence-record.ts previousFence; undefined: none), see activeFenceMs */
  previousFenceMs?: number
  /**
   * When this node last knew it was alive in the grid before this run: a restarted
   * agent's previous run's last watchdog feed. Its fence counts from there, so a
   * restart that finds no majority kills the VMs it adopted before any takeover.
   */
  lastAliveAt?: number
  /** the fence timeout that last feed promised (a restart grace's is longer): it counts from there until this run sees a majority */
  lastAliveFenceMs?: number
  /** how long this node's VMs run on without their agent while it restarts, once every member confirmed (restart-grace.ts); 0 (default): off */
  restartGraceMs?: number
  /**
   * this node's overlay down this long moves its VMs with connections to nodes whose
   * overlay is up, and a link's other end on a node this one has not reached this long
   * (a partial cut) moves the VM to a node that reaches both (overlay-moves.ts)
   */
  overlayMoveAfterMs?: number
}

/** what a takeover of a dead node's leases waits for now (DvmmService.takeoverWait), with the views it was read from */
interface TakeoverWait { doc: DocView, fenceMs: number, notice: number, nodes: NodeView[], windowed: boolean }

/** why the takeover waits the silence timeout: the nodes that advertise no liveness window, or none lately (failoverWait) */
function withoutWindow (old: readonly string[]): string {
  if (old.length === 0) return 'every node has advertised a liveness window only lately'
  const named = old.length > 3 ? `${old.slice(0, 3).join(', ')} and ${old.length - 3} more` : old.join(', ')
  return old.length === 1 ? `${named} advertises no liveness window: an older release, or not heard from` : `${named} advertise no liveness window: older releases, or not heard from`
}

export class DvmmService {
  readonly name = 'dvmm'
  readonly history: History
  readonly metrics: DvmmMetrics
  readonly components: DvmmComponents
  private readonly cfg: Required<Omit<DvmmInit, 'stallMs' | 'previousFenceMs' | 'lastAliveFenceMs'>> & Pick<DvmmInit, 'stallMs' | 'previousFenceMs' | 'lastAliveFenceMs'>
  private readonly log: Logger
  /** a step failing for a while (a full disk) fails every 500 ms: a line a minute */
  private readonly repeats = new RepeatedLines()
  /** the VMs this node runs: starts, stops, kills and crashes on its drivers; their addresses, runtimes, interfaces, names and consoles */
  readonly local: LocalVms
  /** this node's fence, and when the others were last heard of */
  private readonly fencing: Fencing
  /** this node's claims until they settle */
  private readonly claims: ClaimWatch
  /** document updates waiting for the next step's write (kept until one succeeds) */
  private readonly queue: UpdateQueue
  /** what this node's leases reserve, for its advert */
  private readonly reserved: ReservedAdvert
  /** HA and health: the VMs that run nowhere, this node without a majority */
  readonly health: DvmmHealth
  /** this node's roll entry, until written */
  private readonly roll: RollJoin
  /** a stop for a restart that keeps the VMs longer, once every member confirms */
  private readonly grace: RestartGrace
  private unplacedSince = new Map<string, number>()
  /** when this run first saw this node draining (decide.ts DRAIN_SETTLE_WINDOWS) */
  private drainSeenAt: number | undefined
  /** the names of members seen on the roll this run: a node forgotten since is still named (its leases, its history) */
  private readonly formerNames = new Map<string, string>()
  /** VMs this node would take over but cannot (see Decisions.blocked), with the reason: shown as pending (health.ts) */
  get blocked (): ReadonlyMap<string, string> { return this.health.blocked }
  /** the NBD sessions writing a volume on each live node (the volume store's), for the routes */
  get volumeWriters (): ((volumeId: string) => Promise<Array<{ node: string, name?: string, writers: number, vmDisks?: number }>>) | undefined { return this.components.volumes?.writers }
  /** the volumes' health (the volume store's), for the routes */
  get volumeHealth (): VolumeAccess['health'] { return this.components.volumes?.health }
  private lastStepMs = 0
  /** when a node without a liveness window was last in view (detectionNow; this run's start: as if one were then) */
  private mixedAt = -Infinity
  /** the longest liveness window in view lately, and since when (detectionNow: a window that shrank counts as it was for a silence timeout) */
  private windowHigh = { ms: 0, at: -Infinity }
  private lastStepEnd = 0
  /** when the previous step ended, written or not (this agent's clock; 0: none yet) */
  private lastStepAt = 0
  /** when the step under way began (null between steps): loopAgeMs */
  private stepStartedAt: number | null = null
  private running = false
  private stepping = false
  private dirty = false
  private timer?: NodeJS.Timeout
  private wakeTimer?: NodeJS.Timeout
  private debounce?: NodeJS.Timeout
  /** the VMs a previous run left were listed (and adopted or killed): the watchdog is armed if any runs */
  private adopted = false
  private readonly onChange = (): void => { this.schedule() }

  constructor (components: DvmmComponents, init: DvmmInit = {}) {
    this.components = components
    this.log = components.log.child('dvmm')
    this.cfg = {
      settleMs: init.settleMs ?? 1500,
      fenceTimeoutMs: init.fenceTimeoutMs ?? 5000,
      takeoverMarginMs: init.takeoverMarginMs ?? 1500,
      tickMs: init.tickMs ?? 500,
      debounceMs: init.debounceMs ?? 20,
      stopGraceMs: init.stopGraceMs ?? 10_000,
      strategy: init.strategy ?? 'spread',
      stallMs: init.stallMs,
      previousFenceMs: init.previousFenceMs,
      lastAliveAt: init.lastAliveAt ?? 0, // 0: none (a first start)
      lastAliveFenceMs: init.lastAliveFenceMs,
      restartGraceMs: init.restartGraceMs ?? 0,
      overlayMoveAfterMs: init.overlayMoveAfterMs ?? OVERLAY_MOVE_AFTER_MS
    }
    this.metrics = new DvmmMetrics(components.registry)
    this.history = new History(() => wallNow(components.clock))
    this.queue = new UpdateQueue({ log: this.log, state: components.state, schedule: () => { this.schedule() } })
    this.local = new LocalVms({
      ...components,
      log: this.log,
      metrics: this.metrics,
      history: this.history,
      enqueue: (fn, opts) => { this.queue.enqueue(fn, opts) },
      schedule: () => { this.schedule() }
    }, { stopGraceMs: this.cfg.stopGraceMs })
    this.reserved = new ReservedAdvert({ ...components, metrics: this.metrics })
    this.fencing = new Fencing({ ...components, log: this.log, metrics: this.metrics, local: this.local }, this.cfg)
    this.roll = new RollJoin({ ...components, enqueue: (fn, opts) => { this.queue.enqueue(fn, opts) } })
    this.grace = new RestartGrace({ ...components, log: this.log, enqueue: (fn, opts) => { this.queue.enqueue(fn, opts) }, onGrace: components.onRestartGrace }, { graceMs: this.cfg.restartGraceMs })
    this.health = new DvmmHealth({ ...components, log: this.log, fence: () => this.fencing.state, nameOf: id => this.nameOf(id), restarting: id => this.restartGraceLeftMs(id) > 0 }, this.cfg.strategy)
    this.claims = new ClaimWatch({
      peerId: components.peerId,
      metrics: this.metrics,
      history: this.history,
      enqueue: (fn, opts) => { this.queue.enqueue(fn, opts) }
    }, { settleMs: this.cfg.settleMs })
  }

  get me (): string { return this.components.peerId }
  /** a node's name: its advert's, else its roll entry's */
  /** a member's clock offset from this node's (ms, theirs minus ours) when past the bound, else undefined */
  clockOffsetOf (id: string): number | undefined {
    const o = this.components.membership.clockOffsets?.().get(id)
    return o?.over === true ? o.offsetMs : undefined
  }

  nameOf (id: string): string { return this.components.membership.members.get(id)?.advert.name ?? this.components.state.read().get('roll', id)?.value.name ?? this.formerNames.get(id) ?? id }
  get config (): Readonly<DvmmService['cfg']> { return this.cfg }

  /**
   * How long the VMs of `id`, a node stopped for a restart (its roll entry's record),
   * may still run there: until the takeover's wait for it ends (decide.ts), as this node
   * counts it (0: no such record, or passed).
   */
  restartGraceLeftMs (id: string): number {
    const restart = this.components.state.read().get('roll', id)?.value.restart
    // the takeover's wait, which holderFenceMs lengthens by the record's fence timeout
    return restart == null || restart.back === true ? 0 : this.fenceLeftMs(id)
  }

  /**
   * How long `id`, a node not alive here, may still run its VMs: until its fence timeout,
   * the holder's notice and the takeover margin have passed since this node last heard it,
   * as a takeover waits (its watchdog or its own fence kills them by then); 0 once passed.
   * A stop asked meanwhile is `stopping` until then (bb51: `vm stop --wait` ended while
   * the run went on).
   */
  fenceLeftMs (id: string): number {
    const reader = this.components.state.read()
    // as a takeover waits: a holder cut off, not dead, learns it only after its notice
    // (rv53), and its silence counts only from when this node has had a majority (rv55: a
    // node back from its own isolation counted from its last word alone)
    const wait = this.takeoverWait(reader)
    const now = this.components.clock.now()
    const since = Math.max(this.fencing.lastHeard(id), takeoverMajoritySince(wait.doc, this.me, wait.nodes, n => this.fencing.voteLock(n, now)))
    const until = since + holderFenceMs(wait.fenceMs, reader.get('roll', id)?.value, MAX_FENCE_TIMEOUT_MS) + wait.notice + this.cfg.takeoverMarginMs
    return Number.isNaN(until) ? Infinity : Math.max(0, until - now)
  }

  /**
   * How long the watchdog of `id`, a node stopped for a restart, may still keep its VMs
   * running, as this node counts it from when it last heard the node (its last feed came
   * before its last word): 0 once it has killed them, or with no such record. The
   * record's fence timeout is the one that goes with that watchdog's (restart-grace.ts).
   */
  restartWatchdogLeftMs (id: string): number {
    const restart = this.components.state.read().get('roll', id)?.value.restart
    if (restart == null || restart.back === true) return 0
    return Math.max(0, this.fencing.lastHeard(id) + watchdogTimeoutFor(restart.fenceMs) - this.components.clock.now())
  }

  /** What a takeover of a dead node's leases waits for now, besides the margin: the longest fence timeout advertised, and the holder's notice (decide.ts) */
  private takeoverWait (reader: Reader): TakeoverWait {
    const doc = docView(reader)
    const nodes = nodeViews(doc, this.components.membership.members, n => reader.labelsOf(n), this.me)
    const detection = this.detectionNow(nodes, this.components.clock.now())
    return { doc, fenceMs: takeoverFenceMs(this.cfg.fenceTimeoutMs, nodes), notice: noticeOf({ doc, nodes, detection }), nodes, windowed: detection?.livenessMs != null }
  }
  /**
   * How members are found silent, as a takeover's wait counts it (holderNoticeMs): the
   * liveness windows count only once every node has advertised one for a silence timeout
   * on end. A holder cut off counts by its liveness table only where its own view has
   * every roll member advertising a window (Fencing), and its view may lag this node's
   * by up to a silence timeout (about three advert refreshes): until then the takeover
   * waits the silence timeout (rv24: members restarting into a release with tables).
   */
  private detectionNow (nodes: readonly NodeView[], now: number): DecideInput['detection'] {
    const d = this.components.membership.detection?.()
    if (d == null) return undefined
    if (d.livenessMs == null || nodes.some(n => n.livenessMs == null)) this.mixedAt = now
    if (now - this.mixedAt < d.silenceMs) return { watchers: d.watchers, silenceMs: d.silenceMs, agents: d.agents }
    // a holder may judge a member by a longer window it advertised before (rv25): the longest
    // seen within a silence timeout counts
    let ms = d.livenessMs!
    for (const n of nodes) if (n.livenessMs! > ms) ms = n.livenessMs!
    if (ms >= this.windowHigh.ms || now - this.windowHigh.at >= d.silenceMs) this.windowHigh = { ms, at: now }
    return { ...d, livenessMs: this.windowHigh.ms }
  }

  /** A dead node's VMs start elsewhere this long after it was last heard of, and why (vgrid ha). */
  failoverWait (): NonNullable<HaReport['failover']> {
    const w = this.takeoverWait(this.components.state.read())
    const { fenceMs, notice, nodes, windowed } = w
    const parts = [`the fence timeout ${fenceMs / 1000} s`]
    if (notice > 0 && windowed) parts.push(`the liveness window ${notice / 1000} s (a node cut off from all loses sight of the others only that long after the cut)`)
    else if (notice > 0) parts.push(`the silence timeout ${notice / 1000} s (${withoutWindow(nodes.filter(n => n.livenessMs == null).map(n => n.name))})`)
    parts.push(`a margin of ${this.cfg.takeoverMarginMs / 1000} s`)
    const held = this.lockHoldMs(w)
    // bb22: ha gave the plain wait while a member back from a restart held takeovers back
    const lock = held > 0 ? `; and none within ${Math.ceil(held / 1000)} s from now: this node's majority counts a member back from a restart only once the vote it may have lent, to keep VMs alive elsewhere, has lapsed` : ''
    const ms = fenceMs + notice + this.cfg.takeoverMarginMs
    const ifLost = held > 0 ? undefined : this.lockedIfLost(w, ms)
    return { ms, why: parts.join(' + ') + lock, ...held > 0 ? { lockedMs: held } : {}, ...ifLost != null ? { ifLost } : {} }
  }

  /** the longest wait the loss of one member now would meet past `plainMs` for vote locks, with whose loss and whose locks (lockedWaitsIfLost) */
  private lockedIfLost ({ doc, nodes }: TakeoverWait, plainMs: number): NonNullable<HaReport['failover']>['ifLost'] {
    const now = this.components.clock.now()
    const lock = (id: string): number => this.fencing.voteLock(id, now)
    const waits = lockedWaitsIfLost(doc, this.me, nodes, lock, plainMs, now)
    if (waits.length === 0) return undefined
    const name = (id: string): string => nodes.find(n => n.id === id)?.name ?? id
    const ms = Math.max(...waits.map(w => w.ms))
    return { nodes: waits.map(w => name(w.node)).sort(), ms, locked: [...doc.roll.keys()].filter(id => lock(id) > now).map(name).sort() }
  }

  /**
   * How long a vote lock still holds back this node's takeovers of a dead node's leases
   * (0: none does; a majority formed a moment ago is the plain wait, not this): a member
   * back from a restart counts towards the majority only once the vote it may have lent
   * lapses (voteLockedUntil, decide.ts).
   */
  voteLockHoldsMs (): number { return this.lockHoldMs(this.takeoverWait(this.components.state.read())) }

  private lockHoldMs ({ doc, nodes, fenceMs, notice }: TakeoverWait): number {
    const now = this.components.clock.now()
    const since = takeoverMajoritySince(doc, this.me, nodes, id => this.fencing.voteLock(id, now))
    // only what a vote lock adds (vm ls says a member back from a restart holds it; CI
    // read "back from a restart" for a majority formed a moment ago)
    if (!Number.isFinite(since) || since <= takeoverMajoritySince(doc, this.me, nodes, () => -Infinity)) return 0
    // as a takeover counts it, the holder's notice included (fence.ts takeover; rv46)
    return Math.max(0, since + fenceMs + notice + this.cfg.takeoverMarginMs - now)
  }

  /** the fence timeout this node runs with now: its setting, or shorter (activeFenceMs) */
  get activeFenceMs (): number { return this.fencing.activeMs }
  get fenceState (): FenceDecision | undefined { return this.fencing.state }
  /** a create waits this long for a VM of the same name made elsewhere at the same moment (routes.ts) */
  get nameSettleMs (): number { return this.cfg.settleMs }
  routes (app: FastifyInstance): void { dvmmRoutes(this)(app) }

  async start (): Promise<void> {
    this.running = true
    this.fencing.start()
    // a node that was in view before this run may have had no window: as if one were seen now (rv25)
    this.mixedAt = this.components.clock.now()
    this.reserved.start()
    // before any step: VMs a previous run of this agent left are adopted, not started again
    await this.local.start()
    this.adopted = true
    await this.grace.start()
    this.components.state.on('changed', this.onChange)
    this.components.membership.on('transition', this.onChange)
    // written by a step that sees a majority of the roll (mayChangeRoll)
    this.roll.start()
    this.lastTickAt = this.components.clock.now()
    this.timer = setInterval(() => { this.tick() }, this.cfg.tickMs)
    this.timer.unref()
    this.schedule()
  }

  /**
   * graceful: this node leaves the grid: its VMs stop, its leases and roll entry go;
   * unless `leave: false` (a restart): they stay, and the VMs run on for the next run
   */
  async stop (opts: { graceful: boolean, leave?: boolean } = { graceful: true }): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    clearTimeout(this.wakeTimer)
    clearTimeout(this.debounce)
    this.reserved.stop()
    this.components.state.off('changed', this.onChange)
    this.components.membership.off('transition', this.onChange)
    // a step stuck on its write (a hung disk) must not hold the stop forever: it acts no more once it returns
    const until = this.components.clock.now() + (opts.graceful ? this.cfg.stopGraceMs : 0)
    while (this.stepping && this.components.clock.now() < until) await new Promise(resolve => setTimeout(resolve, 5))
    if (opts.graceful && opts.leave === false) {
      const roll = this.components.state.read().list('roll').map(e => e.node)
      await this.grace.atStop({ activeFenceMs: this.fencing.activeMs, liveVms: this.local.live.size, majority: this.fencing.state?.majority === true, onRoll: roll.includes(this.me), roll, marginMs: this.cfg.takeoverMarginMs })
    }
    if (opts.graceful && opts.leave !== false) {
      // every VM stopped, starts in flight included; a lease goes only once its VM is
      // confirmed stopped: one left running keeps its lease and this node its roll entry
      // (the watchdog stays armed and kills it once this agent is gone, before a takeover)
      const left = await this.local.stopAll('node leaving')
      if (left.size > 0) this.log.warn('VMs still run after the stop: their leases and this node\'s roll entry stay', { vms: [...left] })
      const queued = this.queue.takeAll()
      const at = Math.floor(wallNow(this.components.clock))
      await this.components.state.write(w => {
        queued(w)
        for (const l0 of w.reader.list('leases')) {
          const l = w.current('leases', l0.vm)
          if (l == null || l.holder !== this.me || left.has(l.vm)) continue
          // parked, not removed: placed anew elsewhere at the next epoch (the VM's, and its
          // volumes' writer epochs, only go up), its history carried on also by a node that
          // never saw it (this one, back after the leave); a stopped or failed one stays as
          // it is until started again; the lease of a VM gone (or made anew) goes
          const vm = w.reader.get('vms', l.vm)?.value
          if (vm == null || !sameVm(l.made, vm.created)) w.remove('leases', l.vm)
          else if (!idle(l)) w.update('leases', l.vm, parkedLease(l, `stopped on ${this.components.config.name}: node leaving`, at, this.components.config.name))
        }
        if (left.size === 0) w.remove('roll', this.me)
      }, 'dvmm: leave').catch((err: Error) => { this.log.warn('could not record the leave', { err: err.message }) })
    }
    await this.grace.stop()
    await this.local.stop()
  }

  /** Queues a document update for the next step (one change for many updates). */
  enqueue (fn: (w: Writer) => void, opts: { key?: string, written?: () => void } = {}): void { this.queue.enqueue(fn, opts) }

  /**
   * How long the decision step under way has been running, or 0 between steps: the
   * agent feeds the fencing watchdog only while this stays small (NodeRuntime.feedWhile),
   * so a step stuck on a write lets the watchdog fire. Counted per step, not since the
   * last one ended: steps are spaced by design (a long step spaces the next by four
   * times its length), and an idle gap must not starve the watchdog.
   */
  loopAgeMs (): number {
    if (!this.running || this.stepStartedAt == null) return 0
    return Math.max(0, this.components.clock.now() - this.stepStartedAt)
  }

  schedule (): void {
    if (!this.running || this.debounce != null) return
    // a step that took long (many waiting VMs) spaces the next: DVMM keeps to a fifth of the loop
    const gap = Math.max(this.cfg.debounceMs, this.lastStepMs * 4 - (this.components.clock.now() - this.lastStepEnd))
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      void this.reconcile()
    }, gap)
  }

  async reconcile (): Promise<void> {
    if (this.stepping) { this.dirty = true; return }
    this.stepping = true
    try {
      do {
        this.dirty = false
        this.stepStartedAt = this.components.clock.now()
        try {
          await this.step()
        } finally {
          this.stepStartedAt = null
          // the next step's lateness counts from here (failed or not: creditWaits), and
          // the wait for this step's write (its fsync) is not the loop being late
          this.lastStepEnd = this.lastStepAt = this.components.clock.now()
        }
      } while (this.dirty && this.running)
    } catch (err) {
      this.repeats.log(this.log, 'warn', `step:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'decision step failed', { err: (err as Error).message })
    } finally {
      this.stepping = false
    }
  }

  /** Writes the queued updates, claims and releases in one change; returns the claims written. */
  private async flush (claims: Decisions['claims'], release: Decisions['release']): Promise<Decisions['claims']> {
    // on failure nothing was written: the updates go out with a later step (claims are decided again)
    return await this.queue.write(w => {
      // one claim the schema refuses must not cost the others, nor the queued updates
      const ok = claims.filter(c => {
        // decided again on the next read (claimStillApplies says why)
        const spec = w.reader.get('vms', c.vm)?.value
        if (!claimStillApplies(w.reader.get('leases', c.vm)?.value, c) || !claimMatchesSpec(spec, c)) { this.metrics.claimsStale.inc(); return false }
        try {
          // over a parked lease: a placement anew (no `from`, no failover in its history)
          const made = spec?.created
          const disks = spec?.spec.volumes ?? []
          const before = w.reader.get('leases', c.vm)?.value
          // a takeover carries on the VM's recent crashes (a placement anew, over a parked lease, starts with none)
          const crashes = c.from != null && c.parked !== true && before != null && sameVm(before.made, made) ? recentCrashes(before.crashes, w.at) : []
          const lease = { vm: c.vm, holder: this.me, epoch: c.epoch, cpu: c.cpu, memoryBytes: c.memoryBytes, status: 'claimed' as const, ...(c.from != null && c.parked !== true ? { from: c.from } : {}), ...(made != null ? { made } : {}), disks: [...disks], ...(crashes.length > 0 ? { crashes } : {}) }
          // its history carries on the log of the lease taken over, or of the last one this node saw (not a former VM's of its name)
          w.put('leases', { ...lease, log: claimLog(before?.log != null ? { log: before.log, made: before.made } : this.history.carried(c.vm), { ...lease, at: w.at, by: this.me }, n => this.nameOf(n)) })
          return true
        } catch (err) {
          this.log.warn('a claim was refused', { vm: c.vm, epoch: c.epoch, err: (err as Error).message })
          return false
        }
      })
      for (const r of release) {
        const l = w.current('leases', r.vm)
        if (l?.holder !== this.me) continue
        // a VM that should run and leaves a draining node is placed anew over its parked
        // lease at the next epoch (its volumes' writer epochs follow), with its history:
        // parked by its stop (local-vms.ts), or here when nothing of it ran
        // (a claim outdated by a vm update, or on a node without the labels its VM needs, likewise: decide)
        const vm = w.reader.get('vms', r.vm)?.value
        const redo = r.why === OUTDATED_LEASE || r.why === UNFIT_LEASE
        if ((r.why === 'node draining' || redo) && (movesOn(l, vm) || (redo && vm != null && sameVm(l.made, vm.created) && Number.isSafeInteger(l.epoch + 1)))) {
          if (!isParked(l)) w.update('leases', r.vm, parkedLease(l, `stopped on ${this.components.config.name}: ${r.why}`, Math.floor(wallNow(this.components.clock)), this.components.config.name))
        } else w.remove('leases', r.vm)
      }
      return ok
    }, 'dvmm')
  }

  private lastTickAt = 0
  /** the machine's sleeps, which the tick's clock does not count (watchdog/sleep-clock.ts) */
  private readonly sleep = new SleepClock()
  private sleptAtTick = 0
  /** since when (this clock) the overlay has been down, as the steps saw it */
  private overlayDownSince: number | null = null

  /** members this node has not reached while others do, since when (this clock), as the steps saw it */
  private readonly cutSince = new Map<string, number>()
  /**
   * when this run last claimed each lease it holds (this clock): a VM placed here after a
   * cut began stays (cutMoves); ClaimWatch forgets its claims once they settle
   */
  private readonly claimedHereAt = new Map<string, number>()

  /** what a partial cut moves (cutMoves): since when each member is out of reach here, and each VM's link peers; undefined: none is */
  private cutNow (now: number, doc: DocView): DecideInput['cut'] {
    const out = this.components.membership.outOfReach?.() ?? new Map()
    for (const id of [...this.cutSince.keys()]) if (!out.has(id)) this.cutSince.delete(id)
    for (const id of out.keys()) if (!this.cutSince.has(id)) this.cutSince.set(id, now)
    // out of reach is libp2p's word (TCP); the link goes by WireGuard (UDP): moved only
    // once the tunnel to that node carries nothing too, where the LCM can tell (rv44)
    const tunnelDown = this.components.network?.tunnelDown
    const since = new Map([...this.cutSince].filter(([id]) => tunnelDown == null || tunnelDown(id)))
    for (const vm of [...this.claimedHereAt.keys()]) if (doc.leases.get(vm)?.winner.holder !== this.me) this.claimedHereAt.delete(vm)
    if (since.size === 0) return undefined
    // the links that carry traffic when whole, as the LCM applies them
    const peers = doc.peers ?? new Map()
    return { since, peers: vm => peers.get(vm) ?? [], claimedAt: this.claimedHereAt }
  }

  /** this node's overlay: down since when and why (null: up, or no overlay) */
  private overlayDown (now: number): { why: string, since: number } | null {
    const why = this.components.network?.overlayDown?.() ?? null
    if (why == null) this.overlayDownSince = null
    else this.overlayDownSince ??= now
    return why == null ? null : { why, since: this.overlayDownSince! }
  }

  private tick (): void {
    const now = this.components.clock.now()
    // with the time the machine slept since the last tick: the clock stood still meanwhile
    const slept = this.sleep.slept
    const late = now - this.lastTickAt - this.cfg.tickMs + (slept - this.sleptAtTick)
    this.sleptAtTick = slept
    this.lastTickAt = now
    if (late >= (this.cfg.stallMs ?? watchdogTimeoutFor(this.fencing.activeMs))) this.fencing.stalled(now, late)
    // the fence is judged and carried out here too, not only in a step: a step stuck on
    // its write (a hung fsync) must not keep a fenced node's VMs running
    try {
      this.fencing.check(now)
    } catch (err) {
      this.log.warn('fence check failed', { err: (err as Error).message })
    }
    this.schedule()
  }

  private async step (): Promise<void> {
    this.metrics.reconciles.inc()
    const t0 = performance.now()
    const now = this.components.clock.now()
    const reader = this.components.state.read()
    const doc = docView(reader)
    const members = this.components.membership.members
    this.fencing.hear(members)
    const nodes = nodeViews(doc, members, n => reader.labelsOf(n), this.me)
    const fence = this.fencing.check(now)
    this.roll.step(doc, members)
    this.grace.step(doc, fence.majority, this.fencing.activeMs + this.cfg.takeoverMarginMs, this.adopted && (this.components.ownWatchdog?.() ?? true))
    // a step later than a timer tick (plus the spacing a slow step asks for) found the
    // loop busy: the VMs' fallback waits do not count what it lost (creditWaits)
    if (this.lastStepAt > 0 && this.unplacedSince.size > 0) {
      this.unplacedSince = creditWaits(this.unplacedSince, now - this.lastStepAt, Math.max(this.cfg.tickMs, this.lastStepMs * 4) + this.cfg.debounceMs)
    }
    this.claims.watch(doc, now)
    this.claims.settleContests(doc)
    for (const [id, e] of doc.roll) if (this.formerNames.get(id) !== e.name && this.formerNames.size < 10_000) this.formerNames.set(id, e.name)
    this.history.observe(new Map([...doc.leases].map(([k, l]) => [k, l.winner])), doc.vms, id => this.nameOf(id), this.me)
    const cap = members.get(this.me)?.advert.capacity ?? { cpu: 0, memoryBytes: 0 }
    if (doc.roll.get(this.me)?.draining === true) this.drainSeenAt ??= now
    else this.drainSeenAt = undefined
    const d = decide({
      me: this.me,
      now,
      doc,
      nodes,
      holderAlive: id => id === this.me || members.get(id)?.state === 'alive' || members.get(id)?.state === 'suspect',
      lastHeard: id => this.fencing.lastHeard(id),
      detection: this.detectionNow(nodes, now),
      voteLock: id => this.fencing.voteLock(id, now),
      nameOf: id => this.nameOf(id),
      volumePath: id => reader.get('volumes', id)?.value.path ?? id,
      fence,
      runs: this.local.runs,
      busy: this.local.busy,
      claimedAt: this.claims.claimedAt,
      conflictSeenAt: this.claims.conflictSeenAt,
      unplacedSince: this.unplacedSince,
      capacity: cap,
      overlay: this.overlayDown(now),
      cut: this.cutNow(now, doc),
      startedAt: this.fencing.startedAtMs,
      othersExpected: [...members.values()].some(m => m.nodeId !== this.me && m.state !== 'left'),
      synced: this.components.gridSynced?.() ?? true,
      ...(this.drainSeenAt != null ? { drainSeenAt: this.drainSeenAt } : {}),
      cfg: { settleMs: this.cfg.settleMs, fenceTimeoutMs: this.cfg.fenceTimeoutMs, takeoverMarginMs: this.cfg.takeoverMarginMs, strategy: this.cfg.strategy, overlayMoveAfterMs: this.cfg.overlayMoveAfterMs, cutMoveAfterMs: this.cfg.overlayMoveAfterMs }
    })
    this.lastStepMs = performance.now() - t0 // the CPU part of the step (not the write's fsync)
    const waiting = new Set(d.unplaced)
    for (const vm of waiting) if (!this.unplacedSince.has(vm)) this.unplacedSince.set(vm, now)
    for (const vm of this.unplacedSince.keys()) if (!waiting.has(vm)) this.unplacedSince.delete(vm)
    if (d.refused.length > 0) this.metrics.claimsRefused.inc(d.refused.length)
    this.health.noteBlocked(d.blocked)
    // kills and stops before this step's write: a write that fails or hangs must not keep them
    for (const k of d.kill) void this.local.act(k.vm, 'kill', k.why)
    for (const s of d.stop) void this.local.act(s.vm, 'stop', s.why)
    for (const p of d.park) this.local.park(p.vm, p.why)
    this.local.sweep(doc)
    // one change per step: queued status updates, claims and releases together
    let unwritten: unknown
    if (d.claims.length > 0 || d.release.length > 0 || this.queue.size > 0) {
      const written = await this.flush(d.claims, d.release).catch((err: unknown) => { unwritten = err; return [] })
      const at = this.components.clock.now()
      // what the others hold, once for all claims of the step (kept for vm show)
      const usage = written.length > 0 ? usageOf(holdings(doc, waiting)) : undefined
      for (const c of written) {
        this.claims.claimed(c.vm, at)
        this.claimedHereAt.set(c.vm, at)
        this.metrics.claims.inc({ kind: c.from != null && c.parked !== true ? 'takeover' : 'place' })
        const vm = doc.vms.get(c.vm)
        if (vm != null) this.history.decisions.set(c.vm, { at: wallNow(this.components.clock), ranking: rank(demandOf(vm, doc), nodes, usage!, { strategy: this.cfg.strategy }) })
      }
      if (written.length > 0) this.dirty = true // settle timers start now
    }
    if (!this.running) return // stopped while this step wrote
    if (d.start.length > 0) {
      // judged again on what arrived while the write waited (startsStillDue says why)
      const fresh = docView(this.components.state.read())
      for (const vm of startsStillDue(d.start, doc, fresh, this.me, this.fencing.check(this.components.clock.now()).mayClaim)) void this.local.startVm(vm, fresh)
    }
    this.reserved.publish(doc)
    if (Number.isFinite(d.wakeInMs) && this.running) {
      clearTimeout(this.wakeTimer)
      this.wakeTimer = setTimeout(() => { this.schedule() }, d.wakeInMs)
    }
    // the starts above needed no write of this step's (their leases are in the document
    // already: a crashed VM restarted under its own lease while a full disk refuses the
    // crash's update, which stays queued); the failure is still the step's
    if (unwritten != null) throw unwritten
  }

  /** AppLogic's "HA ok", and the VMs that run nowhere (health.ts) */
  ha (): HaReport { return { ...this.health.ha(), failover: this.failoverWait() } }

  /** what draining `target` would strand, with `leaving` leaving too (default: every node draining now; crdt/placement/ha.ts drainCheck) */
  drainCheck (target: string, leaving?: ReadonlySet<string>): StrandedVms[] {
    const reader = this.components.state.read()
    const doc = docView(reader)
    const nodes = nodeViews(doc, this.components.membership.members, n => reader.labelsOf(n), this.me).filter(n => n.alive)
    const demands = new Map([...doc.vms.values()].filter(v => doc.leases.has(v.id)).map(v => [v.id, demandOf(v, doc)]))
    const draining = leaving ?? new Set(reader.list('roll').filter(e => e.draining === true && e.node !== target).map(e => e.node))
    return drainCheck(demands, nodes, holdings(doc), target, draining, { strategy: this.cfg.strategy })
  }

  /** for /v1/status: VMs that run nowhere, this node without a majority or fenced (health.ts) */
  problems (): HealthProblem[] { return this.health.problems() }
}
