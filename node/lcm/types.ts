// The LCM's shapes that its routes, metrics and service share (kept apart from the
// service, so that the routes and metrics depend on what they read, not on it).
import type { MemberTable } from '../../protocol/membership.ts'
import type { Objects, Kind, Draft } from '../../crdt/schema.ts'
import type { Backend } from './wireguard.ts'
import type { InterfaceState } from './wireguard-format.ts'
import type { OverlayPrefix } from './overlay.ts'
import type { Addressing, PeerPlan } from './plan.ts'
import type { Link, Ruleset } from './rules.ts'
import type { TableCounters } from './nft.ts'
import type { TunnelDown } from './tunnel-health.ts'
import type { LinkCounts } from './link-counts.ts'

/** What the LCM reads and writes of the cluster document. */
export interface LcmReader { list: <K extends Kind>(kind: K) => Array<Objects[K]> }

export interface LcmState {
  read: () => LcmReader
  /** `w.reader`: the document as the write finds it (what changed since a pass read it counts) */
  write: <T>(fn: (w: {
    reader: LcmReader & { get: <K extends Kind>(kind: K, key: string) => { value: Objects[K] } | undefined }
    put: <K extends Kind>(kind: K, d: Draft<K>) => Objects[K]
    remove: (kind: Kind, key: string) => boolean
    update: <K extends Kind>(kind: K, key: string, patch: Partial<Draft<K>>) => Objects[K]
  }) => T, message?: string) => Promise<T>
  on: (event: 'changed', fn: () => void) => unknown
  off: (event: 'changed', fn: () => void) => unknown
}

export interface LcmStatus {
  ok: boolean
  /** why WireGuard is not running, exactly */
  error: string | null
  /** since when (ISO time) `error` holds */
  errorSince: string | null
  /** why the last plan (routes, peers, link rules) could not be applied; null once one applied */
  applyError: string | null
  applyErrorSince: string | null
  /** routes inside the overlay range that vgrid did not make (route-conflicts.ts), null when none */
  routeConflict: string | null
  routeConflictSince: string | null
  /**
   * the tunnels this node's links need that have had no WireGuard handshake for too
   * long (tunnel-health.ts), as the last check found them (absent: an agent before it)
   */
  tunnelsDown?: TunnelDown[]
  backend: Backend | null
  interface: string
  publicKey: string | null
  endpoint: string | null
  address: string | null
  prefix: OverlayPrefix
}

/** What the routes and the metrics read of the running service. */
export interface LcmView {
  readonly table: string
  readonly state: LcmState
  readonly members: MemberTable
  /** who reaches a member this node does not (a partial partition), or undefined */
  unreachedBy?: (node: string) => string | undefined
  readonly selfId: string
  /** how long a link create waits after its write for others' writes of the same moment (links.ts LINK_SETTLE_MS) */
  readonly linkSettleMs?: number
  readonly last: { plan: PeerPlan, rules: Ruleset, addr: Addressing, links: Link[] } | null
  status: () => LcmStatus
  schedule: (delayMs?: number) => void
  settled: () => Promise<void>
  peerStates: () => Promise<Array<InterfaceState['peers'][number] & { node: string | null }>>
  counters: () => Promise<TableCounters>
  /**
   * dropped packets per (source, destination); `spoofed`: how many of them had a forged
   * source; `srcLink`: the VM of this node whose link address the source is (it sent
   * from its end of the /30 to this node, not from its overlay address)
   */
  drops: () => Promise<Array<{ src: string, dst: string, srcVm: string | null, dstVm: string | null, srcLink?: string | null, packets: number, bytes: number, spoofed?: number }>>
  /** this node's counts of these links (link-counts.ts countsOf) */
  linkCounts: (ids: readonly string[]) => Promise<Map<string, LinkCounts>>
  /** another node's counts of these links; throws when it does not answer (absent: this agent cannot ask, as without a libp2p host) */
  askCounts?: (node: string, ids: readonly string[]) => Promise<Map<string, LinkCounts>>
}
