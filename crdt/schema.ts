// The cluster document's schema (version 1): one map per kind of object, each keyed by
// the object's id. Every object carries `at` (ms since the epoch) and `by` (the node id
// of the writer): the conflict rules read them. Objects tolerate extra fields so that a
// newer agent can add fields without older agents rejecting its changes.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'

/** the newest schema this code knows; the genesis is schema 1 (crdt/genesis.ts), migrations add the rest */
export const SCHEMA_VERSION = 2

/** ids of apps, VMs, volumes, connections: readable, safe in paths and URLs */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'
/** libp2p peer ids are base58 or base32 text */
const NODE_ID_PATTERN = '^[A-Za-z0-9]{1,128}$'
/** like Kubernetes label keys: 1-63 chars, alphanumeric at both ends, may hold a "prefix/" */
export const LABEL_KEY_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$'
export const LABEL_VALUE_MAX = 256
/** a VM's terminal: a host name inside VMs (/etc/hosts, a guest's kernel command line) */
export const TERMINAL_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{0,62}$'
export const TERMINAL_RE = new RegExp(TERMINAL_PATTERN)
/** who a `process` VM's command runs as: a user name or a numeric uid */
export const VM_USER_PATTERN = '^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})$'
/** at most this many input and this many output terminals per VM */
export const TERMINALS_MAX = 64

const Id = Type.String({ pattern: ID_PATTERN })
const NodeId = Type.String({ pattern: NODE_ID_PATTERN })
const Name = Type.String({ minLength: 1, maxLength: 128 })
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
const Props = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 4096 }))
const Stamp = { at: Count, by: NodeId }
const open = { additionalProperties: true }
const Terminals = Type.Array(Type.String({ pattern: TERMINAL_PATTERN }), { maxItems: TERMINALS_MAX, uniqueItems: true })

export const AppSchema = Type.Object({
  id: Id,
  name: Name,
  desired: Type.Union([Type.Literal('running'), Type.Literal('stopped')]),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
  properties: Props,
  ...Stamp
}, open)

export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const

export const VmSpecSchema = Type.Object({
  driver: Type.Union([Type.Literal('qemu'), Type.Literal('process')]),
  /** guaranteed: reserved on the holder, never overcommitted */
  cpu: Type.Number({ exclusiveMinimum: 0, maximum: 4096 }),
  memoryBytes: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  /** boot from a disk image (qemu) */
  image: Type.Optional(Type.String({ maxLength: 1024 })),
  /** direct kernel boot (qemu) */
  kernel: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  initrd: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  cmdline: Type.Optional(Type.String({ maxLength: 4096 })),
  /** the program of a `process` VM */
  command: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
  /** the user a `process` VM's command runs as (absent: root), without capabilities */
  user: Type.Optional(Type.String({ pattern: VM_USER_PATTERN })),
  volumes: Type.Array(Id, { maxItems: 64 }),
  /** node labels a host must carry, key -> value (placement reads them) */
  constraints: Props,
  /** VMs of one group go to different nodes where possible */
  antiAffinity: Type.Optional(Type.String({ pattern: ID_PATTERN })),
  /** what to do when the VM exits: default `always` (restart on the same node, up to 3 crashes a day) */
  restart: Type.Optional(Type.Union(RESTART_POLICIES.map(p => Type.Literal(p)))),
  labels: Type.Optional(Props),
  /** the terminals links may connect: an input takes many links, an output exactly one (absent = none) */
  inputs: Type.Optional(Terminals),
  outputs: Type.Optional(Terminals),
  /** when `vm update` last wrote it (the write's stamp): of two written at once, the later is read (conflicts.ts latestSpec) */
  updatedAt: Type.Optional(Type.Integer({ minimum: 0 }))
}, open)

export const VmSchema = Type.Object({
  id: Id,
  name: Name,
  app: Type.Union([Id, Type.Null()]),
  desired: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('hibernated')]),
  spec: VmSpecSchema,
  /**
   * when this VM was made (ms, by its creator's clock; absent: made by an older agent).
   * A VM's id is its name: history events from before it are a former VM's of that name
   */
  created: Type.Optional(Type.Integer({ minimum: 0 })),
  /**
   * its latest updates (`vm update`) as history events, a lease's log's shape, at most
   * VM_UPDATES_MAX: written in the update's own change, so each is kept as long as the
   * update is (the copy in the lease's log, for agents of earlier releases, was lost to a
   * claim written at the same moment, which writes the lease whole) and an update before
   * any lease is shown. Informational, as the lease's log: any value is taken
   */
  updates: Type.Optional(Type.Unknown()),
  /**
   * when `vm start` last asked it to run (the write's stamp): a holder waiting out a
   * restart pause begun before it starts it now (an operator's start is no quick run)
   */
  startAsked: Type.Optional(Type.Integer({ minimum: 0 })),
  ...Stamp
}, open)

/** the updates a VM's entry keeps in its history (`updates`) */
export const VM_UPDATES_MAX = 8

/** what the holder last reported about its run of the VM */
export const LEASE_STATUSES = ['claimed', 'starting', 'running', 'stopping', 'stopped', 'failed'] as const

/** the most events a lease's log keeps (the oldest go first) */
export const LEASE_LOG_MAX = 32

/**
 * One event of a VM's history (placed, started, crashed, stopped, ...), written into
 * the lease by the node that made the transition, in the same change, at the time it
 * happened (node/dvmm/history.ts). Any event name: an older agent keeps newer ones.
 * Not part of the lease's own check (see `log` below): node/dvmm/history.ts reads
 * each event with isLeaseEvent and leaves out, and counts, those it cannot read.
 */
export const LeaseEventSchema = Type.Object({
  at: Count,
  event: Type.String({ pattern: '^[a-z][a-z-]{0,31}$' }),
  /** the node the event happened on */
  node: NodeId,
  /** its name when the event was written: shown once the node has left the roll and the member table */
  name: Type.Optional(Name),
  epoch: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  detail: Type.Optional(Type.String({ maxLength: 512 }))
}, open)

/** keyed by the VM id: at most one lease per VM */
export const LeaseSchema = Type.Object({
  vm: Id,
  holder: NodeId,
  epoch: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  /** reserved on the holder while the lease is held (0 once failed or given up) */
  cpu: Type.Number({ minimum: 0, maximum: 4096 }),
  memoryBytes: Count,
  status: Type.Optional(Type.Union(LEASE_STATUSES.map(p => Type.Literal(p)))),
  /** why the status is what it is (a driver's error, the crash rule) */
  reason: Type.Optional(Type.String({ maxLength: 2048 })),
  /** times (ms) of the VM's recent crashes on this holder, for the 3-in-24-h rule */
  crashes: Type.Optional(Type.Array(Count, { maxItems: 16 })),
  /** the previous holder, when this lease was taken over */
  from: Type.Optional(NodeId),
  /**
   * set with status `stopped` by the holder of a VM stopped on request, once its run
   * ended there (the lease is kept for its console): nothing runs under it and nothing
   * will (a holder never starts a stopped lease). Should the VM be desired running (a
   * `vm start` that saw the lease still running), any node places it anew over it, at
   * epoch + 1. The crash rule's stopped leases have none: they stay stopped (absent:
   * not parked, or written by an agent that kept none)
   */
  parked: Type.Optional(Type.Boolean()),
  /**
   * set with status `stopped` when the VM exited cleanly (code 0) and its restart policy
   * (on-failure, never) leaves it so: it did its work, which is no failure (absent: it
   * crashed, or written by an agent that kept none)
   */
  completed: Type.Optional(Type.Boolean()),
  /**
   * the `created` of the VM this lease was claimed for: a lease (and its log) of a former
   * VM of the same name has another (absent: claimed by an older agent, or for a VM
   * made by one)
   */
  made: Type.Optional(Type.Integer({ minimum: 0 })),
  /**
   * the volumes the VM had as its disks when this lease was claimed: a run of a VM
   * removed since (its node away) still has them open, and no other VM is placed on
   * them until that run has ended (absent: none, or claimed by an older agent)
   */
  disks: Type.Optional(Type.Array(Id, { maxItems: 64 })),
  /**
   * what the run boots (a digest of its spec's kernel, initrd, command line, image,
   * command and user: node/dvmm/boot-fields.ts bootDigest), written when its last run
   * started: a `vm update` of them that merged after the start shows as a run of the
   * earlier boot (absent: never started, or started by an older agent)
   */
  boot: Type.Optional(Type.String({ maxLength: 64 })),
  /**
   * the VM's history, oldest first (LeaseEventSchema, at most LEASE_LOG_MAX written); a
   * new claim carries on the log of the lease before it (absent: written by an agent
   * that kept none). Informational, so any value is accepted here: a lease is
   * safety-critical, and one bad event (a newer agent's, a faulty one's) must not make
   * it invalid (a peer's change refused by sync, or the lease skipped when read, so that
   * its VM looks unplaced and is claimed again while it runs). Readers check each event
   * (isLeaseEvent) and read no more than the newest LEASE_LOG_MAX.
   */
  log: Type.Optional(Type.Unknown()),
  ...Stamp
}, open)

/**
 * The member roll (schema 2): the nodes of the grid, recorded by each node when it
 * first joins and removed by a graceful leave or `vgrid node forget`. "A majority"
 * means a majority of this roll, never of the gossip table (which forgets the dead).
 */
export const RollEntrySchema = Type.Object({
  node: NodeId,
  name: Name,
  /** when the node first recorded itself (ms) */
  joined: Count,
  /** unschedulable: placement skips it and its VMs move elsewhere */
  draining: Type.Optional(Type.Boolean()),
  /** when the drain began (ms; null once undrained): the volume store moves the copies of earlier drains first (node/gvs/live-placement.ts) */
  drainedAt: Type.Optional(Type.Union([Type.Null(), Count])),
  /**
   * Written by the node as its agent stops for a restart (SIGTERM), once every member it
   * sees has it (node/dvmm/restart-grace.ts): its VMs run on under its watchdog, and
   * others wait `fenceMs` (not their fence timeout) plus the margin from when they last
   * heard of it before taking its leases over. Cleared (null) by its next run once it
   * sees a majority again and the vote it lent is no longer counted (restart-grace.ts).
   */
  restart: Type.Optional(Type.Union([Type.Null(), Type.Object({
    fenceMs: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    /** when the stop began (wall ms): for display, and the lock on its vote (crdt/placement/fence.ts voteLockedUntil) */
    since: Count,
    /**
     * every member it asked held the record on disk: the others may count its vote while
     * it is away (lentVotes), and so keep their VMs alive when its absence leaves no
     * majority in sight. Absent (agents before it): no vote lent
     */
    confirmed: Type.Optional(Type.Boolean()),
    /**
     * its next run is up and its own watchdog guards the VMs with the usual timeout: a
     * later absence is a crash, not this restart (no grace, no vote lent); the record
     * stays for the lock on the vote it may have lent. Absent (agents before it): the
     * grace counts until it ends
     */
    back: Type.Optional(Type.Boolean())
  }, open)])),
  ...Stamp
}, open)

/** GVS object-set names: a volume's layers (see node/gvs/layers.ts) */
const LayerName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}$' })
const Layers = Type.Array(LayerName, { minItems: 1, maxItems: 256 })

export const SnapshotSchema = Type.Object({
  name: Id,
  createdAt: Count,
  /** GVS: the frozen layers the snapshot reads, top first */
  layers: Type.Optional(Layers),
  /** GVS: the volume's size when it was taken (absent: taken before this was kept; the volume's size) */
  sizeBytes: Type.Optional(Count),
  ...Stamp
}, open)

/** GVS: the live nodes (and weights) placement was over while a volume was written (node/gvs/write-intervals.ts) */
const WriteIntervalSchema = Type.Object({
  nodes: Type.Array(Type.Object({ id: NodeId, weight: Count }, open), { minItems: 1, maxItems: 1024 }),
  at: Count,
  lost: Type.Optional(Type.Array(NodeId, { maxItems: 1024 }))
}, open)

export const VolumeSchema = Type.Object({
  id: Id,
  /** place in the hierarchical volume namespace, e.g. /apps/shop/db-data */
  path: Type.String({ pattern: '^(/[A-Za-z0-9._-]{1,128}){1,16}$' }),
  sizeBytes: Count,
  replicas: Type.Integer({ minimum: 1, maximum: 16 }),
  state: Type.Union([Type.Literal('creating'), Type.Literal('ready'), Type.Literal('degraded'), Type.Literal('deleting')]),
  /** the volume it was cloned from */
  parent: Type.Union([Id, Type.Null()]),
  snapshots: Type.Record(Type.String({ pattern: ID_PATTERN }), SnapshotSchema),
  /** GVS: writes fail below this many live holders (Ceph's min_size); absent = replicas */
  minReplicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })),
  /** GVS: thin provisioning (absent objects read as zeros and take no disk); absent = true */
  thin: Type.Optional(Type.Boolean()),
  /** GVS: the writer epoch the volume's NBD exports write with (a VM's holder raises it: crdt/placement/volume-epoch.ts) */
  epoch: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  /** GVS: the object sets it reads through, top (written) first; absent = [id] */
  layers: Type.Optional(Layers),
  /** GVS: the name its objects are placed by (a clone's: its parent's root); absent = id */
  placementKey: Type.Optional(Type.String({ pattern: ID_PATTERN })),
  /**
   * GVS: layers folded into the frozen layer above them (layer -> that layer) once no
   * snapshot needed them apart: left out of `layers` and of its snapshots' layers
   * wherever they are read (node/gvs/layer-reclaim.ts); absent = none
   */
  merged: Type.Optional(Type.Record(Type.String({ pattern: LayerName.pattern }), LayerName)),
  /**
   * GVS: objects a scrub found damaged on every copy it checked, "LAYER/INDEX" -> who
   * found it and when: unreadable until rewritten, so the volume is degraded on every
   * node; the next `vol repair --scrub` writes the set it finds (node/gvs/repair-runs.ts)
   */
  unsound: Type.Optional(Type.Record(Type.String({ maxLength: 300 }), Type.Object({ node: Type.String({ maxLength: 128 }), at: Count }, open))),
  /**
   * GVS: where the volume's writes went: per placement generation its writer wrote in
   * (key: a hash of the nodes and weights), the live nodes placement was over, when
   * recorded, and the nodes `vgrid node forget` gave up. Until a repair clears it, a
   * read, settle or repair of an object must hear from one of its holders in each
   * (node/gvs/write-intervals.ts)
   */
  writeIntervals: Type.Optional(Type.Record(Type.String({ pattern: '^[0-9a-f]{16}$' }), WriteIntervalSchema)),
  /**
   * GVS: the nodes `vgrid node forget` gave up while writes of this volume may have been
   * only on them (an object with no copy left reads as zeros since): kept for good, so
   * that `vol info` says so after repairs made it healthy again (absent: none)
   */
  writesGivenUp: Type.Optional(Type.Array(Type.Object({ node: NodeId, name: Type.String({ maxLength: 128 }), at: Count }, open), { maxItems: 64 })),
  /** GVS: the intervals recorded before this are cleared (a repair put every object on its holders after; written by repair only) */
  writeIntervalsClearedBefore: Type.Optional(Count),
  /** GVS: the placement a repair that ended healthy put every object on: an interval in force like the others (written by repair only) */
  writeIntervalsRepaired: Type.Optional(WriteIntervalSchema),
  ...Stamp
}, open)

/** `created`: that of the VM the link was made for (a VM made again under the name is another one; absent: from before) */
const Endpoint = Type.Object({ vm: Id, terminal: Name, created: Type.Optional(Count) }, open)

export const ConnectionSchema = Type.Object({
  id: Id,
  app: Type.Union([Id, Type.Null()]),
  from: Endpoint,
  to: Endpoint,
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp'), Type.Literal('any')]),
  port: Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Null()]),
  ...Stamp
}, open)

/** an operator's label on a node; keyed "<node>/<key>" so labels never share a parent map */
export const NodeLabelSchema = Type.Object({
  node: NodeId,
  key: Type.String({ pattern: LABEL_KEY_PATTERN }),
  // no control character (C0, DEL, C1) and no lone surrogate (pairs are fine)
  value: Type.String({ maxLength: LABEL_VALUE_MAX, pattern: '^(?:[^\\u0000-\\u001f\\u007f-\\u009f\\ud800-\\udfff]|[\\ud800-\\udbff][\\udc00-\\udfff])*$' }),
  ...Stamp
}, open)

export const MetaSchema = Type.Object({
  schema: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  cluster: Type.String({ minLength: 1, maxLength: 64 })
}, open)

export type App = Static<typeof AppSchema>
export type Vm = Static<typeof VmSchema>
export type VmSpec = Static<typeof VmSpecSchema>
export type Lease = Static<typeof LeaseSchema>
export type LeaseEvent = Static<typeof LeaseEventSchema>
export type Volume = Static<typeof VolumeSchema>
export type Snapshot = Static<typeof SnapshotSchema>
export type Connection = Static<typeof ConnectionSchema>
export type NodeLabel = Static<typeof NodeLabelSchema>
export type Meta = Static<typeof MetaSchema>
export type RollEntry = Static<typeof RollEntrySchema>

/** a volume's snapshot by name: its own entries only (a name like "constructor" or "__proto__" is not one) */
export const snapshotOf = (v: { snapshots: Record<string, Snapshot> }, name: string): Snapshot | undefined =>
  Object.hasOwn(v.snapshots, name) ? v.snapshots[name] : undefined

export interface Objects {
  apps: App
  vms: Vm
  leases: Lease
  volumes: Volume
  connections: Connection
  nodeLabels: NodeLabel
  roll: RollEntry
}
export type Kind = keyof Objects
export const KINDS: readonly Kind[] = ['apps', 'vms', 'leases', 'volumes', 'connections', 'nodeLabels', 'roll']

/** what a writer supplies: the stamp is added by the writer */
export type Draft<K extends Kind> = Omit<Objects[K], 'at' | 'by'>

const SCHEMAS: { [K in Kind]: TSchema } = {
  apps: AppSchema,
  vms: VmSchema,
  leases: LeaseSchema,
  volumes: VolumeSchema,
  connections: ConnectionSchema,
  nodeLabels: NodeLabelSchema,
  roll: RollEntrySchema
}
const CHECKS = Object.fromEntries(KINDS.map(k => [k, TypeCompiler.Compile(SCHEMAS[k])])) as { [K in Kind]: TypeCheck<TSchema> }
const metaCheck = TypeCompiler.Compile(MetaSchema)
const leaseEventCheck = TypeCompiler.Compile(LeaseEventSchema)

/** one event of a lease's log as this agent writes them (LeaseEventSchema) */
export const isLeaseEvent = (v: unknown): v is LeaseEvent => leaseEventCheck.Check(v)

export const isKind = (k: string): k is Kind => (KINDS as readonly string[]).includes(k)

/** the map key an object must be stored under */
export function keyOf<K extends Kind> (kind: K, v: Objects[K] | Draft<K>): string {
  if (kind === 'leases') return (v as Lease).vm
  if (kind === 'nodeLabels') return labelKey((v as NodeLabel).node, (v as NodeLabel).key)
  if (kind === 'roll') return (v as RollEntry).node
  return (v as { id: string }).id
}

export const labelKey = (node: string, key: string): string => `${node}/${key}`

function firstError (check: TypeCheck<TSchema>, value: unknown): string {
  const e = check.Errors(value).First()
  return e == null ? 'invalid' : `${e.path === '' ? '/' : e.path}: ${e.message}`
}

/** null when `value` is a valid object of `kind` stored under `key`, else what is wrong */
export function validateObject (kind: Kind, key: string, value: unknown): string | null {
  const check = CHECKS[kind]
  if (!check.Check(value)) return firstError(check, value)
  const want = keyOf(kind, value as Objects[Kind])
  if (want !== key) return `stored under "${key}" but its id says "${want}"`
  return null
}

export function validateMeta (value: unknown): string | null {
  return metaCheck.Check(value) ? null : firstError(metaCheck, value)
}

export const isLabelKey = (k: string): boolean => new RegExp(LABEL_KEY_PATTERN).test(k)
/** at most LABEL_VALUE_MAX UTF-16 units, no control character (C0, DEL, C1), no lone surrogate */
export const isLabelValue = (v: string): boolean => v.length <= LABEL_VALUE_MAX && !/[\u0000-\u001f\u007f-\u009f]/.test(v) && v.isWellFormed()
