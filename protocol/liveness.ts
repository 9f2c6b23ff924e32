// A gossip-style liveness table (van Renesse, Minsky and Hayden's failure detector),
// carried on the heartbeat streams: every node counts its own beats, and each
// heartbeat stream carries, both ways, the beat counters of the members its sender
// has seen advance lately. A node thus learns, first- or second-hand, which members
// were alive in the last window, while hearing heartbeats from only a few of them.
//
// What it is for: a node cut off from everyone hears no counter advance from anyone
// and knows within the window that it sees no majority (fence.ts), where the member
// table alone kept the members it is not watched by alive until the silence timeout
// (30 s and more): takeovers in grids of more than five nodes had to wait that long.
//
// Only advances count, on this node's own clock: a member is in sight while its
// counter advanced here within the window, however old the news is; a steady lag along
// a path does not matter, a gap in the flow does. Entries not fresh here are not passed
// on, so a dead member's counter leaves the wire within a window.
//
// Wire (a heartbeat frame, protocol/heartbeat.ts): 0xFE, a 16-bit big-endian length L,
// then L / 20 entries of 20 bytes: an 8-byte key (the first 8 bytes of SHA-256 over the
// member's peer id text), its incarnation (float64) and its beat count (uint32).
import { createHash } from 'node:crypto'

export const TABLE_MARK = 0xfe
export const ENTRY_BYTES = 20
const KEY_BYTES = 8
/** at most this many entries in a frame (the 16-bit length) */
export const MAX_ENTRIES = Math.floor(0xffff / ENTRY_BYTES)

export interface BeatCount { incarnation: number, count: number }
export interface WireEntry extends BeatCount { key: string }

interface Entry extends BeatCount {
  /** this node's monotonic time when the counter last advanced here */
  advancedAt: number
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

const advances = (next: BeatCount, prev: BeatCount | undefined): boolean =>
  prev == null || next.incarnation > prev.incarnation || (next.incarnation === prev.incarnation && next.count > prev.count)

/**
 * The table: this node's own counter and the newest seen of every other member's.
 * Decisions over it are pure functions of its data and `now`.
 */
export class LivenessTable {
  private readonly me: string
  private readonly own: BeatCount
  private readonly entries = new Map<string, Entry>()

  constructor (me: string, incarnation: number) {
    this.me = me
    this.own = { incarnation, count: 0 }
  }

  /** This node's beat: its own counter goes up (once per heartbeat tick). */
  beat (): void { this.own.count = (this.own.count + 1) >>> 0 }

  /**
   * Entries a peer sent (`known`: the member ids this node knows, to map keys back;
   * keys of members it does not know yet are skipped). Returns how many advanced.
   */
  merge (entries: readonly WireEntry[], known: Iterable<string>, now: number): number {
    const byKey = new Map<string, string>()
    for (const id of known) byKey.set(keyOf(id), id)
    let n = 0
    for (const e of entries) {
      const id = byKey.get(e.key)
      if (id == null || id === this.me) continue
      const prev = this.entries.get(id)
      if (!advances(e, prev)) continue
      this.entries.set(id, { incarnation: e.incarnation, count: e.count, advancedAt: now })
      n++
    }
    return n
  }

  /** Whether the member's counter advanced here within the window (this node always). */
  fresh (id: string, now: number, windowMs: number): boolean {
    if (id === this.me) return true
    const e = this.entries.get(id)
    return e != null && now - e.advancedAt < windowMs
  }

  /** What to send: this node's own counter and every counter fresh here, at most MAX_ENTRIES. */
  toSend (now: number, windowMs: number): WireEntry[] {
    const out: WireEntry[] = [{ key: keyOf(this.me), ...this.own }]
    for (const [id, e] of this.entries) {
      if (out.length >= MAX_ENTRIES) break
      if (now - e.advancedAt < windowMs) out.push({ key: keyOf(id), incarnation: e.incarnation, count: e.count })
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
  })
  return buf
}

/**
 * The table frame at the start of `buf` (pure): 'need' for more bytes, `entries: null`
 * for a malformed one (a length that is not whole entries, an incarnation that is not
 * a non-negative integer), with the bytes it took either way.
 */
export function parseTable (buf: Uint8Array): 'need' | { entries: WireEntry[] | null, size: number } {
  if (buf.byteLength < 3) return 'need'
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const len = view.getUint16(1)
  if (buf.byteLength < 3 + len) return 'need'
  const size = 3 + len
  if (buf[0] !== TABLE_MARK || len % ENTRY_BYTES !== 0) return { entries: null, size }
  const entries: WireEntry[] = []
  for (let at = 3; at < size; at += ENTRY_BYTES) {
    const incarnation = view.getFloat64(at + KEY_BYTES)
    if (!Number.isSafeInteger(incarnation) || incarnation < 0) return { entries: null, size }
    entries.push({ key: Buffer.from(buf.subarray(at, at + KEY_BYTES)).toString('hex'), incarnation, count: view.getUint32(at + KEY_BYTES + 8) })
  }
  return { entries, size }
}
