// A gossip-style liveness table (after van Renesse, Minsky and Hayden's failure
// detector), carried on the heartbeat streams: every node counts its own beats, and each
// heartbeat stream carries, both ways, every member the sender has seen alive lately,
// with how long ago. A node thus learns, first- or second-hand, which members were alive
// within the window, while hearing heartbeats from only a few of them.
//
// What it is for: a node cut off from everyone hears nothing more and knows within the
// window that it sees no majority (fence.ts), where the member table alone kept the
// members it is not watched by alive until the silence timeout (30 s and more):
// takeovers in grids of more than five nodes had to wait that long.
//
// How old the news is, on this node's clock only: a table echoes this node's own beat
// count as its sender had it, so it was put together after this node sent that beat
// (`sentAt`). An entry aged `age` in it says its member was alive at `sentAt - age` or
// later. Time a table spent in buffers, behind a stalled relay or a stalled receiver,
// counts against it (rv24: news merged late must not pass for fresh), and no clock of
// another node is read. A table that echoes no beat of this run dates nothing; its counts
// are kept to be echoed, and passed on with an unknown age (NO_AGE) while they advance,
// which is how two nodes that just met come to date each other's tables.
//
// Wire (a heartbeat frame, protocol/heartbeat.ts): 0xFE, a 16-bit big-endian length L,
// then L / 24 entries of 24 bytes: an 8-byte key (the first 8 bytes of SHA-256 over the
// member's peer id text), its incarnation (float64), its beat count as the sender has it
// (uint32) and the entry's age at the sender (uint32, ms: 0 for the sender itself).
import { createHash } from 'node:crypto'

export const TABLE_MARK = 0xfe
export const ENTRY_BYTES = 24
const KEY_BYTES = 8
/** at most this many entries in a frame (the 16-bit length) */
export const MAX_ENTRIES = Math.floor(0xffff / ENTRY_BYTES)
/** own beats whose send time is kept (at 500 ms a beat: 8.5 minutes); an echo of an older one counts for nothing */
const SENT_KEPT = 1024
/** the age of an entry whose count is known but not when its member was alive */
export const NO_AGE = 0xffffffff

export interface BeatCount { incarnation: number, count: number }
export interface WireEntry extends BeatCount { key: string, ageMs: number }

interface Entry extends BeatCount {
  /** this node's monotonic time by which the member was last known alive (a lower bound; -Infinity: never dated) */
  aliveAt: number
  /** when its count last went up here: passed on (to be echoed) while that is recent */
  countAt: number
}

const keys = new Map<string, string>()
/** A member's 8-byte wire key, as hex (cached: the set of members is small). */
export function keyOf (id: string): string {
  let k = keys.get(id)
  if (k == null) {
    if (keys.size > 65_536) keys.clear()
    k = createHash('sha256').update(id).digest('hex').slice(0, 2 * KEY_BYTES)
    keys.set(id, k)
  }
  return k
}

/**
 * Whether beat count `a` comes after `b` (pure): counts are uint32s on the wire and wrap
 * after 2^32 beats, so they are compared as serial numbers (RFC 1982, modulo 2^32): `a`
 * is after `b` when it is 1 to 2^31 - 1 beats ahead; exactly 2^31 apart is neither (the
 * RFC leaves it undefined). A member beats every 500 ms, so 2^31 beats are 34 years: no
 * count held here is ever that far behind its member's.
 */
export function countAfter (a: number, b: number): boolean {
  const d = (a - b) >>> 0
  return d !== 0 && d < 0x80000000
}

const newer = (next: BeatCount, prev: BeatCount | undefined): boolean =>
  prev == null || next.incarnation > prev.incarnation || (next.incarnation === prev.incarnation && countAfter(next.count, prev.count))

/**
 * The table: this node's own beat count (with when each beat went out) and, for every
 * other member, the newest count seen and since when it is known alive. Decisions over
 * it are pure functions of its data and `now`.
 */
export class LivenessTable {
  private readonly me: string
  private readonly myKey: string
  private readonly own: BeatCount
  /** when each of this node's recent beats went out, by count */
  private readonly sentAt = new Map<number, number>()
  private readonly entries = new Map<string, Entry>()
  private readonly byKey = new Map<string, string>()

  /** `count`: the beat count to start from (0; tests start near the wrap) */
  constructor (me: string, incarnation: number, count = 0) {
    this.me = me
    this.myKey = keyOf(me)
    this.own = { incarnation, count: count >>> 0 }
  }

  /**
   * This node's beat (once per heartbeat tick, before its frames go out). The count
   * wraps from 2^32 - 1 to 0 (a uint32 on the wire); send times are kept by count, and an
   * echo is looked up by its exact count, so dating goes on across the wrap.
   */
  beat (now: number): void {
    this.own.count = (this.own.count + 1) >>> 0
    this.sentAt.set(this.own.count, now)
    this.sentAt.delete((this.own.count - SENT_KEPT) >>> 0)
  }

  /**
   * A table a peer sent (`known`: the member ids this node knows, to map keys back;
   * keys of members it does not know are skipped). It counts only if it echoes a beat
   * of this run whose send time is kept; then each member in it was alive at that send
   * time less its age, or later. Returns how many members it brought news of.
   */
  merge (entries: readonly WireEntry[], known: Iterable<string>, now: number): number {
    const echo = entries.find(e => e.key === this.myKey)
    const sent = echo != null && echo.incarnation === this.own.incarnation ? this.sentAt.get(echo.count) : undefined
    // undated: the counts only
    const since = sent == null ? -Infinity : Math.min(sent, now)
    const byKey = this.keysOf(known)
    let n = 0
    for (const e of entries) {
      const id = byKey.get(e.key)
      if (id == null || id === this.me) continue
      const prev = this.entries.get(id)
      const aliveAt = e.ageMs === NO_AGE ? -Infinity : since - e.ageMs
      const later = aliveAt > (prev?.aliveAt ?? -Infinity)
      // the newest count is kept to echo it back (the member dates its tables by it)
      const ahead = newer(e, prev)
      if (!later && !ahead) continue
      this.entries.set(id, {
        incarnation: ahead ? e.incarnation : prev!.incarnation,
        count: ahead ? e.count : prev!.count,
        countAt: ahead ? now : prev!.countAt,
        aliveAt: later ? aliveAt : prev?.aliveAt ?? -Infinity
      })
      if (later) n++
    }
    return n
  }

  /** the members by wire key (kept while the same members are known: tables come many a second) */
  private keysOf (known: Iterable<string>): ReadonlyMap<string, string> {
    const ids = [...known]
    if (this.byKey.size !== ids.length || ids.some(id => this.byKey.get(keyOf(id)) !== id)) {
      this.byKey.clear()
      for (const id of ids) this.byKey.set(keyOf(id), id)
    }
    return this.byKey
  }

  /** This node's monotonic time by which the member is known alive (a lower bound), if ever dated. */
  aliveAt (id: string): number | undefined {
    const at = this.entries.get(id)?.aliveAt
    return at == null || at === -Infinity ? undefined : at
  }

  /** Whether the member was alive within the window, as far as this node knows (this node always). */
  fresh (id: string, now: number, windowMs: number): boolean {
    if (id === this.me) return true
    const e = this.entries.get(id)
    return e != null && now - e.aliveAt < windowMs
  }

  /**
   * What to send: this node's own count (age 0), every member alive within its window
   * here (`windowOf`) with how long ago, and every member whose count went up here within
   * it with an unknown age (to be echoed); at most MAX_ENTRIES, the freshest first.
   */
  toSend (now: number, windowOf: (id: string) => number): WireEntry[] {
    const out: WireEntry[] = [{ key: this.myKey, ...this.own, ageMs: 0 }]
    const sent = [...this.entries].filter(([id, e]) => now - Math.max(e.aliveAt, e.countAt) < windowOf(id)).sort((a, b) => b[1].aliveAt - a[1].aliveAt || b[1].countAt - a[1].countAt)
    for (const [id, e] of sent.slice(0, MAX_ENTRIES - 1)) {
      const dated = now - e.aliveAt < windowOf(id)
      out.push({ key: keyOf(id), incarnation: e.incarnation, count: e.count, ageMs: dated ? Math.min(NO_AGE - 1, Math.max(0, Math.ceil(now - e.aliveAt))) : NO_AGE })
    }
    return out
  }

  /** Drops the entries of members no longer known (forgotten). */
  retain (known: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!known.has(id)) this.entries.delete(id)
  }
}

export function encodeTable (entries: readonly WireEntry[]): Uint8Array {
  const list = entries.slice(0, MAX_ENTRIES)
  const len = list.length * ENTRY_BYTES
  const buf = new Uint8Array(3 + len)
  const view = new DataView(buf.buffer)
  buf[0] = TABLE_MARK
  view.setUint16(1, len)
  list.forEach((e, i) => {
    const at = 3 + i * ENTRY_BYTES
    buf.set(Buffer.from(e.key, 'hex').subarray(0, KEY_BYTES), at)
    view.setFloat64(at + KEY_BYTES, e.incarnation)
    view.setUint32(at + KEY_BYTES + 8, e.count)
    view.setUint32(at + KEY_BYTES + 12, e.ageMs)
  })
  return buf
}

/** The length a table frame says it has, once its 3-byte header is there (for reading it whole). */
export const tableFrameSize = (header: ArrayLike<number>): number => 3 + ((header[1]! << 8) | header[2]!)

/**
 * The table frame at the start of `buf` (pure): 'need' for more bytes, `entries: null`
 * for a malformed one (a length that is not whole entries, an incarnation that is not
 * a non-negative integer), with the bytes it took either way.
 */
export function parseTable (buf: Uint8Array): 'need' | { entries: WireEntry[] | null, size: number } {
  if (buf.byteLength < 3) return 'need'
  const size = tableFrameSize(buf)
  if (buf.byteLength < size) return 'need'
  const len = size - 3
  if (buf[0] !== TABLE_MARK || len % ENTRY_BYTES !== 0) return { entries: null, size }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const entries: WireEntry[] = []
  for (let at = 3; at < size; at += ENTRY_BYTES) {
    const incarnation = view.getFloat64(at + KEY_BYTES)
    if (!Number.isSafeInteger(incarnation) || incarnation < 0) return { entries: null, size }
    entries.push({ key: Buffer.from(buf.subarray(at, at + KEY_BYTES)).toString('hex'), incarnation, count: view.getUint32(at + KEY_BYTES + 8), ageMs: view.getUint32(at + KEY_BYTES + 12) })
  }
  return { entries, size }
}
