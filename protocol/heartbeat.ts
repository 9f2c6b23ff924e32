// Neighbour heartbeats: every node picks a few of its directly connected peers as
// its watchers, keeps one long-lived stream to each and writes a frame (its advert
// version and its wall clock) on it every interval; the watchers raise the alarm when
// the frames stop, and measure their clock offset to the sender from the wall times.
// A fixed number of watchers keeps each node's work constant as the grid grows.
//
// Frames: the original 16 bytes (incarnation, seq: float64 big-endian; the first byte
// of a non-negative float64 is below 0x80), or an extended frame: 0xFF, a length byte
// L (>= 24), then L bytes: incarnation, seq, sender's wall clock (ms), all float64;
// bytes past those are a newer agent's and ignored. Both are accepted; extended frames
// are sent only to peers that accept them (sendClockTo).
// Both ways on each stream, to peers of protocol 3 (tableFor), go liveness tables: 0xFE,
// a 16-bit length, entries (protocol/liveness.ts); the watcher replies on the stream the
// sender opened, so every node hears tables from at least its own watchers. The sender
// watches those replies: a watcher that replied and stops (or whose stream or
// connections go) is reported (onUnanswered) to be checked for a cut, never suspected
// from this side (protocol/reach-watch.ts).
import { monoNow } from './mono-clock.ts'
import { parseTable, tableFrameSize, TABLE_MARK, type WireEntry } from './liveness.ts'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Libp2p, PeerId, Stream, Connection } from '@libp2p/interface'
import { Gauge, type Registry } from 'prom-client'
import type { Version } from './membership.ts'

const FRAME = 16
const EXT_MARK = 0xff
const EXT_BODY = 24

/**
 * Clock offset bound (ms): a peer whose clock differs from ours by more than this is
 * reported (log, /v1/nodes, metrics). Tighter than CockroachDB's 500 ms refusal,
 * because it only warns here; the hybrid clock's own bound (crdt/hlc.ts,
 * MAX_FUTURE_MS = 500) is twice this, so a grid within the warning bound never has
 * a stamp clamped.
 */
export const MAX_CLOCK_OFFSET_MS = 250
/** offset samples kept per peer (at 500 ms a beat: the last 8 s) */
const OFFSET_SAMPLES = 16

export interface Beat extends Version {
  /** the sender's wall clock (ms) when it sent the frame; absent in an old agent's frame */
  wallMs?: number
}

export function encodeBeat (v: Version): Uint8Array {
  const buf = new Uint8Array(FRAME)
  const view = new DataView(buf.buffer)
  view.setFloat64(0, v.incarnation)
  view.setFloat64(8, v.seq)
  return buf
}

/** An extended frame: the version and this node's wall clock. */
export function encodeBeatWithClock (v: Version, wallMs: number): Uint8Array {
  const buf = new Uint8Array(2 + EXT_BODY)
  buf[0] = EXT_MARK
  buf[1] = EXT_BODY
  const view = new DataView(buf.buffer)
  view.setFloat64(2, v.incarnation)
  view.setFloat64(10, v.seq)
  view.setFloat64(18, wallMs)
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

/**
 * The first frame at the start of `buf` (pure): `need` when more bytes must arrive,
 * `beat: null` for garbage, else the beat and how many bytes it took.
 */
export function parseBeat (buf: Uint8Array): 'need' | { beat: Beat | null, size: number } {
  if (buf.byteLength < 2) return 'need'
  if (buf[0] !== EXT_MARK) {
    if (buf.byteLength < FRAME) return 'need'
    return { beat: decodeBeat(buf.subarray(0, FRAME)), size: FRAME }
  }
  const len = buf[1]!
  if (len < EXT_BODY) return { beat: null, size: 2 }
  if (buf.byteLength < 2 + len) return 'need'
  const v = decodeBeat(buf.subarray(2, 2 + FRAME))
  const wallMs = new DataView(buf.buffer, buf.byteOffset + 2 + FRAME, 8).getFloat64(0)
  if (v == null || !Number.isFinite(wallMs) || wallMs < 0) return { beat: null, size: 2 + len }
  return { beat: { ...v, wallMs }, size: 2 + len }
}

/**
 * A peer's clock offset (ms, theirs minus ours) from samples of (their wall time in a
 * frame - our wall time at arrival). Each sample is the offset minus that frame's
 * transit time, so the largest sample is the closest (pure).
 */
export function estimateOffset (samples: readonly number[]): number | undefined {
  if (samples.length === 0) return undefined
  return Math.max(...samples)
}

/** true when an offset is beyond the bound, either way */
export function offsetExceeds (offsetMs: number, boundMs = MAX_CLOCK_OFFSET_MS): boolean {
  return Math.abs(offsetMs) > boundMs
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
  /** a peer's clock offset crossed the bound (`over`), or came back within it */
  onClockOffset?: (peer: string, offsetMs: number, over: boolean) => void
  /**
   * Send the wall clock to this peer (extended frames). An agent from before them
   * takes an extended frame for garbage and drops the stream, so only to peers whose
   * protocol version has them (protocol 2, see protocol/compat.ts); default: nobody.
   */
  sendClockTo?: (peer: string) => boolean
  /** this node's wall clock (ms); default Date.now */
  wallClock?: () => number
  /** clock offset bound (ms), default MAX_CLOCK_OFFSET_MS */
  maxClockOffsetMs?: number
  /** where to register vgrid_clock_offset_seconds{peer} and vgrid_clock_offset_peers_over_bound */
  registry?: Registry
  /** at the start of each tick, before any frame of it is sent (the liveness table's own beat) */
  onTickStart?: () => void
  /** the liveness table frame to send this peer this tick; null: none (a peer of protocol < 3 would drop the stream) */
  tableFor?: (peer: string) => Uint8Array | null
  /** a peer's liveness table arrived, on either of its streams */
  onTable?: (peer: string, entries: WireEntry[]) => void
  /** peers picked as watchers before the others (those that carry liveness tables: a node whose partners carry none sees too few, rv25) */
  prefer?: (peer: string) => boolean
  /**
   * a watcher that replied with tables fell silent for `timeoutMs` (once per silence),
   * or its stream or its last connection went: is it still in reach? (no suspicion: its
   * own watchers judge whether it lives). Not while this node is late on its tick or
   * just out of a stall, as for onLost.
   */
  onUnanswered?: (peer: string) => void
}

/** A peer's clock offset as this node measures it. */
export interface ClockOffset { offsetMs: number, over: boolean }

interface Watch { last: number, silent: boolean, stream: Stream }
/** the replies on a stream this node opened: when the last came, and whether the silence since was reported */
interface Replies { last: number, silent: boolean, replied: boolean }

/** a watcher that closed our stream (it refused, restarted or went away) is not asked again for this long, if others will do */
const REST_MS = 30_000
/** ticks' worth of frames a stream may have waiting before it counts as dead */
const BACKLOG_TICKS = 64
/** liveness tables read from one peer in one tick (both its streams, a tick's drift); more are skipped unread */
const TABLES_PER_TICK = 4

export class Heartbeats {
  private readonly init: HeartbeatsInit
  private readonly out = new Map<string, Stream>()
  private readonly opening = new Set<string>()
  private readonly watched = new Map<string, Watch>()
  /** peers whose stream from us closed, and until when they rest */
  private readonly rested = new Map<string, number>()
  private timer?: NodeJS.Timeout
  private lastTick = 0
  private readonly samples = new Map<string, number[]>()
  private readonly offsets = new Map<string, ClockOffset>()
  /** when this node last came out of a stall of its own (see tick) */
  private stallEndedAt = 0
  /** the most bytes one tick has sent on a stream (a tick's beat and table): the backlog bound's unit */
  private tickBytes = 2 + EXT_BODY
  /** tables read from each peer this tick */
  private readonly tablesRead = new Map<string, number>()
  /** the watchers' replies, by watcher */
  private readonly replies = new Map<string, Replies>()

  constructor (init: HeartbeatsInit) {
    this.init = init
    if (init.registry != null) {
      // read at scrape time: peers that stopped beating drop out with their offsets
      const offsets = this.offsets
      new Gauge({
        name: 'vgrid_clock_offset_seconds',
        help: 'Clock offset of a peer that beats to this node (theirs minus ours), from heartbeat frames',
        labelNames: ['peer'] as const,
        registers: [init.registry],
        collect () {
          this.reset()
          for (const [peer, o] of offsets) this.set({ peer }, o.offsetMs / 1000)
        }
      })
      new Gauge({
        name: 'vgrid_clock_offset_peers_over_bound',
        help: `Peers whose clock differs from this node's by more than the bound (${init.maxClockOffsetMs ?? MAX_CLOCK_OFFSET_MS} ms)`,
        registers: [init.registry],
        collect () { this.set([...offsets.values()].filter(o => o.over).length) }
      })
    }
  }

  async start (): Promise<void> {
    const { host } = this.init
    await host.handle(this.init.protocol, (stream, conn) => { this.onInbound(stream, conn) }, { maxInboundStreams: 4 })
    host.addEventListener('peer:connect', this.onConnect)
    host.addEventListener('peer:disconnect', this.onDisconnect)
    this.lastTick = monoNow()
    this.pickWatchers()
    this.timer = setInterval(() => { this.tick() }, this.init.intervalMs)
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    const { host } = this.init
    host.removeEventListener('peer:connect', this.onConnect)
    host.removeEventListener('peer:disconnect', this.onDisconnect)
    // replies forgotten first: the streams closed here are no watcher falling silent
    this.replies.clear()
    for (const s of this.out.values()) s.abort(new Error('heartbeats stopped'))
    this.out.clear()
    this.watched.clear()
    this.rested.clear()
    this.samples.clear()
    this.offsets.clear()
    await host.unhandle(this.init.protocol).catch(() => {})
  }

  /** Clock offsets (theirs minus ours, ms) to the peers that beat to this node with their clock. */
  clockOffsets (): ReadonlyMap<string, ClockOffset> { return this.offsets }

  get watching (): number { return this.watched.size }
  get watchedPeers (): Set<string> { return new Set(this.watched.keys()) }

  /** the peers this node beats to or watches: their connections must stay */
  get partners (): Set<string> { return new Set([...this.out.keys(), ...this.opening, ...this.watched.keys()]) }

  private readonly onConnect = (): void => { this.pickWatchers() }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    this.out.delete(id)
    this.unanswered(id)
    // only a member we watch is our business: the others have watchers of their own,
    // and a hang-up (a pruned or shed connection) is not a reason to gossip a suspicion.
    // Nor is one that reaches us as we come out of a stall: the grid took us for dead
    // and hung up on us, and suspecting the peers that did so made each of them refute
    // (a storm on a saturated machine); a peer that really died has other watchers.
    this.forgetClock(id)
    if (this.watched.delete(id) && !this.stalledLately(monoNow())) this.init.onLost(id)
  }

  /** True while this node is late on its own tick or just came out of a stall (no silence is judged then). */
  inStall (): boolean { return this.stalledLately(monoNow()) }

  /** True while this node is late on its own tick (a stall not over yet) or just came out of one. */
  private stalledLately (now: number): boolean {
    return now - this.lastTick > 2 * this.init.intervalMs || now - this.stallEndedAt < this.init.timeoutMs
  }

  /** Tops the watcher set up to its size from the connected peers, at random, resting ones last. */
  private pickWatchers (): void {
    const missing = this.init.watchers - this.out.size - this.opening.size
    if (missing <= 0) return
    const now = monoNow()
    for (const [id, until] of this.rested) if (until <= now) this.rested.delete(id)
    const candidates = this.init.host.getConnections()
      .map(c => c.remotePeer)
      .filter((p, i, all) => all.findIndex(q => q.equals(p)) === i && !this.out.has(p.toString()) && !this.opening.has(p.toString()))
    for (let i = candidates.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!]
    }
    const rank = (p: PeerId): number => (this.init.prefer?.(p.toString()) === false ? 2 : 0) + (this.rested.has(p.toString()) ? 1 : 0)
    candidates.sort((a, b) => rank(a) - rank(b))
    for (const p of candidates.slice(0, missing)) void this.openTo(p)
  }

  private async openTo (peer: PeerId): Promise<void> {
    const id = peer.toString()
    if (this.out.has(id) || this.opening.has(id)) return
    this.opening.add(id)
    try {
      const stream = await this.init.host.dialProtocol(peer, this.init.protocol, { signal: AbortSignal.timeout(5000) })
      stream.addEventListener('close', () => { if (this.out.get(id) === stream) this.drop(id) })
      // the watcher's replies: liveness tables only
      const buf = new Uint8ArrayList()
      const replies: Replies = { last: monoNow(), silent: false, replied: false }
      stream.addEventListener('message', (evt) => {
        Object.assign(replies, { last: monoNow(), silent: false, replied: true })
        buf.append(evt.data)
        if (!this.readTables(id, buf, true)) stream.abort(new Error('bad heartbeat reply'))
      })
      this.out.set(id, stream)
      this.replies.set(id, replies)
      try { stream.send(this.frameFor(id)) } catch {}
    } catch {
      // not a vgrid agent, or it went away: retried on the next tick while connected
    } finally {
      this.opening.delete(id)
    }
  }

  /** A watcher whose stream failed or was closed (it declined, restarted, went away): rest it. */
  private drop (id: string): void {
    this.out.delete(id)
    this.rested.set(id, monoNow() + REST_MS)
    this.unanswered(id)
  }

  /** A watcher's stream went: reported if it had replied (one that never did, an older agent or one that declined, says nothing by it). */
  private unanswered (id: string): void {
    const r = this.replies.get(id)
    this.replies.delete(id)
    if (r?.replied === true && !r.silent && !this.stalledLately(monoNow())) this.init.onUnanswered?.(id)
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
    this.watched.set(id, { last: monoNow(), silent: false, stream })
    // a closed stream does not end the watch: if the sender does not open another one
    // in time, that silence is worth a suspicion (which a live sender refutes at once)
    stream.addEventListener('message', (evt) => {
      buf.append(evt.data)
      for (;;) {
        if (buf.byteLength > 0 && buf.get(0) === TABLE_MARK) {
          if (!this.readTables(id, buf, false)) { stream.abort(new Error('bad liveness table frame')); return }
          if (buf.byteLength === 0 || buf.get(0) === TABLE_MARK) break
        }
        const r = parseBeat(buf.subarray(0, Math.min(buf.byteLength, 2 + 255)))
        if (r === 'need') break
        buf.consume(r.size)
        const v = r.beat
        if (v == null) {
          this.init.onGarbage?.(id)
          stream.abort(new Error('bad heartbeat frame'))
          return
        }
        const w = this.watched.get(id)
        if (w != null) { w.last = monoNow(); w.silent = false }
        if (v.wallMs != null) this.sampleClock(id, v.wallMs)
        this.init.onBeat(id, { incarnation: v.incarnation, seq: v.seq })
      }
    })
  }

  /**
   * Reads the table frames at the start of `buf`, up to the first frame that is not a
   * table or is not whole yet. False for garbage (reported; the caller drops the stream):
   * a malformed table, or anything but a table on a stream this node opened (`replies`).
   */
  private readTables (peer: string, buf: Uint8ArrayList, replies: boolean): boolean {
    while (buf.byteLength > 0) {
      if (buf.get(0) !== TABLE_MARK) {
        if (!replies) return true
        this.init.onGarbage?.(peer)
        return false
      }
      // whole frames only, from the header (a big frame in small pieces is not copied again for each)
      if (buf.byteLength < 3) return true
      const size = tableFrameSize([TABLE_MARK, buf.get(1), buf.get(2)])
      if (buf.byteLength < size) return true
      const read = this.tablesRead.get(peer) ?? 0
      // past the tick's budget, or with a newer whole table behind it (a backlog): skipped
      // unread; the newest ones date the most (rv25)
      const next = buf.byteLength >= size + 3 && buf.get(size) === TABLE_MARK ? size + tableFrameSize([TABLE_MARK, buf.get(size + 1), buf.get(size + 2)]) : Infinity
      if (read >= TABLES_PER_TICK || buf.byteLength >= next) { buf.consume(size); continue }
      this.tablesRead.set(peer, read + 1)
      const r = parseTable(buf.subarray(0, size))
      buf.consume(size)
      if (r === 'need' || r.entries == null) {
        this.init.onGarbage?.(peer)
        return false
      }
      this.init.onTable?.(peer, r.entries)
    }
    return true
  }

  /** Sends a frame; false when the stream is gone or too far behind (dropped by the caller). */
  private sendOn (s: Stream, frames: Uint8Array[]): boolean {
    // a closing stream (hang-up in progress) still says 'open' but refuses writes
    if (s.status !== 'open' || s.writeStatus !== 'writable') return false
    // a stream that cannot take more frames is as good as dead; dropped so that it is
    // reopened (and the far side sees silence if the link really is gone)
    this.tickBytes = Math.max(this.tickBytes, frames.reduce((n, f) => n + f.byteLength, 0))
    if (s.writeBufferLength > BACKLOG_TICKS * this.tickBytes) { s.abort(new Error('heartbeat backlog')); return false }
    try {
      for (const f of frames) s.send(f)
      return true
    } catch (err) {
      s.abort(err as Error)
      return false
    }
  }

  private frameFor (peer: string): Uint8Array {
    const v = this.init.version()
    return this.init.sendClockTo?.(peer) === true ? encodeBeatWithClock(v, (this.init.wallClock ?? Date.now)()) : encodeBeat(v)
  }

  private sampleClock (peer: string, wallMs: number): void {
    let s = this.samples.get(peer)
    if (s == null) this.samples.set(peer, s = [])
    s.push(wallMs - (this.init.wallClock ?? Date.now)())
    if (s.length > OFFSET_SAMPLES) s.shift()
    const offsetMs = estimateOffset(s)!
    const over = offsetExceeds(offsetMs, this.init.maxClockOffsetMs)
    const was = this.offsets.get(peer)
    this.offsets.set(peer, { offsetMs, over })
    if ((was?.over ?? false) !== over) this.init.onClockOffset?.(peer, offsetMs, over)
  }

  private forgetClock (peer: string): void {
    this.samples.delete(peer)
    this.offsets.delete(peer)
  }

  private tick (): void {
    const now = monoNow()
    // if this process itself stalled (GC, overload), the silence we are about to see
    // is ours, not theirs: credit the stall to every watch before judging anyone
    const stall = now - this.lastTick - this.init.intervalMs
    this.lastTick = now
    if (stall > this.init.intervalMs / 2) {
      for (const w of this.watched.values()) w.last += stall
      for (const r of this.replies.values()) r.last += stall
      this.stallEndedAt = now
    }
    this.init.onTickStart?.()
    this.tablesRead.clear()
    for (const [id, s] of this.out) {
      const table = this.init.tableFor?.(id)
      if (!this.sendOn(s, table == null ? [this.frameFor(id)] : [this.frameFor(id), table])) this.drop(id)
    }
    // the watchers' replies: the table, on the stream the sender opened
    for (const [id, w] of this.watched) {
      const table = this.init.tableFor?.(id)
      if (table != null) this.sendOn(w.stream, [table])
    }
    this.pickWatchers()
    for (const [id, w] of this.watched) {
      if (!w.silent && now - w.last >= this.init.timeoutMs) {
        w.silent = true
        this.init.onSilent(id)
      }
    }
    // the watchers' replies: only from those that replied before (they keep tables)
    for (const [id, r] of this.replies) {
      if (r.replied && !r.silent && now - r.last >= this.init.timeoutMs && !this.stalledLately(now)) {
        r.silent = true
        this.init.onUnanswered?.(id)
      }
    }
  }
}
