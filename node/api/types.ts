// The API's request and response shapes: what the CLI, the test harness and other
// tools read. Nothing here imports the daemon, so a client never pulls it in.
import type { Resources } from '../../protocol/advert.ts'
import type { MemberCounts, Member } from '../../protocol/membership.ts'
import type { Pool } from '../../protocol/pool.ts'
import type { HaReport } from '../../crdt/placement/ha.ts'

export type { StateView, RecoveredFile } from '../state/index.ts'

export interface ErrorBody { error: { code: string, message: string } }

/** Something that keeps this node from working fully, until it clears (e.g. the state service's disk trouble). */
export interface HealthProblem { service: string, cause: string, message: string, since?: string }

/** GET /v1/status */
export interface StatusView {
  node: { id: string, name: string, version: string, cluster: string, addrs: string[] }
  /** by state; `unseen` (only when there are any): members on the roll this agent never heard from, counted as down */
  members: MemberCounts & { unseen?: number }
  pool: Pool
  /** ok: false (degraded) while any problem lasts */
  health: { ok: boolean, problems: HealthProblem[] }
  /** whether every running VM could be placed again if any one node failed (as GET /v1/ha); null without the VM manager */
  ha: HaReport | null
}

/** GET /v1/nodes (as `{nodes: NodeView[]}`) and GET /v1/nodes/:id */
export interface NodeView {
  id: string
  name: string
  state: Member['state']
  self: boolean
  since: string
  lastSeen: string
  addrs: string[]
  capacity: Resources
  reserved: Resources
  free: Resources
  load: number[]
  version: string
  labels: Record<string, string>
  /** unschedulable (`vgrid node drain`): placement skips it and its VMs move elsewhere */
  draining: boolean
  /**
   * its agent stopped for a restart with a grace every member confirmed (the roll's
   * record): its VMs run on, and move only if it is not back after `fenceMs` (plus a
   * margin) from when it was last heard of; null: none
   */
  restarting: { since: string, fenceMs: number } | null
  wireguard: { publicKey: string, endpoint: string } | null
  /** how it runs VMs (cgroup version, QEMU accelerator, working drivers); null until it has probed, or an agent without VMs */
  vmHost: { cgroup: 'v1' | 'v2' | 'none', accel: 'kvm' | 'tcg' | null, drivers: string[] } | null
  /** its fence timeout (ms): its VMs move this long (plus a margin) after it was last heard of; null: an agent that does not say (5 s) */
  fenceTimeoutMs: number | null
  /** the silence timeout in force it advertises (ms; a takeover in a roll of more than 5 waits for it too); null: an older agent */
  silenceMs: number | null
  /** the liveness window it advertises (ms; cut off from all, it loses sight of the others this long after; a takeover in a roll of more than 5 waits for it); null: an older agent */
  livenessMs: number | null
  /** known alive within the liveness window on the node asked, first- or second-hand (its fence counts it so where every roll member keeps a liveness table); null: this node, or a member without a table */
  inSight: boolean | null
  incarnation: number
  seq: number
  /** this member's clock minus ours (ms), measured on heartbeats, for neighbours only; over: past the bound */
  clock: { offsetMs: number, over: boolean } | null
  /** alive, but not reached from this node on the network while `by` reaches it (a partial partition), since when; null otherwise */
  outOfReach?: { by: string, since: string } | null
  /** why its overlay (WireGuard) is down, as it advertises (null: up, off, or an older agent): the last choice for VMs with connections, which it moves elsewhere once down 30 s */
  overlayDown?: string | null
  /** the members it says it does not reach though others do (a partial cut, its advert's `unreached`), by name: the last choice for VMs with connections or disks */
  unreaches?: string[]
  /** how little room its data dir's disk has, as it advertises once that counts as full (null: room, or an older agent): no VM is placed there */
  dataDiskFull?: string | null
  /** the protocol versions the member speaks, and whether this agent can work with it (and why not) */
  protocol: { speaks: { min: number, max: number }, ok: boolean, reason?: string }
}

/**
 * A member on the grid's roll this agent has not heard from since it started (no
 * advert, so nothing but its roll entry is known): it counts as down for the majority
 */
export interface UnseenMemberView { id: string, name: string, joined: string }

/** GET /v1/nodes: the members this agent knows, and the roll's members it never heard from */
export interface NodesView { nodes: NodeView[], unseen: UnseenMemberView[] }

/** GET /v1/token */
export interface TokenView { token: string }

/** PUT /v1/nodes/:id/labels/:key */
export interface LabelBody { value: string }
export interface LabelSetView { node: string, name: string, key: string, value: string, labels: Record<string, string> }
/** PATCH /v1/nodes/:id/labels `{set?: {key: value}, remove?: [key]}`: all applied in one change, or none */
export interface LabelsChangedView { node: string, name: string, set: Record<string, string>, removed: string[], labels: Record<string, string> }
/** DELETE /v1/nodes/:id/labels/:key */
export interface LabelRemovedView { node: string, name: string, key: string, removed: true, labels: Record<string, string> }
