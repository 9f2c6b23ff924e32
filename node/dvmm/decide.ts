// One reconcile step of DVMM, as a pure function: given the document, membership,
// what this node runs and the clock, what to claim, start, stop, kill and release.
// The service (service.ts) feeds it and carries the answer out.
import {
  formerRun, missingLabels, positionsOf, reservedBy, canReserve, settle, takeover, takeoverFenceMs, holderFenceMs, holderNoticeMs, majoritySince, voters, idle, isParked, type Capacity, type FenceDecision, type NodeView, type Strategy
} from '../../crdt/placement/index.ts'
import type { Lease, Vm } from '../../crdt/index.ts'
import { demandOf, holdings, type DocView } from './view.ts'
import { MAX_FENCE_TIMEOUT_MS } from './timing.ts'
import { diskOwners, diskTaken, diskTakenWhy } from './disk-owner.ts'
import { sameVm } from './history.ts'
import { OVERLAY_MOVE_AFTER_MS, cutMoves, overlayMoves } from './overlay-moves.ts'

/** settle windows a VM waits for its best-ranked node before the next one may claim too */
const FALLBACK_SETTLES = 4

export interface DecideConfig {
  settleMs: number
  fenceTimeoutMs: number
  takeoverMarginMs: number
  strategy: Strategy
  /** this node's overlay down this long moves its VMs with connections (overlay-moves.ts; default OVERLAY_MOVE_AFTER_MS) */
  overlayMoveAfterMs?: number
  /** a link's other end on a node this one has not reached this long moves the VM (overlay-moves.ts cutMoves; default OVERLAY_MOVE_AFTER_MS) */
  cutMoveAfterMs?: number
}

export interface DecideInput {
  me: string
  now: number
  doc: DocView
  nodes: readonly NodeView[]
  /** the holder is alive or suspect in this agent's table (not yet given up on) */
  holderAlive: (node: string) => boolean
  /** a node's name, for the reasons given (default: its id) */
  nameOf?: (node: string) => string
  /** a volume's path, for the reasons given (default: its id) */
  volumePath?: (volume: string) => string
  /** local time the node was last heard of */
  lastHeard: (node: string) => number
  /** how members are found silent (membership's detection): a takeover in a large roll waits for the holder's silence timeout too (fence.ts holderNoticeMs); absent: every member watches every other */
  detection?: { watchers: number, silenceMs: number, agents?: number, livenessMs?: number }
  /** until when a node's vote may not count towards a takeover (a vote it may have lent while away for a restart: Fencing.voteLock); absent: never locked */
  voteLock?: (node: string) => number
  fence: FenceDecision
  /** VMs this node's drivers run (started or adopted), by VM id */
  runs: ReadonlySet<string>
  /** VMs with a driver operation in flight: left alone this step (unless fenced) */
  busy: ReadonlySet<string>
  /** when this node claimed a lease (absent: a lease from before this run: settled) */
  claimedAt: ReadonlyMap<string, number>
  conflictSeenAt: ReadonlyMap<string, number>
  /** since when each VM has been waiting for a holder (this agent's clock; time its loop lost is not counted, see creditWaits) */
  unplacedSince: ReadonlyMap<string, number>
  capacity: Capacity
  /** this node's overlay (WireGuard) is down, since when (`now`'s clock) and why; absent or null: up, or no overlay */
  overlay?: { why: string, since: number } | null
  /** members this node does not reach while others do, since when (`now`'s clock), and each VM's link peers (VM ids); absent: no such moves */
  cut?: { since: ReadonlyMap<string, number>, peers: (vm: string) => readonly string[], claimedAt?: ReadonlyMap<string, number> }
  /**
   * when this run of the agent started (`now`'s clock; absent: long ago). A node alone on
   * its roll (aloneOnRoll) counts its own majority only from then: its document may be
   * an old one (a data dir restored from a backup taken while it was the grid's only
   * node), whose leases the grid has long moved on from, and it learns so only as it
   * syncs (rv21: it started its old leases at once, while they ran elsewhere)
   */
  startedAt?: number
  /** other agents are known here (the member table): a node alone on its roll also claims nothing before its stale leases may start */
  othersExpected?: boolean
  /**
   * this node holds the document some live member announced (absent: taken as so): alone
   * on its roll with others known, it starts no stale lease and claims nothing before
   * (rv25: a document that synced later than the wait still started old leases)
   */
  synced?: boolean
  /** when (`now`'s clock) this node first saw itself draining in this run (absent: not draining, or not known) */
  drainSeenAt?: number
  cfg: DecideConfig
}

/**
 * A drain moves this node's VMs off only once it has stood this many settle windows: a
 * drain begun through another node at the same moment may strand a VM together with
 * this one, and the later of the two is undone after one settle window (routes.ts
 * settleDrain); its VMs must not have been stopped by then (bb36).
 */
export const DRAIN_SETTLE_WINDOWS = 3

/** the roll's only voter is this node (its roll holds only it, or nothing: fence.ts voters) */
export const aloneOnRoll = (roll: Iterable<string>, me: string): boolean => {
  const v = voters(roll, me)
  return v.size === 1 && v.has(me)
}

/**
 * `from`: the holder of the lease claimed over (its epoch is `epoch` - 1): a takeover,
 * or with `parked` a placement anew over a parked lease (nothing runs under it: the new
 * lease names no `from`)
 */
/** `parked`: placed anew over a lease nothing runs under (no failover); `former`: that lease was a former VM's of the name, ended */
/** `made`: the `created` of the VM spec the claim was decided for (absent: a spec without one) */
export interface Claim { vm: string, epoch: number, cpu: number, memoryBytes: number, made?: number, from?: string, parked?: true, former?: true }

/**
 * Whether a claim decided on one read of the document still applies to the lease the
 * write finds (`current`: the lease as the writer reads it, undefined when there is
 * none): a placement finds no lease, a takeover finds the lease it took over, a
 * placement over a parked lease finds it still parked (over a former VM's ended lease,
 * still ended). A step writes after its read
 * (the write waits for the one before it), and a claim that arrived meanwhile must not
 * be overwritten: a put replaces every value its writer has seen, so that claim would
 * vanish without a contest while its node, which may have started the VM, still counts
 * it as its own.
 */
export function claimStillApplies (current: Pick<Lease, 'holder' | 'epoch' | 'status' | 'parked'> | undefined, c: Pick<Claim, 'epoch' | 'from' | 'parked' | 'former'>): boolean {
  if (c.from == null) return current == null
  if (current == null || current.holder !== c.from || current.epoch !== c.epoch - 1) return false
  return c.former === true ? idle(current) : c.parked !== true || isParked(current)
}

/** why a lease is given up by decide when its VM's size or volumes changed since the claim (parked: placed anew at the next epoch) */
export const OUTDATED_LEASE = 'its size or volumes were changed (vm update) since this lease was claimed: placed anew as it is now'
/** why a claim not started yet is given up when its node lacks a label the VM needs now (parked: placed anew at the next epoch) */
export const UNFIT_LEASE = 'this node lacks a label the VM needs now (its constraints, or the node\'s labels, changed since the claim): placed anew'

/**
 * Whether a lease was claimed for another size or other disks than its VM's spec names
 * now (pure): its reservation, and the disks its holder would fence and open, are not
 * the VM's any more.
 */
export const leaseOutdated = (l: Pick<Lease, 'cpu' | 'memoryBytes' | 'disks'>, vm: Pick<Vm, 'spec'>): boolean =>
  l.cpu !== vm.spec.cpu || l.memoryBytes !== vm.spec.memoryBytes || otherDisks(l, vm)

/**
 * Whether a lease names other disks than its VM's spec now (pure). A lease without
 * `disks` was claimed by an earlier release, which wrote none for a VM without volumes:
 * not judged (its VMs would all move at their next start after an upgrade).
 */
export const otherDisks = (l: Pick<Lease, 'disks'>, vm: Pick<Vm, 'spec'>): boolean =>
  l.disks != null && l.disks.join('\n') !== vm.spec.volumes.join('\n')

/** why a run is stopped whose volumes were changed (vm update) after its lease was claimed: a start that raced the update (parked: placed anew) */
export const DISKS_CHANGED = 'its volumes were changed (vm update) after this run was placed: stopped, and placed anew with them'

/**
 * Whether the VM a claim was decided for is still the one in the document, with the
 * demand it reserves (pure): a `vm rm` and `vm create` of the same name between a step's
 * read and its write (which waits for the one before it) would otherwise reserve the
 * old VM's cpu and memory for the new one, which then runs with its own (rv21).
 */
export function claimMatchesSpec (spec: Pick<Vm, 'created' | 'spec'> | undefined, c: Pick<Claim, 'made' | 'cpu' | 'memoryBytes'>): boolean {
  return spec != null && spec.created === c.made && spec.spec.cpu === c.cpu && spec.spec.memoryBytes === c.memoryBytes
}

export interface Decisions {
  claims: Claim[]
  /** claims the ranking gave this node but its reservations refused (invariant 2) */
  refused: Array<{ vm: string, reason: string }>
  start: string[]
  /** graceful stop; the lease is released afterwards */
  stop: Array<{ vm: string, why: string }>
  kill: Array<{ vm: string, why: string }>
  /** leases of this node to delete now (nothing runs) */
  release: Array<{ vm: string, why: string }>
  /**
   * leases of this node whose VM is desired stopped and runs nothing here: kept, set to
   * `stopped`, so that the lease names the node that last ran it (its console is there)
   * until it is started again (which places it anew) or removed
   */
  park: Array<{ vm: string, why: string }>
  /** VMs without a (live) holder, by id */
  unplaced: string[]
  /** of those, the ones no node can take now */
  fitsNowhere: string[]
  /** VMs this node would take over but cannot, with the reason (a lease epoch at the schema's maximum) */
  blocked: Array<{ vm: string, reason: string }>
  /** ms until a timer (settle, takeover, fallback) may change the answer */
  wakeInMs: number
}

/**
 * The waits of unplaced VMs (`since`: when each started waiting) with the time this
 * agent's loop lost taken out: a step that comes more than `onTimeMs` after the previous
 * one counts only onTimeMs. A busy or stalled loop holds back the best-ranked node's claim
 * and its journey here as much as this step (in a grid under load, every loop turn takes
 * long), and a fallback counted in wall time then claimed beside it: half the VMs of a
 * bulk create were contested. Returns new waits (pure); an on-time step changes nothing.
 */
/**
 * The starts a step decided that still hold on a later read (`after`), with the fence
 * judged then: the step's write waits for the one before it, and meanwhile a claim
 * that wins may have arrived, the VM may have been stopped or removed, or the node
 * fenced. A start needs the lease still this node's at the same epoch with no claim
 * it had not seen, not left stopped or failed meanwhile (a parked lease, which others
 * may place anew over, never runs), and the VM still desired running.
 */
export function startsStillDue (starts: readonly string[], before: DocView, after: DocView, me: string, mayClaim: boolean): string[] {
  if (!mayClaim) return []
  return starts.filter(id => {
    const was = before.leases.get(id)
    const now = after.leases.get(id)
    return was != null && now != null && now.winner.holder === me && now.winner.epoch === was.winner.epoch && !idle(now.winner) &&
      now.claims.every(c => was.claims.some(w => w.holder === c.holder && w.epoch === c.epoch)) && after.vms.get(id)?.desired === 'running' &&
      // an update merged while the step wrote (rv55): the next step parks it instead
      !leaseOutdated(now.winner, after.vms.get(id)!)
  })
}

export function creditWaits (since: ReadonlyMap<string, number>, gapMs: number, onTimeMs: number): Map<string, number> {
  const lost = Math.max(0, gapMs - onTimeMs)
  return new Map([...since].map(([vm, at]) => [vm, at + lost]))
}

/**
 * The volumes a run of a removed VM (or of a former VM of a name made again) may still
 * have open, from its lease (not idle; `disks`, recorded at claim): held while its holder
 * may run it (this node, alive, or away within its takeover wait; past that, its watchdog
 * ended it). `vm rm` while a VM's node was away (stopped for a restart) freed its disk at
 * once, and a tester's new VM ran on it beside the old guest; the epochs kept the data.
 */
function disksOfFormerRuns (i: DecideInput, since: number, fenceMs: number, noticeMs: number): Map<string, { vm: string, holder: string }> {
  const out = new Map<string, { vm: string, holder: string }>()
  for (const [id, l] of i.doc.leases) {
    const w = l.winner
    if (w.disks == null || w.disks.length === 0 || !formerRun(w, i.doc.vms.get(id))) continue
    if (w.holder !== i.me && !i.holderAlive(w.holder) && takeover({ holderAlive: false, holderLastHeard: i.lastHeard(w.holder), majoritySince: since, now: i.now, fenceTimeoutMs: holderFenceMs(fenceMs, i.doc.roll.get(w.holder), MAX_FENCE_TIMEOUT_MS), marginMs: i.cfg.takeoverMarginMs, noticeMs }).allowed) continue
    for (const v of w.disks) out.set(v, { vm: id, holder: w.holder })
  }
  return out
}

/**
 * Since when this node has seen a majority of the roll, as a takeover counts it
 * (majoritySince), a member's vote counting only from `voteLock` (a vote a restarting
 * node may have lent to keep others' VMs alive counts once no one counts it lent,
 * voteLockedUntil; absent: none locked). Pure.
 *
 * A lent vote keeps a holder's VMs alive only where it makes a majority there: once the
 * members in sight that cannot have lent a vote (no restart record) are half the roll or
 * more, no holder out of sight can have one, with every lent vote, and the locks hold
 * nothing back (bb20: after a routine restart of a node of four, the crash of another
 * waited a minute for the lock where the crashed one, alone with the lent vote, had 2
 * of 4). That holds from when the last of those needed came into sight: the majority
 * counts from then at the earliest (rv23: a member that came back from a restart, then
 * another that crossed over, dropped the locks and dated the majority to the first).
 */
export function takeoverMajoritySince (doc: Pick<DocView, 'roll'>, me: string, nodes: readonly NodeView[], voteLock: (node: string) => number = () => -Infinity): number {
  const byId = new Map(nodes.map(n => [n.id, n]))
  const roll = [...doc.roll.keys()]
  /** since when a member is alive here (undefined: it is not; this node: always) */
  const aliveSince = (id: string): number | undefined => id === me ? -Infinity : byId.get(id)?.alive === true ? byId.get(id)!.aliveSince ?? -Infinity : undefined
  const locked = majoritySince(roll, me, id => { const s = aliveSince(id); return s === undefined ? undefined : Math.max(s, voteLock(id)) }, voteLock(me))
  // in sight since when, of the members in sight with no vote to lend
  const sure = roll.filter(id => !Number.isFinite(voteLock(id))).map(aliveSince).filter(s => s !== undefined).sort((a, b) => a - b)
  const need = Math.ceil(roll.length / 2)
  if (need === 0 || sure.length < need) return locked
  return Math.min(locked, Math.max(majoritySince(roll, me, aliveSince), sure[need - 1]!))
}

/**
 * For each member in sight: how long from `now` a takeover of its leases would wait were
 * it lost now, where vote locks hold that past the plain wait (`waitMs`: what a takeover
 * waits after the majority it counts from, fence timeout + notice + margin: fence.ts
 * takeover) (pure). The locks hold nothing back while the members in sight without a
 * vote to lend are half the roll, so `vgrid ha` read the plain wait while losing one of
 * those would wait for them (bb47: after routine restarts of two nodes of four, ha said
 * 6.5 s and a crash of a third then waited 55 s). This node's own loss is judged from
 * another member in sight, with this node's view of the others.
 */
export function lockedWaitsIfLost (doc: Pick<DocView, 'roll'>, me: string, nodes: readonly NodeView[], voteLock: (node: string) => number, waitMs: number, now: number): Array<{ node: string, ms: number }> {
  const out: Array<{ node: string, ms: number }> = []
  const inSight = (n: NodeView): boolean => (n.id === me || n.alive) && doc.roll.has(n.id)
  for (const x of nodes) {
    if (!inSight(x)) continue
    const judge = x.id !== me ? me : nodes.find(n => n.id !== me && inSight(n))?.id
    if (judge == null) continue
    // the judge is in sight of itself always (takeoverMajoritySince); this node, when judged lost, is not
    const without = nodes.map(n => n.id === x.id ? { ...n, alive: false } : n.id === me ? { ...n, alive: true, aliveSince: n.aliveSince ?? -Infinity } : n)
    const since = takeoverMajoritySince(doc, judge, without, voteLock)
    // no majority left at all is `noMargin`'s to say; a lock that holds nothing back is the plain wait
    if (!Number.isFinite(since) || since <= takeoverMajoritySince(doc, judge, without) || since <= now) continue
    out.push({ node: x.id, ms: since + waitMs - now })
  }
  return out
}

/** how much later than this node a holder cut off from all may notice it (fence.ts holderNoticeMs) */
export const noticeOf = (i: Pick<DecideInput, 'doc' | 'detection' | 'nodes'>): number =>
  holderNoticeMs(Math.max(i.doc.roll.size, i.detection?.agents ?? 0), i.detection, i.nodes)

export function decide (i: DecideInput): Decisions {
  const d: Decisions = { claims: [], refused: [], start: [], stop: [], kill: [], release: [], park: [], unplaced: [], fitsNowhere: [], blocked: [], wakeInMs: Infinity }
  const wake = (ms: number): void => { d.wakeInMs = Math.min(d.wakeInMs, Math.max(1, ms)) }
  if (i.fence.fenced) {
    // busy ones too: a graceful stop's grace time or a guest's boot may outlast the takeover wait
    for (const vm of new Set([...i.runs, ...i.busy])) d.kill.push({ vm, why: `fenced: ${i.fence.reason}` })
    return d
  }
  const meNode = i.nodes.find(n => n.id === i.me)
  // draining, and for long enough that a drain undone would have been seen (DRAIN_SETTLE_WINDOWS)
  const drains = meNode?.draining === true && (i.drainSeenAt == null || i.now - i.drainSeenAt >= DRAIN_SETTLE_WINDOWS * i.cfg.settleMs)
  if (meNode?.draining === true && !drains) wake(DRAIN_SETTLE_WINDOWS * i.cfg.settleMs - (i.now - i.drainSeenAt!))
  // since when this node has seen a majority: a node that just got it back (a healed
  // partition, a restart) holds a stale document and stale liveness for a while
  // alone on its roll, its own vote counts from this run's start (DecideInput.startedAt)
  const alone = aloneOnRoll(i.doc.roll.keys(), i.me)
  const selfFrom = alone ? i.startedAt ?? -Infinity : -Infinity
  const since = Math.max(takeoverMajoritySince(i.doc, i.me, i.nodes, i.voteLock), selfFrom)
  // others wait this long before taking a lease over (the longest fence any node advertises)
  const fenceMs = takeoverFenceMs(i.cfg.fenceTimeoutMs, i.nodes)
  // and how much later a holder cut off from all may notice it (large grids)
  const noticeMs = noticeOf(i)
  // this node's own leases from before its majority came back wait for the document to
  // catch up (a takeover elsewhere), which lent votes do not change: counted without the
  // locks (a node back from a restart its watchdog outlasted waited a minute for its VMs)
  const seenSince = Math.max(takeoverMajoritySince(i.doc, i.me, i.nodes), selfFrom)
  const awaitingSync = alone && i.othersExpected === true && i.synced === false
  const staleUntil = awaitingSync ? Infinity : seenSince + fenceMs + i.cfg.takeoverMarginMs
  const unplaced = new Map<string, { from?: string, epoch: number, parked?: true, former?: true }>()
  // a volume is the disk of one VM: the first made of those that name it (disk-owner.ts)
  const owners = diskOwners(i.doc.vms.values())
  const formerDisks = disksOfFormerRuns(i, since, fenceMs, noticeMs)
  /** why the VM may not have its disk: another VM's (made first), or, with `former`, a removed VM's run may still have it open */
  const takenWhy = (vm: Vm | undefined, former: boolean): string | null => {
    if (vm == null || vm.spec.volumes.length === 0) return null
    const t = diskTaken(vm, owners)
    if (t != null) return diskTakenWhy(t, i.volumePath ?? (v => v))
    if (!former) return null
    for (const v of vm.spec.volumes) {
      const f = formerDisks.get(v)
      if (f != null) return `its disk ${(i.volumePath ?? (x => x))(v)} may still be open in a run of a removed VM "${f.vm}" on ${i.nameOf?.(f.holder) ?? f.holder}: placed once that run has ended (its node stops it when its agent is back, or its watchdog has when its fence wait is over)`
    }
    return null
  }
  // VMs this node runs that it must not
  const keeps: string[] = []
  for (const vm of i.runs) {
    if (i.busy.has(vm)) continue
    const l = i.doc.leases.get(vm)
    const spec = i.doc.vms.get(vm)
    // a removed VM's run only holds back a placement: one that runs already was placed after
    // that run ended (its holder, back later with the lease still in the document, must not stop it)
    const taken = takenWhy(spec, false)
    if (l == null || l.winner.holder !== i.me) d.kill.push({ vm, why: l == null ? 'no lease' : `lease is ${i.nameOf?.(l.winner.holder) ?? l.winner.holder}'s (epoch ${l.winner.epoch})` })
    else if (spec == null) d.stop.push({ vm, why: 'VM removed' })
    // the run of a VM removed while this node was away, made again under its name since:
    // not this VM (another spec, other disks), never adopted as it (a tester's new VM showed
    // running while the old guest ran on, on the old disk)
    else if (!sameVm(l.winner.made, spec.created)) d.stop.push({ vm, why: 'a former VM of this name (removed, then made again): the new one is placed afresh' })
    else if (taken != null) d.stop.push({ vm, why: taken })
    else if (spec.desired !== 'running') d.stop.push({ vm, why: `desired ${spec.desired}` })
    else if (drains) d.stop.push({ vm, why: 'node draining' })
    // started with disks its spec no longer names (an update that merged after the claim
    // and the start, rv55): the volumes it gave up count as free everywhere else
    else if (otherDisks(l.winner, spec)) d.stop.push({ vm, why: DISKS_CHANGED })
    else keeps.push(vm)
  }
  // its connections need the overlay: moved where it is up, unless no majority could place it again
  if (i.overlay != null && i.fence.mayClaim) {
    const moves = overlayMoves({ me: i.me, now: i.now, doc: i.doc, nodes: i.nodes, overlay: i.overlay, running: keeps, afterMs: i.cfg.overlayMoveAfterMs ?? OVERLAY_MOVE_AFTER_MS, strategy: i.cfg.strategy, ...(i.nameOf != null ? { nameOf: i.nameOf } : {}) })
    d.stop.push(...moves.stop)
    wake(moves.wakeInMs)
  }
  // a link to a VM on a node this one does not reach (a partial cut): moved where both are reached
  if (i.cut != null && i.fence.mayClaim) {
    const stopping = new Set(d.stop.map(s => s.vm))
    const moves = cutMoves({ me: i.me, now: i.now, doc: i.doc, nodes: i.nodes, cut: i.cut.since, peers: i.cut.peers, running: keeps.filter(vm => !stopping.has(vm)), claimedAt: i.cut.claimedAt ?? i.claimedAt, afterMs: i.cfg.cutMoveAfterMs ?? OVERLAY_MOVE_AFTER_MS, strategy: i.cfg.strategy, ...(i.nameOf != null ? { nameOf: i.nameOf } : {}) })
    d.stop.push(...moves.stop)
    wake(moves.wakeInMs)
  }
  for (const [id, l] of i.doc.leases) {
    const w = l.winner
    if (w.holder !== i.me || i.runs.has(id) || i.busy.has(id)) continue
    const vm = i.doc.vms.get(id)
    // a former VM's lease (its VM removed, and made again): given up, the new VM is placed afresh
    if (vm != null && !sameVm(w.made, vm.created)) d.release.push({ vm: id, why: 'a lease of a former VM of this name (removed, then made again)' })
    // a VM stopped on request keeps its lease here, `stopped`: it names the node that last ran it (its console)
    else if (vm?.desired === 'stopped') {
      if (w.status !== 'stopped') d.park.push({ vm: id, why: 'desired stopped' })
    } else if (vm == null || vm.desired !== 'running') d.release.push({ vm: id, why: vm == null ? 'VM removed' : `desired ${vm.desired}` })
    else if (drains && w.status !== 'failed' && w.status !== 'stopped') d.release.push({ vm: id, why: 'node draining' })
  }
  for (const [id, vm] of i.doc.vms) {
    if (vm.desired !== 'running') continue
    const l = i.doc.leases.get(id)
    // not placed nor started while another VM has its disk (shown pending with the reason);
    // a removed VM's run holds back only a VM not placed yet (see the runs above)
    const placed = l != null && sameVm(l.winner.made, vm.created) && !idle(l.winner) && !isParked(l.winner)
    const taken = takenWhy(vm, !placed)
    if (taken != null) { d.blocked.push({ vm: id, reason: taken }); continue }
    if (l == null) { unplaced.set(id, { epoch: 1 }); continue }
    const w = l.winner
    // the lease of a former VM of this name (removed, then made again): its run, if any,
    // is not this VM's. Nothing runs under an idle one: placed afresh over it. Its holder
    // stops a run and gives the lease up (above); a holder away has it taken over after
    // the fence wait, as any lease of a dead holder
    const former = !sameVm(w.made, vm.created)
    if (former && !idle(w)) {
      const why = `a former VM of this name (removed, then made again) still holds its lease on ${i.nameOf?.(w.holder) ?? w.holder}: this one is placed once that run has ended`
      if (w.holder === i.me || i.holderAlive(w.holder)) { d.blocked.push({ vm: id, reason: why }); continue }
      d.blocked.push({ vm: id, reason: `${why} (its node is away: its lease is taken over after the fence wait)` })
    }
    // this node's own idle one is given up first (above); the next step places afresh
    if (former && idle(w) && w.holder === i.me) continue
    if (isParked(w) || (former && idle(w))) {
      // a VM stopped on request and started again by a writer that saw its lease still
      // running (merged with the holder's park): nothing runs under a parked lease and
      // none will (its holder never starts a stopped lease, startsStillDue), so it is
      // placed anew over it, by any node, without waiting for a fence, as the start would have
      if (!Number.isSafeInteger(w.epoch + 1)) d.blocked.push({ vm: id, reason: `its lease's epoch ${w.epoch} is at the largest the document takes: it cannot be placed anew over it (remove its lease, or start it again)` })
      else unplaced.set(id, { from: w.holder, epoch: w.epoch + 1, parked: true, ...(former ? { former: true as const } : {}) })
      continue
    }
    if (idle(w)) continue // the crash rule's: left so, with the reason, until started again
    if (w.holder === i.me) {
      if (i.runs.has(id) || i.busy.has(id) || meNode?.draining === true) continue
      // a lease of this node from before its majority came back (it was fenced, or it
      // restarted): the others may have taken it over meanwhile, which this node learns
      // only as the document catches up; it waits as long as a takeover would
      const claimed = i.claimedAt.get(id)
      if ((claimed == null || claimed < seenSince) && i.now < staleUntil) { wake(staleUntil - i.now); continue }
      // its size or volumes changed (vm update) after the claim: it would run bigger than
      // reserved here, or with disks the lease does not name; placed anew instead (vm-update.ts).
      // Its constraints likewise, before its first start here: a node without the labels
      // it needs now never ran it (one that runs it keeps it: a move restarts it)
      const unfit = meNode != null && (w.status ?? 'claimed') === 'claimed' && missingLabels(vm.spec.constraints, meNode.labels).length > 0
      if (leaseOutdated(w, vm) || unfit) { d.release.push({ vm: id, why: unfit ? UNFIT_LEASE : OUTDATED_LEASE }); continue }
      const s = settle({ me: i.me, claims: l.claims, claimedAt: i.claimedAt.get(id) ?? -Infinity, conflictSeenAt: i.conflictSeenAt.get(id), now: i.now, settleMs: i.cfg.settleMs })
      if (s.state === 'settled' && i.fence.mayClaim) d.start.push(id)
      else if (s.state === 'waiting') wake(s.ms)
      continue
    }
    if (i.holderAlive(w.holder)) continue
    // a holder whose agent stopped for a restart: its watchdog keeps the VMs alive longer (restart-grace.ts)
    const t = takeover({ holderAlive: false, holderLastHeard: i.lastHeard(w.holder), majoritySince: since, now: i.now, fenceTimeoutMs: holderFenceMs(fenceMs, i.doc.roll.get(w.holder), MAX_FENCE_TIMEOUT_MS), marginMs: i.cfg.takeoverMarginMs, noticeMs })
    if (!t.allowed) { wake(t.waitMs); continue }
    // a claim the schema refuses would fail the whole step's write, every step
    if (!Number.isSafeInteger(w.epoch + 1)) d.blocked.push({ vm: id, reason: `its lease's epoch ${w.epoch} is at the largest the document takes: it cannot be taken over from ${w.holder} (remove its lease, or the VM)` })
    else unplaced.set(id, { from: w.holder, epoch: w.epoch + 1 })
  }
  if (unplaced.size === 0) return d
  const order = [...unplaced.keys()].sort()
  // each VM is ranked against the leases in the document (not against the other new
  // VMs, which agents see at different times: what every agent agrees on), but those of
  // an anti-affinity group against each other too (positionsOf). Only this node's place
  // in each ranking is computed here; the API ranks in full.
  const places = positionsOf(order.map(id => demandOf(i.doc.vms.get(id)!, i.doc)), i.nodes, holdings(i.doc, new Set(unplaced.keys())), i.me, { strategy: i.cfg.strategy })
  d.unplaced = order
  d.fitsNowhere = order.filter(id => places.get(id)!.feasible === 0)
  if (!i.fence.mayClaim) return d
  // alone on a roll that may be old, with others about: its claims wait as its stale leases do
  if (alone && i.othersExpected === true && i.now < staleUntil) { wake(staleUntil - i.now); return d }
  const reserved = reservedBy(i.me, [...i.doc.leases.values()].map(l => l.claims))
  for (const id of order) {
    const { pos, feasible } = places.get(id)!
    if (feasible === 0) continue
    // the best-ranked node claims; if it has not after a while, the next ones may too
    // (it may be refusing for reservations others cannot see); the rule settles ties
    // never negative: a wait start in the future (credited lost time, a clock step) still lets the best-ranked claim
    const waited = Math.max(0, i.now - (i.unplacedSince.get(id) ?? i.now))
    const allowed = Math.max(1, 1 + Math.floor(waited / (FALLBACK_SETTLES * i.cfg.settleMs)))
    if (pos < 0) continue
    if (pos >= allowed) { wake(FALLBACK_SETTLES * i.cfg.settleMs * pos - waited); continue }
    const vm = i.doc.vms.get(id)!
    const ok = canReserve(i.capacity, reserved, { cpu: vm.spec.cpu, memoryBytes: vm.spec.memoryBytes })
    if (!ok.ok) { d.refused.push({ vm: id, reason: ok.reason }); continue }
    reserved.cpu += vm.spec.cpu
    reserved.memoryBytes += vm.spec.memoryBytes
    const u = unplaced.get(id)!
    d.claims.push({ vm: id, epoch: u.epoch, cpu: vm.spec.cpu, memoryBytes: vm.spec.memoryBytes, ...(vm.created != null ? { made: vm.created } : {}), from: u.from, ...(u.parked === true ? { parked: true as const } : {}), ...(u.former === true ? { former: true as const } : {}) })
  }
  return d
}
