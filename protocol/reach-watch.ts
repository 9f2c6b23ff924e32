// A partial partition seen from one node: a neighbour whose heartbeats stopped, or
// whose connections all dropped, is suspected only if no other member reaches it
// (indirect-probe.ts asks up to three). One that another member vouches for is "out of
// reach" here until it is heard directly again (a heartbeat, a new connection, or a
// direct probe, tried every 5 s), and each helper's word meanwhile counts as a sign of
// life, so the silence rule does not take it for silent in a long cut.
//
// Heartbeats only cover the members that share a stream with this node (about 8 of
// them): a cut between two members that are not partners went unreported, though a
// dial from one to the other failed (bb22). Three more ways find such a cut, none of
// them ever raising a suspicion (the member's own watchers judge whether it lives; a
// failed probe from here is weak evidence, as a failed dial is in dialer.ts):
// - `unanswered`: the sender side of a heartbeat stream hears the watcher's liveness
//   tables back (protocol 3); when they stop, or the stream goes, while this node is
//   not stalled, the watcher is checked (heartbeat.ts onUnanswered).
// - `probed`: every recheck period, a sweep probes up to 3 members directly
//   (planSweep): alive, seen alive lately in some liveness table (others reach them),
//   no heartbeat partner of this node, least recently probed first. A probe is the probe
//   protocol asked of the member about itself: a stream on a connection there is, or a
//   dial to its advert's addresses, one a sweep at most, and only while this node has
//   fewer connections than the dialer adds (16): members not connected before the
//   others. Where the dialer connects the whole grid (up to 17 members), a member cut
//   from here is one of the few not connected: probed at the next sweep. In larger
//   grids the sweep probes one connected member a period only (each probe's connection
//   would stay until the dialer trims, above 32, pushing every node there), so a cut
//   between two members that neither connect nor share a stream shows once one of
//   them tries to reach the other (its dial fails, or a heartbeat stream between them
//   is picked), not before.
// - `named`: a member whose advert says it does not reach this node (`unreached`) is
//   checked at once (at most once a period), so a cut one side found shows on both.
// A check asks the member directly (3 s: a new connection's handshake on a busy
// machine, as the dialer allows); if that fails, it asks again while up to three
// helpers are asked whether they reach it. Both direct tries failing while a helper
// reaches it and no connection to it is open, at two checks a period apart, makes it
// out of reach here (`vouched`), exactly as a vouched-for silent neighbour, so the health
// problem, the advert's `unreached` and /v1/nodes keep one meaning; no helper reaching
// it says nothing (it may be down: its watchers find that). A member that does not
// speak the probe protocol (an older release) counts as reached (indirect-probe.ts).
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { MemberTable } from './membership.ts'
import { IndirectProbe, indirectProbeProtocol, probeHelpers } from './indirect-probe.ts'
import { monoNow } from './mono-clock.ts'
import { DEFAULT_TARGET_PEERS } from './dialer.ts'

/** members asked to reach a silent neighbour before it is suspected */
const PROBE_HELPERS = 3
/** how long they get: at most this, and at most the silence that raised the question */
const PROBE_TIMEOUT_MS = 1000
/** how often a member found out of reach is asked directly whether it is in reach again (and how often the sweep runs) */
export const RECHECK_UNREACHED_MS = 5000
/** how long a direct question may take: a dial and a handshake on a busy machine included (the dialer's allowance for one dial) */
const DIRECT_TIMEOUT_MS = 3000
/** members the sweep probes each period, and of those, members this node has no connection to (a dial each) */
const SWEEP_PROBES = 3
const SWEEP_DIALS = 1

/** why a member is out of reach: its heartbeats stopped here, its connections went, it stopped answering ours, a sweep's probe, its advert named this node */
export type ReachWhy = 'silent' | 'lost' | 'unanswered' | 'probed' | 'named'
/** what starts a check (no suspicion either way) */
export type CheckWhy = Exclude<ReachWhy, 'silent' | 'lost'>

export interface SweepInput {
  table: MemberTable
  self: string
  connected: ReadonlySet<string>
  /** heartbeat partners: their streams watch the path both ways already */
  partners: ReadonlySet<string>
  /** out of reach here already (rechecked on their own), or being asked about now */
  skip: ReadonlySet<string>
  /** whether some liveness table says the member was alive lately (others reach it) */
  seen: (id: string) => boolean
  /** whether a member this node has no connection to can be dialled (its advert names addresses) */
  dialable: (id: string) => boolean
  /** when each member was last probed from here (any clock, one for all) */
  probedAt: ReadonlyMap<string, number>
  /** probes this sweep at most, and of those at most `dials` to members not connected */
  probes: number
  dials: number
  /** the connections the dialer adds up to: with that many, no dial (see planSweep) */
  targetPeers: number
  /** breaks ties, in [0, 1) */
  random: () => number
}

/**
 * Whom the sweep probes now (pure): alive members seen alive lately, neither this node
 * nor a heartbeat partner nor skipped, that can be reached for (connected, or with
 * addresses). Up to `dials` of those this node has no connection to, the least
 * recently probed first (a member the grid sees and this node does not talk to is
 * where a cut hides: in a grid the dialer connects whole, one cut from here is the
 * only one), then connected ones the same way, up to `probes` in all; each in turn so,
 * and at random among equals (nodes that learnt the grid together do not all probe
 * the same member at once).
 */
export function planSweep (input: SweepInput): string[] {
  const pool: Array<{ id: string, connected: boolean, at: number, r: number }> = []
  for (const [id, m] of input.table) {
    if (id === input.self || m.state !== 'alive' || input.partners.has(id) || input.skip.has(id) || !input.seen(id)) continue
    const connected = input.connected.has(id)
    if (!connected && !input.dialable(id)) continue
    pool.push({ id, connected, at: input.probedAt.get(id) ?? -Infinity, r: input.random() })
  }
  const byAge = (a: number, b: number): number => a === b ? 0 : a < b ? -1 : 1
  pool.sort((a, b) => Number(a.connected) - Number(b.connected) || byAge(a.at, b.at) || a.r - b.r)
  const out: string[] = []
  // a dial only where the dialer would add the connection too (fewer than its target):
  // in a grid it does not connect whole, a member not connected is the rule, and each
  // probe's connection would stay until the dialer trims (only above twice its target),
  // pushing every node towards that many, each new one a member sync and perhaps a
  // document sync session
  const room = input.connected.size < input.targetPeers
  let dials = room ? input.dials : 0
  // with no dial, the sweep checks only connections that are up: one a period is plenty
  // (each probe is a stream negotiated at both ends, rv26)
  const probes = room ? input.probes : Math.min(input.probes, 1)
  for (const c of pool) {
    if (out.length >= probes) break
    if (!c.connected) { if (dials <= 0) continue; dials-- }
    out.push(c.id)
  }
  return out
}

/** A member this node does not reach directly, though another does (a partial partition). */
export interface OutOfReach {
  /** the member that last reached it for us */
  by: string
  /** when this node first found it out of reach (ms since the epoch) */
  since: number
  why: ReachWhy
}

export interface ReachWatchInit {
  host: Libp2p
  clusterId: string
  nodeId: string
  /** the silence that raises a question: a probe takes no longer */
  suspectAfterMs: number
  members: () => MemberTable
  /** another member reached `peer` for us: a sign of life */
  sighted: (peer: string) => void
  /** nobody reached it: suspect it */
  suspect: (peer: string, why: 'silent' | 'lost') => void
  /** somebody did (once per question that found it out of reach here) */
  vouched: (peer: string, by: string, why: ReachWhy) => void
  /** heartbeat partners (the sweep leaves them to their streams); default none */
  partners?: () => ReadonlySet<string>
  /** whether some liveness table says the member was alive lately; default: no sweep */
  seen?: (peer: string) => boolean
  /** where a member listens (its advert's addresses): to dial one this node has no connection to */
  addressesOf?: (peer: string) => readonly string[]
  /** breaks the sweep's ties (default Math.random) */
  random?: () => number
  /** this node is late on its own loop (fresh connections are slow from here then): no sweep */
  stalled?: () => boolean
}

export class ReachWatch {
  private readonly init: ReachWatchInit
  private readonly probe: IndirectProbe
  /** neighbours being probed through others right now */
  private readonly probing = new Set<string>()
  /** members out of reach being asked directly whether they are in reach again */
  private readonly rechecking = new Set<string>()
  /** members being checked (no suspicion either way): kept apart from `probing`, so that a silence meanwhile is still judged */
  private readonly checking = new Set<string>()
  /** when each member was last checked from here (monotonic) */
  private readonly probedAt = new Map<string, number>()
  /** members a check found out of reach once (monotonic): reported only if the next check, a period later, does too */
  private readonly failedAt = new Map<string, number>()
  /** follow-up checks waiting */
  private readonly followUps = new Set<NodeJS.Timeout>()
  /** neighbours silent here that another member vouched for: until heard directly again */
  private readonly unreached = new Map<string, OutOfReach>()
  private timer?: NodeJS.Timeout
  private running = false

  constructor (init: ReachWatchInit) {
    this.init = init
    this.probe = new IndirectProbe({
      host: init.host,
      protocol: indirectProbeProtocol(init.clusterId),
      timeoutMs: Math.min(PROBE_TIMEOUT_MS, init.suspectAfterMs),
      isMember: peer => init.members().get(peer)?.state === 'alive',
      addressesOf: init.addressesOf
    })
  }

  async start (): Promise<void> {
    this.running = true
    this.init.host.addEventListener('peer:connect', this.onConnect)
    await this.probe.start()
    this.timer = setInterval(() => { this.recheck(); this.sweep() }, RECHECK_UNREACHED_MS)
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    await this.probe.stop()
    this.init.host.removeEventListener('peer:connect', this.onConnect)
    this.unreached.clear()
    this.probedAt.clear()
    this.failedAt.clear()
    for (const t of this.followUps) clearTimeout(t)
    this.followUps.clear()
  }

  /** Members this node does not reach directly while others do (vouched for), by id. */
  outOfReach (): ReadonlyMap<string, OutOfReach> { return this.unreached }

  /** `peer` is no longer out of reach: heard directly (a heartbeat), or no longer alive */
  clear (peer: string): void { this.unreached.delete(peer) }

  /**
   * A neighbour fell silent here or lost its connections: ask a few other members to
   * reach it first, and suspect it only if none does.
   */
  async silent (peer: string, why: 'silent' | 'lost'): Promise<void> {
    const m = this.init.members().get(peer)
    if (!this.running || m == null || m.state !== 'alive' || this.probing.has(peer)) return
    const helpers = this.helpersFor(peer)
    if (helpers.length === 0) { this.init.suspect(peer, why); return }
    this.probing.add(peer)
    try {
      const { reachedBy } = await this.probe.ask(helpers, peer)
      if (!this.running) return
      if (reachedBy != null) {
        const was = this.unreached.get(peer)
        this.unreached.set(peer, { by: reachedBy, since: was?.since ?? Date.now(), why: was?.why ?? why })
        this.init.sighted(peer)
        // found out of reach once (a check may have found it first: its stream to us went too)
        if (was == null) this.init.vouched(peer, reachedBy, why)
      } else {
        this.init.suspect(peer, why)
      }
    } finally {
      this.probing.delete(peer)
    }
  }

  /**
   * Whether this node still reaches `peer` (no suspicion either way, see the top):
   * asked directly; failing that, asked again while helpers are asked. Out of reach here
   * only if both direct tries fail, a helper reaches it, no connection to it is open,
   * and the same holds at a second check a period later (rv26: under load a fresh
   * connection's handshake can take longer than a question on the helpers' open ones).
   */
  async check (peer: string, why: CheckWhy): Promise<void> {
    const m = this.init.members().get(peer)
    if (!this.running || m == null || m.state !== 'alive' || peer === this.init.nodeId || this.unreached.has(peer) || this.checking.has(peer)) return
    const now = monoNow()
    // an advert names this node again at each refresh while the cut lasts: once a period is enough
    if (why === 'named' && now - (this.probedAt.get(peer) ?? -Infinity) < RECHECK_UNREACHED_MS) return
    this.checking.add(peer)
    this.probedAt.set(peer, now)
    try {
      if (await this.reachedDirectly(peer)) { this.failedAt.delete(peer); return }
      if (!this.running) return
      // a question lost to a busy moment is no cut: asked again meanwhile
      const [again, { reachedBy }] = await Promise.all([this.reachedDirectly(peer), this.probe.ask(this.helpersFor(peer), peer)])
      const connected = this.init.host.getConnections().some(c => c.remotePeer.toString() === peer)
      if (!this.running || again || connected || reachedBy == null || this.init.members().get(peer)?.state !== 'alive' || this.unreached.has(peer)) { this.failedAt.delete(peer); return }
      const first = this.failedAt.get(peer)
      const done = monoNow()
      // the follow-up of a first failure is on its way (a sweep came first): it decides
      if (first != null && done - first < RECHECK_UNREACHED_MS / 2) return
      if (first == null || done - first > 4 * RECHECK_UNREACHED_MS) {
        // once is not enough: asked again a period on
        this.failedAt.set(peer, done)
        const t = setTimeout(() => { this.followUps.delete(t); void this.check(peer, why) }, RECHECK_UNREACHED_MS)
        t.unref?.()
        this.followUps.add(t)
        return
      }
      this.failedAt.delete(peer)
      this.unreached.set(peer, { by: reachedBy, since: Date.now(), why })
      this.init.sighted(peer)
      this.init.vouched(peer, reachedBy, why)
    } finally {
      this.checking.delete(peer)
    }
  }

  private async reachedDirectly (peer: string): Promise<boolean> {
    return (await this.probe.ask([peer], peer, DIRECT_TIMEOUT_MS)).reachedBy != null
  }

  /** The sweep (see the top): a few members checked directly each period. */
  private sweep (): void {
    const { seen } = this.init
    if (seen == null) return
    if (this.init.stalled?.() === true) return
    const table = this.init.members()
    for (const id of this.probedAt.keys()) if (!table.has(id)) this.probedAt.delete(id)
    for (const id of this.failedAt.keys()) if (!table.has(id)) this.failedAt.delete(id)
    const targets = planSweep({
      table,
      self: this.init.nodeId,
      connected: new Set(this.init.host.getConnections().map(c => c.remotePeer.toString())),
      partners: this.init.partners?.() ?? new Set(),
      skip: new Set([...this.unreached.keys(), ...this.checking, ...this.probing]),
      seen,
      dialable: id => (this.init.addressesOf?.(id).length ?? 0) > 0,
      probedAt: this.probedAt,
      probes: SWEEP_PROBES,
      dials: SWEEP_DIALS,
      targetPeers: DEFAULT_TARGET_PEERS,
      random: this.init.random ?? Math.random
    })
    for (const id of targets) void this.check(id, 'probed')
  }

  private helpersFor (peer: string): string[] {
    const connected = this.init.host.getConnections().map(c => c.remotePeer.toString())
    return probeHelpers(this.init.members(), connected, this.init.nodeId, peer, PROBE_HELPERS, Math.random)
  }

  /**
   * Members out of reach are asked directly now and then (the probe asked of the member
   * about itself): after a heal no heartbeat need come from one (it may beat to other
   * watchers) and no new connection need open (a large grid does not connect every pair)
   */
  private recheck (): void {
    for (const [peer, was] of this.unreached) {
      if (this.rechecking.has(peer)) continue
      this.rechecking.add(peer)
      void (async () => {
        if (await this.reachedDirectly(peer)) { this.unreached.delete(peer); return }
        // still cut from here: a helper's word is its sign of life, since no heartbeat
        // comes and its refreshed adverts bring no newer version (the silence rule took
        // it for silent 30 s into a cut, and it was dead for seconds on this node)
        const { reachedBy } = await this.probe.ask(this.helpersFor(peer), peer)
        if (reachedBy != null && this.unreached.has(peer)) {
          this.unreached.set(peer, { ...was, by: reachedBy })
          this.init.sighted(peer)
        }
      })().finally(() => { this.rechecking.delete(peer) })
    }
  }

  // heard directly again: a new connection (the old one may have died in the cut)
  private readonly onConnect = (evt: CustomEvent<PeerId>): void => { this.unreached.delete(evt.detail.toString()) }
}
