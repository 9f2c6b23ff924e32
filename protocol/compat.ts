// Protocol versions: which releases can work together. Every advert says which
// protocol versions its node speaks (`proto`, the newest, and `protoMin`, the oldest
// it still speaks); an advert without them comes from a release before they existed,
// which speaks 1. Two nodes work together when their ranges overlap, and then speak
// the newest version both know. A release adds fields freely (adverts and messages
// keep or ignore what they do not know); it raises `proto` only for a change an older
// node would misread, and keeps `protoMin` low for as long as it still speaks the old
// one, so a grid can be updated one server at a time.
import type { Advert } from './advert.ts'

export interface ProtocolRange { min: number, max: number }

/**
 * the protocol versions this release speaks. 2: heartbeat frames may carry the
 * sender's wall clock (24 bytes; protocol/heartbeat.ts), sent only to members that
 * speak 2, since a release that speaks only 1 drops a stream with a longer frame.
 * 3: heartbeat streams carry liveness tables both ways (protocol/liveness.ts), sent
 * only to members that speak 3, for the same reason.
 */
export const PROTOCOL: ProtocolRange = { min: 1, max: 3 }

export interface Compat {
  /** the range the member speaks, as its advert says */
  proto: ProtocolRange
  /** whether this node and the member share a protocol version */
  ok: boolean
  /** the version the two speak (the newest both know); absent when none */
  speak?: number
  /** why not, for the log and /v1/nodes; absent when ok */
  reason?: string
}

/** The protocol range an advert declares (1 for adverts from before the field). Pure. */
export function protocolOf (advert: Pick<Advert, 'proto' | 'protoMin'>): ProtocolRange {
  const max = advert.proto ?? 1
  return { min: Math.min(advert.protoMin ?? max, max), max }
}

const show = (r: ProtocolRange): string => r.min === r.max ? String(r.max) : `${r.min}-${r.max}`

/** Whether this node (speaking `ours`) can work with the member that published `advert`. Pure. */
export function protocolCompat (advert: Pick<Advert, 'proto' | 'protoMin'>, ours: ProtocolRange = PROTOCOL): Compat {
  const proto = protocolOf(advert)
  if (proto.min <= ours.max && ours.min <= proto.max) return { proto, ok: true, speak: Math.min(proto.max, ours.max) }
  const newer = proto.min > ours.max
  return {
    proto,
    ok: false,
    reason: `speaks protocol ${show(proto)}, this agent speaks ${show(ours)}: ` +
      (newer ? 'the member runs a newer release; update this agent' : 'the member runs an older release; update it')
  }
}

/**
 * Remembers which members were reported incompatible, so that each is reported once
 * (again only after it became compatible in between, e.g. updated and back), not on
 * every advert. Pure over its own map.
 */
export class CompatReports {
  private readonly reported = new Map<string, string>()

  /** The compat of a member's new advert, and whether it is news worth a report. */
  note (nodeId: string, advert: Pick<Advert, 'proto' | 'protoMin'>, ours: ProtocolRange = PROTOCOL): { compat: Compat, report: boolean } {
    const compat = protocolCompat(advert, ours)
    if (compat.ok) {
      this.reported.delete(nodeId)
      return { compat, report: false }
    }
    const key = show(compat.proto)
    const report = this.reported.get(nodeId) !== key
    this.reported.set(nodeId, key)
    return { compat, report }
  }

  /** The member was forgotten: report it afresh if it comes back. */
  forget (nodeId: string): void { this.reported.delete(nodeId) }

  /** members currently held incompatible */
  get incompatible (): ReadonlySet<string> { return new Set(this.reported.keys()) }
}
