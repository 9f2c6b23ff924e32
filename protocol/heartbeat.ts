// Neighbour heartbeats: every node picks a few of its directly connected peers as
// its watchers, keeps one long-lived stream to each and writes a 16-byte frame (its
// advert version) on it every interval; the watchers raise the alarm when the frames
// stop. A fixed number of watchers keeps each node's work constant as the grid grows.
import { Uint8ArrayList } from 'uint8arraylist'
import type { Libp2p, PeerId, Stream, Connection } from '@libp2p/interface'
import type { Version } from './membership.ts'

const FRAME = 16

export function encodeBeat (v: Version): Uint8Array {
  const buf = new Uint8Array(FRAME)
  const view = new DataView(buf.buffer)
  view.setFloat64(0, v.incarnation)
  view.setFloat64(8, v.seq)
  return buf
}

/** null for a frame that is not a version (negative, not finite, not an integer) */
export function decodeBeat (frame: Uint8Array): Version | null {
  if (frame.byteLength !== FRAME) return null
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME)
  const incarnation = view.getFloat64(0)
  const seq = view.getFloat64(8)
  const ok = (n: number): boolean => Number.isSafeInteger(n) && n >= 0
  return ok(incarnation) && ok(seq) ? { incarnation, seq } : null
}

export interface HeartbeatsInit {
  host: Libp2p
  protocol: string
  intervalMs: number
  /** silence after which onSilent fires (once per silence) */
  timeoutMs: number
  /** how many peers watch this node */
  watchers: number
  /** this node watches at most this many peers (default 3 x watchers) */
  maxWatched?: number
  version: () => Version
  onBeat: (peer: string, v: Version) => void
  onSilent: (peer: string) => void
  /** all connections to a peer this node watches are gone */
  onLost: (peer: string) => void
  onGarbage?: (peer: string) => void
}

interface Watch { last: number, silent: boolean }

/** a watcher that closed our stream (it refused, restarted or went away) is not asked again for this long, if others will do */
const REST_MS = 30_000

export class Heartbeats {
  private readonly init: HeartbeatsInit
  private readonly out = new Map<string, Stream>()
  private readonly opening = new Set<string>()
  private readonly watched = new Map<string, Watch>()
  /** peers whose stream from us closed, and until when they rest */
  private readonly rested = new Map<string, number>()
  private timer?: NodeJS.Timeout
  private lastTick = 0
  /** when this node last came out of a stall of its own (see tick) */
  private stallEndedAt = 0

  constructor (init: HeartbeatsInit) {
    this.init = init
  }

  async start (): Promise<void> {
    const { host } = this.init
    await host.handle(this.init.protocol, (stream, conn) => { this.onInbound(stream, conn) }, { maxInboundStreams: 4 })
    host.addEventListener('peer:connect', this.onConnect)
    host.addEventListener('peer:disconnect', this.onDisconnect)
    this.lastTick = Date.now()
    this.pickWatchers()
    this.timer = setInterval(() => { this.tick() }, this.init.intervalMs)
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    const { host } = this.init
    host.removeEventListener('peer:connect', this.onConnect)
    host.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const s of this.out.values()) s.abort(new Error('heartbeats stopped'))
    this.out.clear()
    this.watched.clear()
    this.rested.clear()
    await host.unhandle(this.init.protocol).catch(() => {})
  }

  get watching (): number { return this.watched.size }
  get watchedPeers (): Set<string> { return new Set(this.watched.keys()) }

  /** the peers this node beats to or watches: their connections must stay */
  get partners (): Set<string> { return new Set([...this.out.keys(), ...this.opening, ...this.watched.keys()]) }

  private readonly onConnect = (): void => { this.pickWatchers() }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    this.out.delete(id)
    // only a member we watch is our business: the others have watchers of their own,
    // and a hang-up (a pruned or shed connection) is not a reason to gossip a suspicion.
    // Nor is one that reaches us as we come out of a stall: the grid took us for dead
    // and hung up on us, and suspecting the peers that did so made each of them refute
    // (a storm on a saturated machine); a peer that really died has other watchers.
    if (this.watched.delete(id) && !this.stalledLately(Date.now())) this.init.onLost(id)
  }

  /** True while this node is late on its own tick (a stall not over yet) or just came out of one. */
  private stalledLately (now: number): boolean {
    return now - this.lastTick > 2 * this.init.intervalMs || now - this.stallEndedAt < this.init.timeoutMs
  }

  /** Tops the watcher set up to its size from the connected peers, at random, resting ones last. */
  private pickWatchers (): void {
    const missing = this.init.watchers - this.out.size - this.opening.size
    if (missing <= 0) return
    const now = Date.now()
    for (const [id, until] of this.rested) if (until <= now) this.rested.delete(id)
    const candidates = this.init.host.getConnections()
      .map(c => c.remotePeer)
      .filter((p, i, all) => all.findIndex(q => q.equals(p)) === i && !this.out.has(p.toString()) && !this.opening.has(p.toString()))
    for (let i = candidates.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!]
    }
    candidates.sort((a, b) => Number(this.rested.has(a.toString())) - Number(this.rested.has(b.toString())))
    for (const p of candidates.slice(0, missing)) void this.openTo(p)
  }

  private async openTo (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.out.has(id) || this.opening.has(id)) return
    this.opening.add(id)
    try {
      const stream = await this.init.host.dialProtocol(peer, this.init.protocol, { signal: AbortSignal.timeout(5000) })
      stream.addEventListener('close', () => { if (this.out.get(id) === stream) this.drop(id) })
      this.out.set(id, stream)
      try { stream.send(encodeBeat(this.init.version())) } catch {}
    } catch {
      // not a vgrid agent, or it went away: retried on the next tick while connected
    } finally {
      this.opening.delete(id)
    }
  }

  /** A watcher whose stream failed or was closed (it declined, restarted, went away): rest it. */
  private drop (id: string): void {
    this.out.delete(id)
    this.rested.set(id, Date.now() + REST_MS)
  }

  private onInbound (stream: Stream, conn: Connection): void {
    const id = conn.remotePeer.toString()
    // every node that joined through the same address picked it as its first watcher;
    // past a few times its share it declines, and the sender picks someone else
    if (!this.watched.has(id) && this.watched.size >= (this.init.maxWatched ?? 3 * this.init.watchers)) {
      stream.abort(new Error('watching enough peers'))
      return
    }
    const buf = new Uint8ArrayList()
    this.watched.set(id, { last: Date.now(), silent: false })
    // a closed stream does not end the watch: if the sender does not open another one
    // in time, that silence is worth a suspicion (which a live sender refutes at once)
    stream.addEventListener('message', (evt) => {
      buf.append(evt.data)
      while (buf.byteLength >= FRAME) {
        const v = decodeBeat(buf.subarray(0, FRAME))
        buf.consume(FRAME)
        if (v == null) {
          this.init.onGarbage?.(id)
          stream.abort(new Error('bad heartbeat frame'))
          return
        }
        const w = this.watched.get(id)
        if (w != null) { w.last = Date.now(); w.silent = false }
        this.init.onBeat(id, v)
      }
    })
  }

  private tick (): void {
    const now = Date.now()
    // if this process itself stalled (GC, overload), the silence we are about to see
    // is ours, not theirs: credit the stall to every watch before judging anyone
    const stall = now - this.lastTick - this.init.intervalMs
    this.lastTick = now
    if (stall > this.init.intervalMs / 2) {
      for (const w of this.watched.values()) w.last += stall
      this.stallEndedAt = now
    }
    const frame = encodeBeat(this.init.version())
    for (const [id, s] of this.out) {
      // a closing stream (hang-up in progress) still says 'open' but refuses writes
      if (s.status !== 'open' || s.writeStatus !== 'writable') { this.drop(id); continue }
      // a stream that cannot take one more frame is as good as dead; drop it so it
      // is reopened (and the far side sees silence if the link really is gone)
      if (s.writeBufferLength > FRAME * 64) { s.abort(new Error('heartbeat backlog')); this.drop(id); continue }
      try {
        s.send(frame)
      } catch (err) {
        s.abort(err as Error)
        this.drop(id)
      }
    }
    this.pickWatchers()
    for (const [id, w] of this.watched) {
      if (!w.silent && now - w.last >= this.init.timeoutMs) {
        w.silent = true
        this.init.onSilent(id)
      }
    }
  }
}
