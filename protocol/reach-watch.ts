// A partial partition seen from one node: a neighbour whose heartbeats stopped, or
// whose connections all dropped, is suspected only if no other member reaches it
// (indirect-probe.ts asks up to three). One that another member vouches for is "out of
// reach" here until it is heard directly again (a heartbeat, a new connection, or a
// direct probe, tried every 5 s), and each helper's word meanwhile counts as a sign of
// life, so the silence rule does not take it for silent in a long cut.
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { MemberTable } from './membership.ts'
import { IndirectProbe, indirectProbeProtocol, probeHelpers } from './indirect-probe.ts'

/** members asked to reach a silent neighbour before it is suspected */
const PROBE_HELPERS = 3
/** how long they get: at most this, and at most the silence that raised the question */
const PROBE_TIMEOUT_MS = 1000
/** how often a member found out of reach is asked directly whether it is in reach again */
const RECHECK_UNREACHED_MS = 5000

/** A member this node does not reach directly, though another does (a partial partition). */
export interface OutOfReach {
  /** the member that last reached it for us */
  by: string
  /** when this node first found it out of reach (ms since the epoch) */
  since: number
  why: 'silent' | 'lost'
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
  vouched: (peer: string, by: string, why: 'silent' | 'lost') => void
}

export class ReachWatch {
  private readonly init: ReachWatchInit
  private readonly probe: IndirectProbe
  /** neighbours being probed through others right now */
  private readonly probing = new Set<string>()
  /** members out of reach being asked directly whether they are in reach again */
  private readonly rechecking = new Set<string>()
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
      isMember: peer => init.members().get(peer)?.state === 'alive'
    })
  }

  async start (): Promise<void> {
    this.running = true
    this.init.host.addEventListener('peer:connect', this.onConnect)
    await this.probe.start()
    this.timer = setInterval(() => { this.recheck() }, RECHECK_UNREACHED_MS)
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.timer)
    await this.probe.stop()
    this.init.host.removeEventListener('peer:connect', this.onConnect)
    this.unreached.clear()
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
        this.unreached.set(peer, { by: reachedBy, since: this.unreached.get(peer)?.since ?? Date.now(), why })
        this.init.sighted(peer)
        this.init.vouched(peer, reachedBy, why)
      } else {
        this.init.suspect(peer, why)
      }
    } finally {
      this.probing.delete(peer)
    }
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
        if ((await this.probe.ask([peer], peer)).reachedBy != null) { this.unreached.delete(peer); return }
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
