// A restart that keeps the VMs. An agent stopped for a restart (SIGTERM) leaves its VMs
// to its watchdog, which kills them after its usual timeout (3/5 of the fence timeout:
// 3 s by default) unless the next run takes it over first; a restart is seldom that
// quick. With a restart grace the stopping agent asks for longer: it records in its
// roll entry the fence timeout the others are to wait for it (`restart.fenceMs`, for a
// grace of G: G x 5/3), asks every member that could take its VMs over whether it holds
// that record on disk, and only when every one says so does it feed its watchdog once
// more with G as the timeout. Others then wait that fence (plus the margin) from when
// they last heard of it before taking its leases over (decide.ts, holderFenceMs), so a
// node that never comes back still has its VMs killed before they run elsewhere. A
// member that does not answer (or this node without a majority) leaves the usual
// timeout in force, and the record is taken back. A member that was down meanwhile
// reads the record from the document it syncs as it comes back, well before the fence
// timeout a takeover of its own must wait after it sees a majority again.
// The next run, once it sees a majority and its own watchdog feeds with the usual
// timeout, says it is `back` in the record (a crash of that run is then failed over as
// a crash, not after the grace; its fence counts from that majority, fencing.ts), and
// clears the record once no one counts the vote it may have lent. Pure decisions here;
// the service carries them out.
import type { Reader, Writer } from '../../crdt/index.ts'
import { LENT_VOTE_SLACK_MS } from '../../crdt/placement/index.ts'
import { mayBeRunning, type MemberTable } from '../../protocol/membership.ts'
import type { Logger } from '../log.ts'
import type { RequestHost } from '../p2p/request.ts'
import { RESTART_HOLDS_PROTOCOL, askHolds, serveHolds } from '../state/holds-check.ts'
import { wallNow, type Clock } from '../service.ts'
import { fenceTimeoutFor, RESTART_STARTUP_MS, watchdogTimeoutFor } from './timing.ts'
import type { DocView } from './view.ts'

/** members whose own restart record began this long before this node's ask are stopping with it */
export const STOPPING_TOGETHER_MS = 30_000

/** the holds check (node/state/holds-check.ts) on a protocol of its own, as earlier releases ask it */
export const RESTART_PROTOCOL = RESTART_HOLDS_PROTOCOL

export interface GracePlanInput {
  /** the node's setting (0: off) */
  graceMs: number
  /** the fence timeout it runs with now (its watchdog's is 3/5 of it) */
  activeFenceMs: number
  /** VMs this node runs now */
  liveVms: number
  /** it sees a majority of the roll now */
  majority: boolean
  /** it is on the roll (a node not yet recorded there has nothing to record a grace in) */
  onRoll: boolean
  me: string
  /** the roll and the member table: every node that may take this node's VMs over */
  nodes: Iterable<string>
  /** alive or suspect in this node's member table */
  mayBeRunning: (node: string) => boolean
}

export type GracePlan =
  | { ask: false, why: string }
  | { ask: true, fenceMs: number, watchdogMs: number, peers: string[] }

/** Whether a stop for a restart asks for a grace, and whom (pure). */
export function planRestartGrace (i: GracePlanInput): GracePlan {
  const usual = watchdogTimeoutFor(i.activeFenceMs)
  if (i.graceMs <= usual) return { ask: false, why: i.graceMs === 0 ? 'the restart grace is off' : `the restart grace (${i.graceMs} ms) is no longer than the watchdog's usual timeout (${usual} ms)` }
  // with no VM here the grace still counts: its vote, lent, keeps the others' VMs and
  // volumes going while it is away (bb18: two of four without VMs restarting fenced the
  // other two, and their volumes refused I/O after 20 s)
  if (!i.onRoll) return { ask: false, why: 'this node is not on the member roll yet' }
  if (!i.majority) return { ask: false, why: 'this node sees no majority of the roll: the others could not be asked' }
  const peers = [...new Set(i.nodes)].filter(n => n !== i.me && i.mayBeRunning(n)).sort()
  // the agent started again within the grace adopts: its watchdog allows for its start-up too
  const watchdogMs = i.graceMs + RESTART_STARTUP_MS
  return { ask: true, fenceMs: fenceTimeoutFor(watchdogMs), watchdogMs, peers }
}

export interface RestartGraceComponents {
  peerId: string
  log: Logger
  clock: Clock
  state: {
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
    /** the document now: a member stopping for a restart of its own says so in its roll entry */
    read?: () => Reader
    heads?: () => string[]
    /** the document holds every change up to `heads`, on disk (StateService.holds) */
    holds?: (heads: string[]) => Promise<boolean>
    /** a peer has these heads: pull them (StateService.noteHeads) */
    noteHeads?: (peer: string, heads: string[]) => void
  }
  membership: { readonly members: MemberTable }
  host?: RequestHost
  /** queues a document update for the next step's write */
  enqueue: (fn: (w: Writer) => void, opts: { key: string }) => void
  /** the grace every member confirmed: the watchdog's last feed carries these timeouts */
  onGrace?: (t: { watchdogMs: number, fenceMs: number }) => void
}

export class RestartGrace {
  private readonly c: RestartGraceComponents
  private readonly graceMs: number
  /** this run stopped for a restart and recorded it (else a record is an earlier run's) */
  private begun = false

  constructor (components: RestartGraceComponents, init: { graceMs: number }) {
    this.c = components
    this.graceMs = init.graceMs
  }

  async start (): Promise<void> {
    if (this.c.host != null) await serveHolds(this.c.host, RESTART_PROTOCOL, this.c.state, () => this.c.clock.now())
  }

  async stop (): Promise<void> { await this.c.host?.unhandle(RESTART_PROTOCOL).catch(() => {}) }

  /**
   * At a stop for a restart (pure plan, then I/O): records the grace and asks the
   * members. The grace's watchdog timeout and fence, once every member confirmed;
   * else why not (the usual timeout then holds).
   */
  async begin (i: Omit<GracePlanInput, 'graceMs' | 'me' | 'nodes' | 'mayBeRunning'> & { roll: Iterable<string> }): Promise<{ watchdogMs: number, fenceMs: number } | { why: string }> {
    const members = this.c.membership.members
    const plan = planRestartGrace({ ...i, graceMs: this.graceMs, me: this.c.peerId, nodes: [...i.roll, ...members.keys()], mayBeRunning: n => mayBeRunning(members.get(n)?.state) })
    if (!plan.ask) return { why: plan.why }
    const me = this.c.peerId
    // this run's own record: never said back by this run's steps
    this.begun = true
    try {
      await this.c.state.write(w => { w.update('roll', me, { restart: { fenceMs: plan.fenceMs, since: wallNow(this.c.clock) } }) }, 'dvmm: restart grace')
    } catch (err) {
      return { why: `the restart grace could not be recorded: ${(err as Error).message}` }
    }
    const heads = this.c.state.heads?.() ?? []
    const missing = await this.ask(plan.peers, heads)
    if (missing.length === 0) {
      // every member holds the record: it may now lend its vote (crdt/placement lentVotes:
      // the members that stay keep their VMs alive on it while it is away), which is said
      // by `confirmed`, and asked again so that they hold that too before this agent goes
      // (one that does not only fences as it would have without it)
      try {
        await this.c.state.write(w => { const r = w.reader.get('roll', me)?.value.restart; if (r != null) w.update('roll', me, { restart: { ...r, confirmed: true } }) }, 'dvmm: restart grace confirmed')
        const unasked = await this.ask(plan.peers, this.c.state.heads?.() ?? [])
        if (unasked.length > 0) this.c.log.info('not every member holds the confirmed restart grace: those fence as they would have without it if the grid has no majority while this node is away', { members: unasked.join('; ') })
      } catch (err) {
        this.c.log.warn('could not record that every member holds the restart grace', { error: (err as Error).message })
      }
      return { watchdogMs: plan.watchdogMs, fenceMs: plan.fenceMs }
    }
    // taken back: the members that have it would wait longer than needed for VMs the watchdog kills soon
    await this.c.state.write(w => { w.update('roll', me, { restart: null }) }, 'dvmm: restart grace taken back').catch(() => {})
    return { why: `not every member confirmed the restart grace: ${missing.join('; ')}` }
  }

  /** At a stop for a restart: asks for the grace and hands a confirmed one to the watchdog, saying what the VMs get. */
  async atStop (i: Parameters<RestartGrace['begin']>[0] & { marginMs: number }): Promise<void> {
    const r = await this.begin(i)
    if ('why' in r) {
      if (i.liveVms > 0 && this.graceMs > 0) this.c.log.warn(`no restart grace (${r.why}): the VMs run on only for the watchdog's usual timeout`, { vms: i.liveVms, watchdogMs: watchdogTimeoutFor(i.activeFenceMs) })
      else if (this.graceMs > 0) this.c.log.info(`no restart grace (${r.why}): while this node is away, the others count it down for their majority`)
      return
    }
    if (i.liveVms === 0) {
      this.c.log.info('restart grace confirmed by every member: no VM runs here; while this node is away its vote keeps the others\' VMs and volumes going', { othersWaitMs: r.fenceMs + i.marginMs })
      return
    }
    try {
      this.c.onGrace?.(r)
      this.c.log.info('restart grace confirmed by every member: the VMs run on under the watchdog until the next run adopts them', { vms: i.liveVms, watchdogMs: r.watchdogMs, othersWaitMs: r.fenceMs + i.marginMs })
    } catch (err) {
      this.c.log.error('the watchdog did not take the restart grace: the VMs run on only for its usual timeout', { error: (err as Error).message })
    }
  }

  /**
   * The members that did not confirm, each with why. One that could not answer because
   * it is stopping for a restart of its own (its roll entry says so, or it left) is not
   * waited for: it takes nothing over while away, and its next run reads this record from
   * the document it syncs before a takeover of its own could come, as a member that was
   * down does (bb36: two agents stopped at once, one's VMs lost their grace to the other's
   * closed stream)
   */
  private async ask (peers: string[], heads: string[]): Promise<string[]> {
    // its record of this stop: written by the run this node knows (its advert's
    // incarnation, that run's start on its own clock, is before the record), begun
    // within the last STOPPING_TOGETHER_MS; an older one, or one a later run may be up
    // beside, is waited for (rv40: a run back from a restart, slow to answer, was excused)
    const now = wallNow(this.c.clock)
    const stopping = (id: string): boolean => {
      const m = this.c.membership.members.get(id)
      if (m?.state === 'left') return true
      const r = this.c.state.read?.().get('roll', id)?.value.restart
      return r != null && r.back !== true && now - r.since < STOPPING_TOGETHER_MS && m != null && m.advert.incarnation < r.since
    }
    return await askHolds(this.c.host, RESTART_PROTOCOL, peers, heads, id => this.c.membership.members.get(id)?.advert.name ?? id, stopping)
  }

  /**
   * Each step: a record an earlier run of this node left is said `back` once this run
   * sees a majority and its own watchdog feeds with the usual timeout (`ownWatchdog`), and cleared once this
   * run sees a majority and the vote it may have lent is no longer counted by anyone
   * (its lock, voteLockedUntil, and a fence timeout and margin after it, `afterMs`):
   * until then the others need it to keep this node's vote from a takeover.
   */
  step (doc: DocView, majority: boolean, afterMs: number, ownWatchdog: boolean): void {
    const me = this.c.peerId
    const r = doc.roll.get(me)?.restart
    if (r == null) return
    const now = wallNow(this.c.clock)
    // an earlier run's record, and this run's own watchdog guards the VMs now with the
    // usual timeout: said, so that a crash of this run is taken for one (a tester's agent
    // killed 40 s after a restart had its VMs, killed by its watchdog in 3 s, wait a
    // minute for the grace to run elsewhere); kept for the lock on its vote. Only with a
    // majority in sight: until then this run's own fence still counts the grace
    // (fencing.ts), and others reading `back` would take its VMs over before it kills them
    if (majority && ownWatchdog && r.back !== true && !this.begun) {
      this.c.enqueue(w => {
        const cur = w.reader.get('roll', me)?.value.restart
        if (cur != null && cur.since === r.since && cur.back !== true) w.update('roll', me, { restart: { ...cur, back: true } })
      }, { key: 'roll:restart-back' })
    }
    if (!majority || now - LENT_VOTE_SLACK_MS - afterMs < r.since + r.fenceMs) return
    this.c.enqueue(w => { if (w.reader.get('roll', me)?.value.restart != null) w.update('roll', me, { restart: null }) }, { key: 'roll:restart' })
  }
}
