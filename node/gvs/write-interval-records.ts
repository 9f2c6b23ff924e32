// The record of where a volume's writes went (write-intervals.ts): what a writer on
// this node does before writing in a placement generation (record the interval, have a
// majority of the roll hold it on disk), what a reader checks (the intervals in force,
// and that this node sees a majority at all), and what a healthy repair clears. The
// decisions are write-intervals.ts; this is the document and the asking.
import type { Reader, Writer } from '../../crdt/index.ts'
import { awayForRestart, hasMajority, restartsDueBy, voters } from '../../crdt/placement/fence.ts'
import type { Logger } from '../log.ts'
import type { RequestHost } from '../p2p/request.ts'
import { HOLDS_PROTOCOL, RESTART_HOLDS_PROTOCOL, askHolds } from '../state/holds-check.ts'
import { GvsError } from './errors.ts'
import { monoNow } from '../../protocol/mono-clock.ts'
import { MAX_RESTART_GRACE_MS, RESTART_STARTUP_MS, watchdogTimeoutFor } from '../dvmm/timing.ts'
import { activeIntervals, afterRepair, intervalKey, needsRecord, withInterval, type IntervalNode, type WriteInterval } from './write-intervals.ts'

export interface WriteIntervalRecordsComponents {
  self: string
  log: Logger
  state: {
    read: () => Reader
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
    /** the document's heads, for the members to confirm holding */
    heads?: () => string[]
  }
  host?: RequestHost
  /** alive in this node's member table */
  alive: (node: string) => boolean
  /** when this node last heard of a member (monotonic, monoNow(): the member table's lastSeen), for the graces of members away for a restart */
  lastHeard?: (node: string) => number | undefined
  nameOf: (node: string) => string
  /** the placement generation now (moves on when the nodes below change) */
  generation: () => number
  /** the live nodes placement is over now, with their weights */
  nodes: () => IntervalNode[]
}

export class WriteIntervalRecords {
  private readonly c: WriteIntervalRecordsComponents
  /**
   * per volume, the "volume/interval key" a majority last confirmed holding when this
   * node asked: only the newest interval counts (needsRecord), so one a volume (rv34: a
   * set of every one ever confirmed grew with each change of the live nodes)
   */
  private readonly confirmed = new Map<string, string>()
  /** records under way, by "volume/interval key": writes in the same interval wait for one */
  private readonly inflight = new Map<string, Promise<void>>()
  /** per volume, the document and generation a write last found its interval recorded in: nothing to read again until either changes */
  private readonly checked = new Map<string, { reader: Reader, generation: number, key: string }>()

  constructor (components: WriteIntervalRecordsComponents) {
    this.c = components
  }

  /**
   * The intervals in force of a volume (by its id). No volume is read or written on a
   * node that sees no majority of the roll: the majority may have written since this
   * node last heard of it (a node back alone after being down, or cut off), and a node
   * back alone has not synced the record of where writes went (the majority that holds
   * it is away). Its copies may be older, with nothing in them to say so: it cannot
   * tell. Throws then (transient: a reader or writer waits a while for the majority).
   */
  intervals (volumeId: string): WriteInterval[] {
    const v = this.c.state.read().get('volumes', volumeId)?.value
    if (v == null) return []
    const why = this.noMajority()
    if (why != null) throw new GvsError('unavailable', `volume "${v.path}": ${why}, so it cannot tell whether its copies are the newest (the others may have written since)`, { transient: true, since: this.noMajoritySince ?? Date.now(), ...this.dueBack() })
    return Object.values(activeIntervals(v))
  }

  /** the roll's size (this node counted) and the other members alive now */
  /** the roll's size, its other members alive, and this node's own vote (only roll members vote: fence.ts hasMajority) */
  private members (): { size: number, peers: string[], own: number } {
    const roll = voters(this.c.state.read().list('roll').map(e => e.node), this.c.self)
    return { size: roll.size, peers: [...roll].filter(n => n !== this.c.self && this.c.alive(n)).sort(), own: roll.has(this.c.self) ? 1 : 0 }
  }

  /** `until`: when the members away under confirmed restart graces are due back, if with them this node sees a majority */
  private dueBack (): { until?: number } {
    // the grace itself (the restarting node's watchdog: the VMs it kept alive die then), not the longer fence the others wait
    const due = restartsDueBy(this.c.state.read().list('roll'), this.c.self, this.c.alive, Date.now(), watchdogTimeoutFor, this.c.lastHeard == null ? undefined : { lastHeard: this.c.lastHeard, now: monoNow() })
    // a grace is at most MAX_RESTART_GRACE_MS and its start-up: a record of a wrong clock holds no request longer
    return due == null ? {} : { until: Math.min(due, Date.now() + MAX_RESTART_GRACE_MS + RESTART_STARTUP_MS) }
  }

  /** when this node first found each member away for a restart (wall ms) */
  private readonly awaySeen = new Map<string, number>()

  /**
   * The members away under a confirmed restart grace, each with when its grace ends (wall
   * ms; crdt/placement/fence.ts awayForRestart), for at most the longest grace and its
   * start-up from when this node first found it away: a record of a clock an hour ahead,
   * of a member this node never heard, held repairs for an hour (rv36)
   */
  awayForRestart (now = Date.now()): Map<string, number> {
    const raw = awayForRestart(this.c.state.read().list('roll'), this.c.self, this.c.alive, now, watchdogTimeoutFor, this.c.lastHeard == null ? undefined : { lastHeard: this.c.lastHeard, now: monoNow() })
    for (const n of [...this.awaySeen.keys()]) if (!raw.has(n)) this.awaySeen.delete(n)
    const out = new Map<string, number>()
    for (const [n, end] of raw) {
      const seen = this.awaySeen.get(n) ?? now
      this.awaySeen.set(n, seen)
      const cap = seen + MAX_RESTART_GRACE_MS + RESTART_STARTUP_MS
      if (now < cap) out.set(n, Math.min(end, cap))
    }
    return out
  }

  /** since when (epoch ms) this node has seen no majority, as its calls and membership changes found (null: it sees one) */
  private noMajoritySince: number | null = null

  /** why this node sees no majority of the roll (itself included), or null; each call notes since when (the service calls it at every membership change) */
  noMajority (): string | null {
    const { size, peers, own } = this.members()
    const why = hasMajority(size, own + peers.length) ? null : `this node sees ${own + peers.length} of the grid's ${size} members (${own === 1 ? 'no majority' : 'it is not on the roll yet: no majority'})`
    if (why == null) this.noMajoritySince = null
    else this.noMajoritySince ??= Date.now()
    const due = why == null ? undefined : this.dueBack().until
    // requests wait for members due back from a restart (bb18: health said "refuses" meanwhile)
    return why == null || due == null ? why : `${why}; members away for a restart under confirmed graces are due back within ${Math.max(0, Math.ceil((due - Date.now()) / 1000))} s, and reads and writes wait for them until then`
  }

  /**
   * Before a write: resolves once the interval it writes in (placement over the live
   * nodes now) is the newest recorded and held by a majority of the roll, to the key of
   * the interval recorded (keyNow: the one writes go to now): the live nodes may change while the
   * record is made, and a write then goes nowhere until the new ones are recorded too
   * (rv34: it went to holders no interval named). Fails (transient: the writer tries
   * again for a while) while no majority holds it.
   */
  async before (volumeId: string): Promise<string> {
    const reader = this.c.state.read()
    const generation = this.c.generation()
    const last = this.checked.get(volumeId)
    if (last?.reader === reader && last.generation === generation) return last.key
    const v = reader.get('volumes', volumeId)?.value
    if (v == null) {
      this.confirmed.delete(volumeId)
      this.checked.delete(volumeId)
      throw new GvsError('unavailable', `volume ${volumeId} no longer exists`)
    }
    const nodes = this.c.nodes()
    const key = intervalKey(nodes)
    const ck = `${volumeId}/${key}`
    if (!needsRecord(v, nodes, this.confirmed.get(volumeId) === ck)) {
      this.checked.set(volumeId, { reader, generation, key })
      return key
    }
    let p = this.inflight.get(ck)
    if (p == null) {
      p = this.record(volumeId, nodes, ck).finally(() => { this.inflight.delete(ck) })
      this.inflight.set(ck, p)
    }
    await p
    return key
  }

  /** the key of the interval writes go to now (what `before` resolves to once it is recorded) */
  keyNow (): string { return intervalKey(this.c.nodes()) }

  private async record (volumeId: string, nodes: IntervalNode[], ck: string): Promise<void> {
    const { path, replicas } = await this.c.state.write(w => {
      const cur = w.reader.get('volumes', volumeId)?.value
      if (cur == null) throw new GvsError('unavailable', `volume ${volumeId} no longer exists`)
      w.update('volumes', volumeId, { writeIntervals: withInterval(cur, nodes, Date.now()) })
      return cur
    }, `gvs: volume ${volumeId} is written over ${nodes.length} live node(s)`)
    const { size, peers, own } = this.members()
    // no use asking when even all of them would be no majority; a member of an earlier
    // release answers the same ask on the restart grace's protocol
    const reachable = this.noMajority() == null
    const missing = reachable ? await askHolds(this.c.host, [HOLDS_PROTOCOL, RESTART_HOLDS_PROTOCOL], peers, this.c.state.heads?.() ?? [], this.c.nameOf) : []
    const held = reachable ? own + peers.length - missing.length : own
    if (!hasMajority(size, held)) {
      // no majority in sight at all: as old as that (a failed ask is as new as this write)
      const since = reachable ? undefined : this.noMajoritySince ?? undefined
      const due = reachable ? {} : this.dueBack()
      // said as what happens: the write fails (EIO to an NBD client, after the few seconds a
      // transient error is tried again), it does not wait (it read "a write waits until")
      throw new GvsError('unavailable', `volume "${path}": not written: a write needs a majority of the grid's ${size} members to hold the record of where it goes, and ${held} ${held === 1 ? 'does' : 'do'} (${missing.length > 0 ? missing.join('; ') : `${peers.length} other member${peers.length === 1 ? ' is' : 's are'} alive`})`, { transient: true, ...(since != null ? { since } : {}), ...due })
    }
    this.confirmed.set(volumeId, ck)
    const holders = nodes.filter(n => n.weight > 0)
    if (holders.length < replicas) this.c.log.warn('a volume takes writes on fewer than R nodes: recorded where they go, held by a majority', { volume: path, nodes: holders.map(n => this.c.nameOf(n.id)).join(', '), replicas, held })
    else this.c.log.debug('recorded where a volume\'s writes go, held by a majority', { volume: path, nodes: holders.length, held })
  }

  /**
   * After a repair that began at `startedAt`, in placement generation `generation`, and
   * ended healthy: the intervals recorded before it are cleared, and its placement is
   * in force instead. Not when the live nodes changed meanwhile (its holders are not
   * the placement now).
   */
  async repaired (volumeId: string, startedAt: number, generation: number): Promise<void> {
    if (this.c.generation() !== generation) return
    const nodes = this.c.nodes()
    if (afterRepair(this.c.state.read().get('volumes', volumeId)?.value, nodes, startedAt, Date.now()) == null) return
    await this.c.state.write(w => {
      const cur = w.reader.get('volumes', volumeId)?.value
      const next = cur == null ? null : afterRepair(cur, nodes, startedAt, Date.now())
      if (next != null) w.update('volumes', volumeId, next)
    }, `gvs: volume ${volumeId} is on its holders: where its earlier writes went is recorded no more`)
  }
}
