// A VM's history: placed, started, crashed, failed over, stopped, failed, each with the
// time it happened and its detail. The node that makes a transition writes its event
// into the lease's log in the same change, stamped with its own clock when it happened
// (`logged`, and the claim's put), and a new claim carries on the log of the lease
// before it: so every node that holds the same document shows the same history with
// the same times, whenever it saw the changes (a node partitioned, restarted or joined
// late included). A lease written by an older agent carries no log: its transitions
// are derived as this agent sees them, at the time of the lease's last write.
// Besides, each agent keeps its own decisions no lease records (a claim it lost, a VM
// it killed or stopped whose lease went or is another's): marked `local`.
// The document takes a lease's log as it is (crdt/schema.ts: informational data must
// not make a lease invalid): events this agent cannot read (a newer agent's, damage)
// are left out when shown, and counted (`unreadable`); they stay in the log as written.
import { LEASE_LOG_MAX, VM_UPDATES_MAX, isLeaseEvent, type Lease, type LeaseEvent, type Writer } from '../../crdt/index.ts'
import { sameVm, type Ranking } from '../../crdt/placement/index.ts'
import { escapeControls } from './control-chars.ts'

export type HistoryEventName = 'placed' | 'failed-over' | 'started' | 'crashed' | 'exited' | 'rebooted' | 'stopped' | 'failed' | 'lost-claim' | 'killed'

export interface HistoryEvent {
  /** ms since the epoch (wall time) */
  at: number
  /** one of HistoryEventName (a newer agent may log others) */
  event: string
  /** the node's name */
  node?: string
  epoch?: number
  detail?: string
  /** seen by this agent only: a decision it made that no lease records */
  local?: true
  /**
   * ms taken off `at`: the event was stamped by a node whose clock runs this far ahead
   * of this agent's (negative: behind), past the offset bound; `at` is in this agent's time
   */
  clockMs?: number
}

const MAX_LOCAL = 50
const DETAIL_MAX = 512

/** a lease's reason, at most (crdt/schema.ts) */
export const LEASE_REASON_MAX = 2048
/** an event's detail as written: its control characters escaped (it may hold a guest's output: control-chars.ts), within the schema's bound */
const clip = (raw: string | undefined): string | undefined => raw == null ? undefined : escapedWithin(raw, DETAIL_MAX)

/** `raw` with its control characters escaped, then cut to `max` characters */
function escapedWithin (raw: string, max: number): string {
  const s = escapeControls(raw)
  return s.length <= max ? s : `${s.slice(0, max - 3)}...`
}

/**
 * A lease's log as read (any value): its events this agent can read, of the newest
 * LEASE_LOG_MAX entries, and how many of those it cannot (a log that is no list: 1).
 */
export function readLog (log: unknown, max = LEASE_LOG_MAX): { events: LeaseEvent[], unreadable: number } {
  if (log == null) return { events: [], unreadable: 0 }
  if (!Array.isArray(log)) return { events: [], unreadable: 1 }
  const recent = log.slice(-max)
  const events = recent.filter(isLeaseEvent)
  return { events, unreadable: recent.length - events.length }
}

/**
 * A lease's log (as read: any value) with `events` added, the oldest dropped past
 * LEASE_LOG_MAX. Entries this agent cannot read are kept as they are (a newer agent's
 * events); a log that is no list is started anew.
 */
export function appendLog (log: unknown, events: readonly LeaseEvent[], max = LEASE_LOG_MAX): unknown[] {
  const before: unknown[] = Array.isArray(log) ? log.slice(-max) : []
  return [...before, ...events.map(e => ({ ...e, ...(e.detail != null ? { detail: clip(e.detail) } : {}) }))].slice(-max)
}

/**
 * In a write: `event` (made from the lease) appended to the log of VM `vm`'s lease, written by a node that is
 * not its holder (a kill of a run whose lease moved on, a stop asked while the holder
 * was away), if the lease is uncontested and `onlyIf` holds. Only the log changes,
 * appended at its tail (Writer.update), so the holder's own events written at the same
 * moment stay too; the lease keeps its `at` and `by`, which the left-behind rule reads
 * of a claimed or starting lease (a guest that exited while its agent was down is
 * counted only if it started after `at`: rv42). Whether it was appended.
 */
export function appendToLease (w: Writer, vm: string, event: (l: Lease) => LeaseEvent, onlyIf: (l: Lease) => boolean): boolean {
  const cur = w.reader.get('leases', vm)
  const l = w.current('leases', vm)
  if (cur == null || cur.contested || l == null || !onlyIf(l)) return false
  w.update('leases', vm, { log: appendLog(l.log, [event(l)]) }, { keepStamp: true })
  return true
}

/**
 * The events of one lease transition, `prev` to `next` (pure; `prev` undefined: a new
 * lease). `nameOf`: a node's name, for a takeover's detail and each event's `name`.
 */
export function transitionEvents (prev: Lease | undefined, next: Lease, nameOf: (node: string) => string = n => n): Array<Omit<LeaseEvent, 'at'>> {
  const out: Array<Omit<LeaseEvent, 'at'>> = []
  const p = prev
  const l = next
  const node = l.holder
  const named = nameOf(node)
  const name = named !== node ? { name: named } : {}
  if (p == null || p.epoch !== l.epoch || p.holder !== l.holder) {
    const failover = l.from != null && l.epoch > 1
    out.push({ event: failover ? 'failed-over' : 'placed', node, ...name, epoch: l.epoch, ...(failover ? { detail: `from ${nameOf(l.from!)}` } : {}) })
  }
  if (l.status === p?.status && (l.crashes?.length ?? 0) <= (p?.crashes?.length ?? 0)) return out
  const crashed = (l.crashes?.length ?? 0) > (p?.crashes?.length ?? 0) && l.crashes?.at(-1) !== p?.crashes?.at(-1)
  const detail = l.reason != null ? { detail: l.reason } : {}
  if (crashed) out.push({ event: 'crashed', node, ...name, ...detail })
  // a run that ended by no crash and is started again: fenced, or the watchdog killed it
  // while its agent was down, or it exited cleanly under `always`, or its guest rebooted
  // (the crash rule's reason then starts with how it exited: crdt/placement/restart.ts)
  else if (p?.status === 'running' && l.status === 'starting' && p.epoch === l.epoch && p.holder === l.holder) out.push({ event: /^exited\b/.test(l.reason ?? '') ? 'exited' : /^rebooted\b/.test(l.reason ?? '') ? 'rebooted' : 'killed', node, ...name, ...detail })
  if (l.status === 'running') out.push({ event: 'started', node, ...name, epoch: l.epoch })
  if (l.status === 'stopped' || l.status === 'failed') out.push({ event: l.status, node, ...name, ...detail })
  return out
}

/** A lease's reason as written: control characters escaped (control-chars.ts), then cut to the schema's bound. */
export function leaseReason (reason: string): string { return escapedWithin(reason, LEASE_REASON_MAX) }

/**
 * A lease update `patch` of `cur` with the events of its transition added to the
 * lease's log, stamped `at` (when it happened, by the writer's clock). `holderName`:
 * the holder's name (the writer is the holder), kept in each event.
 */
export function logged (cur: Lease, given: Partial<Lease>, at: number, holderName?: string): Partial<Lease> {
  // a reason past the schema's bound (a driver's long error) would fail the whole update,
  // and with it the crash rule (rv21: a 3000-character start error restarted for ever);
  // one holding control characters (a guest's output, an older agent's reason carried
  // on) reached operators' terminals raw when shown: the document gets them escaped
  const patch = given.reason != null ? { ...given, reason: leaseReason(given.reason) } : given
  const events = transitionEvents(cur, { ...cur, ...patch }, n => n === cur.holder && holderName != null ? holderName : n)
  return events.length === 0 ? patch : { ...patch, log: appendLog(cur.log, events.map(e => ({ at, ...e }))) }
}

/**
 * The log of a new claim (`claim`, stamped when written): `before` (the log of the lease
 * before it), then where it was placed or taken over. A log of a former VM of the same
 * name (`before.made` is not the claim's) is left behind.
 */
export function claimLog (before: CarriedLog | undefined, claim: Lease, nameOf: (node: string) => string): unknown[] {
  const same = sameVm(before?.made, claim.made)
  // a takeover of the lease a former VM of the name left (its holder dead): this VM is
  // placed, not failed over; the takeover (epoch, fence wait) is the lease's business
  const events = same || claim.from == null
    ? transitionEvents(undefined, claim, nameOf)
    : transitionEvents(undefined, { ...claim, from: undefined }, nameOf).map(e => e.event === 'placed' ? { ...e, detail: `over the lease a former VM of this name left on ${nameOf(claim.from!)}` } : e)
  return appendLog(same ? before?.log : undefined, events.map(e => ({ at: claim.at, ...e })))
}

/** a lease's log and the `made` of the lease it came from */
export interface CarriedLog { log: unknown, made?: number }

/** a log made for `made` belongs to the VM created at `created` (crdt/placement/lease.ts) */
export { sameVm }

export class History {
  /** each VM's log as its lease has it (any value: readLog reads it when shown; kept once the lease goes: the next claim carries it on), with the lease's `made` */
  private readonly logs = new Map<string, CarriedLog>()
  /** this agent's own decisions no lease records */
  private readonly own = new Map<string, HistoryEvent[]>()
  /** the leases as last seen: a lease without a log (an older agent's) is followed by its transitions */
  private readonly last = new Map<string, Lease>()
  /** the ranking that placed each VM, as this agent computed it, while the lease is this node's */
  readonly decisions = new Map<string, { at: number, ranking: Ranking }>()
  private readonly wall: () => number

  /** `wall`: the wall clock local events are stamped with */
  constructor (wall: () => number = Date.now) {
    this.wall = wall
  }

  /**
   * Records a decision or an event of this node (shown as `local`) at `at` (wall time;
   * default now): one no lease records, or one a lease update may lose (a fenced kill
   * whose lease the majority took over meanwhile). While the lease's log has the same
   * event of the same node at the same time, only the log's is shown.
   */
  add (vm: string, e: Omit<HistoryEvent, 'at' | 'local'>, at: number = this.wall()): void {
    let l = this.own.get(vm)
    if (l == null) this.own.set(vm, l = [])
    l.push({ ...e, at: Math.floor(at), local: true })
    l.sort((a, b) => a.at - b.at)
    if (l.length > MAX_LOCAL) l.splice(0, l.length - MAX_LOCAL)
  }

  /**
   * The history of a VM, oldest first: its lease's log (the same on every node), the
   * updates its entry keeps (`updates`: the VM's, the same on every node; each also in the
   * lease's log unless a claim written at the same moment lost it there) and this agent's
   * own events. `created`: the VM's; a log of a former VM of its name (a lease not taken
   * over yet) is not shown. `offsetOf`: a node's clock offset from this agent's (ms,
   * theirs minus ours) where it is past the bound: its events are put in this agent's
   * time, so that a node whose clock runs ahead does not put them in the future and out
   * of order (the offset as measured now: an approximation for old events)
   */
  of (vm: string, nameOf: (node: string) => string = n => n, created?: number, offsetOf: (node: string) => number | undefined = () => undefined, updates?: unknown): HistoryEvent[] {
    const carried = this.logs.get(vm)
    const leased = readLog(sameVm(carried?.made, created) ? carried?.log : undefined).events
    const key = (e: LeaseEvent): string => `${e.at} ${e.event} ${e.node}`
    const inLease = new Set(leased.map(key))
    const fromVm = readLog(updates, VM_UPDATES_MAX).events.filter(e => !inLease.has(key(e)))
    const logged = [...leased, ...fromVm].map(e => {
      const off = offsetOf(e.node)
      // a node that has left the roll and the member table: the name it had when it wrote
      const named = nameOf(e.node)
      return { at: off != null ? e.at - off : e.at, event: e.event, node: named === e.node && e.name != null ? e.name : named, ...(e.epoch != null ? { epoch: e.epoch } : {}), ...(e.detail != null ? { detail: e.detail } : {}), ...(off != null ? { clockMs: off } : {}) }
    })
    const inLog = new Set(logged.map(e => `${e.at + (e.clockMs ?? 0)} ${e.event} ${e.node}`))
    // the same event the lease's log has from its own write, a moment apart (a drain's stop: recorded here, then in the lease)
    const logs = (e: HistoryEvent): boolean => logged.some(l => l.event === e.event && l.node === (e.node ?? '') && l.detail === e.detail && Math.abs(l.at - e.at) <= 1000)
    const own = (this.own.get(vm) ?? []).filter(e => !inLog.has(`${e.at} ${e.event} ${e.node ?? ''}`) && !logs(e))
    return [...logged, ...own].sort((a, b) => a.at - b.at)
  }

  /** how many events of the VM's log this agent cannot read (left out of `of`) */
  unreadable (vm: string): number { return readLog(this.logs.get(vm)?.log).unreadable }

  /** the log a new claim of `vm` carries on: the last lease's, as this agent saw it */
  carried (vm: string): CarriedLog | undefined { return this.logs.get(vm) }

  /**
   * Takes in the winning leases (`vms`: the VMs in the document; a removed VM's history
   * goes). A lease with a log is the history; one without (written by an older agent)
   * adds the events of its transitions since it was last seen, at its last write's time.
   */
  observe (leases: ReadonlyMap<string, Lease>, vms: { has: (vm: string) => boolean }, nameOf: (node: string) => string, me?: string): void {
    for (const [vm, l] of leases) {
      // the ranking this node claimed by says nothing once the lease is another's (a
      // claim it lost, a drain or a takeover moved it: a tester read an old one)
      if (me != null && l.holder !== me) this.decisions.delete(vm)
      if (l.log != null) this.logs.set(vm, { log: l.log, made: l.made })
      else {
        const events = transitionEvents(this.last.get(vm), l, nameOf)
        if (events.length > 0) this.logs.set(vm, { log: appendLog(this.logs.get(vm)?.log, events.map(e => ({ at: l.at, ...e }))), made: l.made })
      }
      this.last.set(vm, l)
    }
    for (const vm of this.last.keys()) if (!leases.has(vm)) this.last.delete(vm)
    for (const m of [this.logs, this.own, this.decisions]) for (const vm of m.keys()) if (!vms.has(vm)) m.delete(vm)
  }
}
