// Which peers this node's replica calls cannot reach now, though membership may hold
// them alive: in a partial partition (this node and one other cut from each other, both
// still reaching the rest) gossip keeps each alive in the other's view, and every call
// across the cut waited out the whole replica timeout (30 s): a read of 32 MiB through
// such a node took 161 s. Calls that wait with nothing heard from their peer for
// `stallMs` get the peer probed (a libp2p ping, answered by its event loop whatever its
// disk is doing); one that does not answer is down: calls to it fail at once (as a
// moment's failure, which writes retry and reads pass over for another copy) and it is
// probed again, backing off, until it answers. Pure: the caller gives `now` and does
// the probing.

export interface PeerReachInit {
  /** calls pending this long with nothing heard from their peer get it probed */
  stallMs: number
  /** a down peer is probed again after this, doubling up to `maxBackoffMs` */
  firstBackoffMs: number
  maxBackoffMs: number
}

export const DEFAULT_REACH: PeerReachInit = { stallMs: 2000, firstBackoffMs: 1000, maxBackoffMs: 5000 }

/** a peer found out of reach: since when, why, and when it is probed again */
export interface Down { since: number, why: string, until: number, backoffMs: number }

interface PeerState {
  /** calls in flight to it */
  pending: number
  /** when the calls in flight began to be in flight (pending went from 0) */
  pendingSince: number
  /** when anything last came from it */
  heard: number
  probing: boolean
  /** probed at the next look whatever is pending (membership suspects it) */
  wanted: boolean
  down?: Down
}

export class PeerReach {
  private readonly init: PeerReachInit
  private readonly peers = new Map<string, PeerState>()

  constructor (init: Partial<PeerReachInit> = {}) {
    this.init = { ...DEFAULT_REACH, ...init }
  }

  private state (peer: string, now: number): PeerState {
    let s = this.peers.get(peer)
    if (s == null) { s = { pending: 0, pendingSince: now, heard: now, probing: false, wanted: false }; this.peers.set(peer, s) }
    return s
  }

  /** a call to the peer starts */
  begin (peer: string, now: number): void {
    const s = this.state(peer, now)
    if (s.pending++ === 0) s.pendingSince = now
  }

  /** a call to the peer ended (answered or not: `heard` says whether the peer answered it) */
  end (peer: string, now: number, heard: boolean): void {
    const s = this.state(peer, now)
    s.pending = Math.max(0, s.pending - 1)
    if (heard) this.heard(peer, now)
  }

  /** something came from the peer: it is in reach */
  heard (peer: string, now: number): void {
    const s = this.state(peer, now)
    s.heard = now
    s.down = undefined
  }

  /** the peer is probed at the next look, whatever waits on it */
  want (peer: string, now: number): void { this.state(peer, now).wanted = true }

  /** whether calls to the peer fail now without being sent: it is down and not yet found back */
  blocked (peer: string): Down | undefined { return this.peers.get(peer)?.down }

  /** peers to probe now: calls waiting on them with nothing heard for `stallMs`, or down and due again */
  toProbe (now: number): string[] {
    const out: string[] = []
    for (const [peer, s] of this.peers) {
      if (s.probing) continue
      // a down peer wanted (a new connection to it: the cut healed) is probed before its backoff ends
      const due = s.down != null
        ? now >= s.down.until || s.wanted
        : s.wanted || (s.pending > 0 && now - Math.max(s.heard, s.pendingSince) >= this.init.stallMs)
      if (due) { s.probing = true; s.wanted = false; out.push(peer) }
    }
    return out
  }

  /**
   * A probe ended. Answered: the peer is in reach. Not: it is down (its calls in flight
   * are the caller's to fail), probed again after a backoff that doubles while it stays
   * down. Answers whether it just went down.
   */
  probed (peer: string, now: number, answered: boolean, why = 'no answer'): boolean {
    const s = this.state(peer, now)
    s.probing = false
    if (answered) { this.heard(peer, now); return false }
    const was = s.down
    const backoffMs = was == null ? this.init.firstBackoffMs : Math.min(was.backoffMs * 2, this.init.maxBackoffMs)
    s.down = { since: was?.since ?? now, why, until: now + backoffMs, backoffMs }
    return was == null
  }

  /** whether anything is pending or down: the caller's probe timer runs only then */
  busy (): boolean {
    for (const s of this.peers.values()) if (s.pending > 0 || s.down != null || s.probing || s.wanted) return true
    return false
  }

  /** whether the peer is watched (not forgotten since) */
  knows (peer: string): boolean { return this.peers.has(peer) }

  /** forgets a peer (membership found it dead or gone: calls to it fail anyway) */
  forget (peer: string): void { this.peers.delete(peer) }

  /** the peers down now, for health */
  downPeers (): Array<[string, Down]> {
    return [...this.peers].flatMap(([p, s]) => s.down != null ? [[p, s.down] as [string, Down]] : [])
  }
}
