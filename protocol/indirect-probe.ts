// Indirect probes (SWIM's ping-req): before a node suspects a neighbour whose
// heartbeats stopped, it asks a few other members to reach that neighbour for it. In a
// partial partition (this host and one other cut from each other on the network,
// both still reaching the rest) the neighbour is alive and serving, and only the path
// between the two is gone. Suspecting it there made membership flap: the suspicion
// went round, its refutation came back late through the third node, the suspect was
// declared dead for seconds at a time everywhere (even on nodes that reached it), and
// its WireGuard peers and volume-store calls were dropped and set up again each time.
// One answer "reached" is enough not to suspect; no helper, or none reaching it
// within the timeout, and the suspicion goes ahead as before.
//
// Protocol (one stream per question): the asker writes the target's peer id
// (length-prefixed, UTF-8); the answer is one length-prefixed byte, REACHED or NOT.
// A helper asked about itself answers REACHED at once: that is how a helper reaches
// the target (the same protocol, asked of the target about the target).
import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { MemberTable } from './membership.ts'

const REACHED = 1
const NOT_REACHED = 0
/** a peer id as text is about 52 characters; anything much longer is not one */
const MAX_REQUEST = 256
/** questions a helper works on at once (from all askers): more are answered NOT */
const MAX_SERVING = 8

export const indirectProbeProtocol = (clusterId: string): string => `/vgrid/${clusterId}/probe/1`

/**
 * Whom to ask about `target` (pure): up to `k` members this node holds alive and is
 * connected to, neither itself nor the target, picked with `random` in [0, 1).
 */
export function probeHelpers (table: MemberTable, connected: readonly string[], self: string, target: string, k: number, random: () => number): string[] {
  const pool = [...new Set(connected)].filter(id => id !== self && id !== target && table.get(id)?.state === 'alive').sort()
  const out: string[] = []
  while (out.length < k && pool.length > 0) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]!)
  return out
}

export interface IndirectProbeInit {
  host: Libp2p
  protocol: string
  /** how long one question may take, the helper's own reach of the target included */
  timeoutMs: number
  /** whether a peer is a member this node would probe for others (not a stranger) */
  isMember: (peer: string) => boolean
  /**
   * where a member listens (its advert's addresses): handed to the peer store before a
   * peer this node has no connection to is dialled (a member it never connected to has
   * none there, and the dial failed as if the member were cut off)
   */
  addressesOf?: (peer: string) => readonly string[]
}

export interface ProbeAnswer {
  /** the first helper that reached the target, or null */
  reachedBy: string | null
  /** helpers that answered at all (reached or not) */
  answered: number
}

export class IndirectProbe {
  private readonly init: IndirectProbeInit
  private serving = 0

  constructor (init: IndirectProbeInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.host.handle(this.init.protocol, (stream, conn) => {
      void this.answer(stream, conn.remotePeer.toString())
    }, { maxInboundStreams: MAX_SERVING })
  }

  async stop (): Promise<void> {
    await this.init.host.unhandle(this.init.protocol).catch(() => {})
  }

  /** Asks each helper at once whether it reaches `target`; settles at the first yes, or when all have answered or timed out (`timeoutMs`, default the init's). */
  async ask (helpers: readonly string[], target: string, timeoutMs = this.init.timeoutMs): Promise<ProbeAnswer> {
    if (helpers.length === 0) return { reachedBy: null, answered: 0 }
    let answered = 0
    return await new Promise<ProbeAnswer>(resolve => {
      let left = helpers.length
      let done = false
      for (const h of helpers) {
        void this.question(h, target, timeoutMs).then(reached => {
          if (reached != null) answered++
          left--
          if (done) return
          if (reached === true) { done = true; resolve({ reachedBy: h, answered }) } else if (left === 0) { done = true; resolve({ reachedBy: null, answered }) }
        })
      }
    })
  }

  /** One question to one peer: true (reached), false (not), null (no answer). */
  private async question (peer: string, target: string, timeoutMs = this.init.timeoutMs): Promise<boolean | null> {
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(timeoutMs)
      const id = peerIdFromString(peer)
      await this.addresses(id)
      stream = await this.init.host.dialProtocol(id, this.init.protocol, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_REQUEST })
      await lp.write(new TextEncoder().encode(target), { signal })
      const reply = (await lp.read({ signal })).subarray()
      await stream.close({ signal }).catch(() => {})
      return reply.byteLength === 1 && reply[0] === REACHED
    } catch (err) {
      stream?.abort(err as Error)
      // an agent of a release before indirect probes: it answered the negotiation, so it runs
      if ((err as Error).name === 'UnsupportedProtocolError' && peer === target) return true
      return null
    }
  }

  /** a member's advert addresses into the peer store, if this node has no connection to it (see addressesOf) */
  private async addresses (peer: PeerId): Promise<void> {
    if (this.init.addressesOf == null || this.init.host.getConnections(peer).length > 0) return
    const addrs: Multiaddr[] = []
    for (const a of this.init.addressesOf(peer.toString())) {
      try { addrs.push(multiaddr(a)) } catch { /* checked when the advert came in */ }
    }
    if (addrs.length > 0) await this.init.host.peerStore.merge(peer, { multiaddrs: addrs }).catch(() => {})
  }

  private async answer (stream: Stream, from: string): Promise<void> {
    this.serving++
    try {
      const signal = AbortSignal.timeout(this.init.timeoutMs)
      const lp = lpStream(stream, { maxDataLength: MAX_REQUEST })
      const target = new TextDecoder('utf-8', { fatal: true }).decode((await lp.read({ signal })).subarray())
      const self = this.init.host.peerId.toString()
      let reached = false
      if (target === self) reached = true
      // only for members, about members, and not while flooded: a helper's work per question is one dial
      else if (this.serving <= MAX_SERVING && target !== from && this.init.isMember(from) && this.init.isMember(target)) {
        // sooner than the asker gives up, so that a "not reached" gets back in time
        reached = await this.question(target, target, this.init.timeoutMs * 0.75) === true
      }
      await lp.write(Uint8Array.of(reached ? REACHED : NOT_REACHED), { signal })
      await stream.close({ signal }).catch(() => {})
    } catch (err) {
      // a malformed question (not UTF-8, not a peer id, too long) or a timeout: no answer
      stream.abort(err as Error)
    } finally {
      this.serving--
    }
  }
}
