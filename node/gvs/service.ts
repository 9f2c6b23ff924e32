// The GVS service of an agent: this node's object store, the replica protocol that
// serves it to the other agents, and the NBD server that exports every volume of the
// cluster document (whatever node its replicas are on) as a ReplicatedVolume placed
// over the live members, weighted by their disk capacity. In the background it
// repairs the volumes it coordinates (coordinatorOf: one node per volume; repair-runs.ts),
// soon after a member dies, leaves or joins and every `reconcileMs`, scrubs its own
// copies on a schedule, and rewrites a copy found damaged soon (damage-heals.ts). A
// volume's state is computed, never stored: membership + the coordinator's last
// inventory + the repair running now (health.ts, volume-states.ts).
import type { Libp2p } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import { peerIdFromString } from '@libp2p/peer-id'
import type { FastifyInstance } from 'fastify'
import { join } from 'node:path'
import type { Reader, Volume, Writer } from '../../crdt/index.ts'
import { mayBeRunning, type MemberTable } from '../../protocol/membership.ts'
import { monoNow } from '../../protocol/mono-clock.ts'
import { LAST_SEEN_GRAIN_MS } from '../../protocol/membership-service.ts'
import { restartPending } from '../../crdt/placement/index.ts'
import { lastSignOfLife, silentSince } from './silent-since.ts'
import type { Logger } from '../log.ts'
import { ObjectStore } from './object-store.ts'
import { ReplicaService, callEach } from './replication.ts'
import { objectKey } from './placement.ts'
import { placedOn } from './write-intervals.ts'
import { LivePlacement, evacuating, type LiveNode } from './live-placement.ts'
import { WriterEpochs } from './writer-epochs.ts'
import { resetConnections } from '../../protocol/reset-connections.ts'
import { BackgroundPass } from './background-pass.ts'
import { UnsoundRecords } from './unsound-records.ts'
import { NbdServer } from './nbd/server.ts'
import type { BlockDevice } from './block-device.ts'
import type { RepairReport } from './repair.ts'
import { RepairRuns } from './repair-runs.ts'
import { byPath, frozenLayersOf, layerEnds, layerNumber, placementKeyOf, referencedLayers, sayLayers, sayNodes, splitSnapshotRef, volumeUsers, type Pool } from './volumes.ts'
import { VolumeExports } from './exports.ts'
import { exportVolume } from './export-names.ts'
import { PIN_KEY_FILE, PinKeys } from './pin-keys.ts'
import { LocalCaches } from './local-cache.ts'
import { defaultCacheBytes } from './cache-budget.ts'
import { PINS_FILE, PinsFile } from './pins-file.ts'
import { REPAIRS_FILE, RepairsFile } from './repairs-file.ts'
import { gvsRoutes } from './routes.ts'
import { GvsMetrics } from './metrics.ts'
import { coordinatorCandidates, coordinatorOf, type LastRepair, type RepairProgressView, type VolumeHealthView } from './health.ts'
import { StatusService, type StatusAnswer } from './status-protocol.ts'
import { Writers } from './writers.ts'
import { GridWriters, type NodeWriters } from './grid-writers.ts'
import { PlacementCheck } from './placement-check.ts'
import { IoFailures } from './io-failures.ts'
import type { HealthProblem } from '../api/types.ts'
import { tuningFromEnv, type GvsTuning } from './config.ts'
import { ScrubSchedule } from './scrub-schedule.ts'
import { DamageHeals } from './damage-heals.ts'
import { StoreUsage } from './store-usage.ts'
import { SoundAgain } from './sound-again.ts'
import { LayerReclaim } from './layer-reclaim.ts'
import { VolumeProblems } from './volume-problems.ts'
import { VolumeStates } from './volume-states.ts'
import { WriteIntervalRecords } from './write-interval-records.ts'
import { ExportSweeper } from './export-sweeper.ts'
import type { Registry } from 'prom-client'

export interface GvsComponents {
  peerId: string
  log: Logger
  config: { dataDir: string }
  host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId' | 'getConnections'> & Partial<Pick<Libp2p, 'addEventListener' | 'removeEventListener'>>
  state: {
    read: () => Reader
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
    /** the volumes of the document as loaded from this node's disk, before any peer's change */
    volumesAsLoaded?: () => Volume[]
    /** the peers among these that announced changes this node's document lacks (node/state) */
    lacksHeadsOf?: (peers: string[]) => string[]
    /** the peers among these not heard announcing any heads yet (node/state) */
    headsUnheardOf?: (peers: string[]) => string[]
    /** the document's heads (a writer asks a majority to hold where its writes go: write-interval-records.ts) */
    heads?: () => string[]
    /** whether the document holds every change these heads name (layer-reclaim.ts: an earlier run's record) */
    hasHeads?: (heads: readonly string[]) => boolean
    /** which of `keys` a change since `heads` wrote (layer-reclaim.ts: a volume made and destroyed in one sync) */
    keysWrittenSince?: (heads: readonly string[], kind: 'volumes', keys: ReadonlySet<string>) => { found: Set<string>, heads: string[] } | null
    /** the document changed (a drain or undrain moves objects: evacuating, live-placement.ts) */
    on?: (event: 'changed', fn: () => void) => unknown
    off?: (event: 'changed', fn: () => void) => unknown
  }
  /**
   * the failure detector; its transitions (a member died, left, joined) start a repair
   * soon. Its table is replaced, never changed in place, when a member changes
   * (placement is made once per table)
   */
  membership: { readonly members: MemberTable, on?: MembershipListen, off?: MembershipListen }
  /**
   * whether a node was taken off the grid's roll (`vgrid node forget`), as opposed to one
   * whose entry has not reached this node yet (node/membership/roll-memory.ts); absent: none is
   */
  forgotten?: (node: string) => boolean
  /** the agent's Prometheus registry (optional in tests) */
  registry?: Registry
  /** the store has read its disk's room (the node's advert says it at once, not at its next refresh) */
  diskMeasured?: () => void
}

export interface GvsInit extends GvsTuning {
  /** default <data-dir>/nbd.sock */
  nbdSocket?: string
  /** loopback TCP for NBD, only where asked for */
  nbdTcpPort?: number
  /** background repair and cleanup runs this often (0: never, not even after a membership change; default 30 s) */
  reconcileMs?: number
  /** an NBD session that wrote within this long counts as the volume's writer (default 30 s) */
  writerIdleMs?: number
  /** a stall of the event loop this long ends every plain session's claim (writers.ts STALL_MS; tests whose agents share one loop raise it) */
  writerStallMs?: number
  /** how long a write or flush waits out replicas out of reach for a moment before the client gets an error (default WRITE_RETRY_MS) */
  writeRetryMs?: number
  /** how long a layer nothing reads any more stays on disk before this node frees it (default 20 s) */
  freeAfterMs?: number
  /** how often the layers the document reads are noted, besides soon after each of its changes (default NOTE_EVERY_MS) */
  noteEveryMs?: number
  /** how often abandoned export snapshots are looked for (default SWEEP_MS, export-sweeper.ts) */
  exportSweepMs?: number
  /** how long an export's lease on its snapshot lasts unrenewed (default EXPORT_LEASE_MS, export-sweeper.ts) */
  exportLeaseMs?: number
  /** read the VGRID_GVS_* variables (default true; tests pass false) */
  env?: boolean
}

/**
 * How long a client's write or flush waits out replicas out of reach for a moment
 * (transient-retry.ts): longer than a member takes to be found dead (about
 * 3 s) or to come back from a restart, so neither costs a guest an I/O error.
 */
export const WRITE_RETRY_MS = 20_000
/** the first retry of a background pass that left copies unmade (doubling up to the period: background-pass.ts) */
const BACKGROUND_RETRY_MS = 3000
/** how long a snapshot waits for each live node to confirm it froze the layers */
const FREEZE_WAIT_MS = 5_000

/** how often the layers the document reads are noted between passes (layer-reclaim.ts) */
const NOTE_EVERY_MS = 2000
/** how soon after a document change its layers are noted (one note for the changes meanwhile) */
const NOTE_SOON_MS = 100

/**
 * The membership events the volume store follows: transitions, and a neighbour whose
 * heartbeats stopped here while another member still reaches it (`vouched`: a partial
 * partition, which no longer makes it suspect)
 */
type MembershipListen = ((event: 'transition', fn: (t: { nodeId: string, to: string }) => void) => unknown) & ((event: 'vouched', fn: (target: string) => void) => unknown)

export class GvsService {
  readonly name = 'gvs'
  readonly components: GvsComponents
  readonly store: ObjectStore
  readonly replicas: ReplicaService
  readonly nbd: NbdServer
  readonly status: StatusService
  readonly scrub: ScrubSchedule
  private readonly init: GvsInit
  private readonly exports: VolumeExports
  private readonly gridWriters: GridWriters
  private readonly placementCheck: PlacementCheck
  private readonly ioFailures = new IoFailures()
  private readonly volumeProblems = new VolumeProblems({ volumes: () => this.volumes(), states: async vs => await this.health(vs) })
  /** where objects go over the live members now, and its generation */
  private readonly placed: LivePlacement
  /** volumes' writer epochs: fences and plain exports' claims */
  private readonly epochs: WriterEpochs
  /** each volume's state as the API shows it */
  private readonly states: VolumeStates
  /** the repairs this node runs, and the last of each volume */
  private readonly repairs: RepairRuns
  /** the last repair of each volume this node ran */
  readonly lastRepairs: Map<string, LastRepair>
  private readonly metrics: GvsMetrics | null
  /** when the background pass runs */
  private readonly pass: BackgroundPass
  /** the live nodes placement last used (sorted ids), to tell a real change from a relabelling */
  private liveKey = ''
  private started = false
  /** damaged copies here, rewritten soon from sound ones */
  private readonly heals: DamageHeals
  /** what the store holds on this node's disk (the advert's free disk counts it off) */
  private readonly usage: StoreUsage
  /** frees the layers nothing reads, folds deleted snapshots' layers away */
  private readonly reclaim: LayerReclaim
  /** this node's caches of its VMs' disks (local-cache.ts) */
  readonly caches: LocalCaches
  /** objects damaged on every copy, as the document records them */
  private readonly unsound: UnsoundRecords
  /** the key in VM disks' export names (pin-keys.ts) */
  private readonly pinKeys: PinKeys
  /** where each volume's writes went (write-interval-records.ts) */
  private readonly writeIntervals: WriteIntervalRecords
  /** why this node sees no majority of the roll (no volume is created or used here then), or null */
  noMajority (): string | null { return this.writeIntervals.noMajority() }
  /** the holds of `vgrid vol export`'s snapshots here, and the removal of those whose export is gone */
  readonly exportSweeper: ExportSweeper
  /** notes the layers the document reads between passes (a volume made and destroyed within one is freed too) */
  private noting: ReturnType<typeof setInterval> | null = null
  /** a note of the layers the document reads, due soon after a document change */
  private noteDue: ReturnType<typeof setTimeout> | null = null
  /** the volumes the last such note read */
  private notedVolumes: readonly Volume[] = []

  constructor (components: GvsComponents, init: GvsInit = {}) {
    this.components = components
    this.init = { ...(init.env === false ? {} : tuningFromEnv(process.env)), ...init }
    const log = components.log.child('gvs')
    this.placed = new LivePlacement(() => this.components.membership.members, () => this.evac.nodes)
    this.holders = this.placed.holders
    this.placementGeneration = this.placed.generation
    this.pass = new BackgroundPass({
      periodMs: this.init.reconcileMs ?? 30_000,
      delayMs: this.init.repairDelayMs ?? 5000,
      retryMs: BACKGROUND_RETRY_MS,
      run: async () => await this.reconcile(),
      failed: err => { this.components.log.warn('gvs reconcile failed', { error: String(err) }) }
    })
    this.store = new ObjectStore({ log }, { dir: join(components.config.dataDir, 'gvs') })
    this.replicas = new ReplicaService({
      host: components.host,
      store: this.store,
      log,
      isLive: peer => { const st = this.components.membership.members.get(peer)?.state; return st == null || mayBeRunning(st) },
      ping: pingOf(components.host),
      resetConnections: (peer, why) => { resetConnections(components.host, peer, why) },
      nameOf: n => this.nodeName(n)
    })
    this.nbd = new NbdServer({ log, exports: { get: name => this.openDevice(name), list: () => this.volumes().map(exportName), release: dev => { this.exports.writers.release(dev); this.exportSweeper.released(dev) }, failed: (name, request, message) => { this.ioFailures.failed(exportVolume(name), request, message) }, succeeded: (name, request) => { this.ioFailures.succeeded(exportVolume(name), request) } } }, {
      socketPath: init.nbdSocket ?? join(components.config.dataDir, 'nbd.sock'),
      tcpPort: init.nbdTcpPort
    })
    this.store.frozen.useDocument(() => this.frozenInDocument())
    this.unsound = new UnsoundRecords({ self: this.replicas.self, log, state: components.state })
    this.caches = new LocalCaches({ dir: join(components.config.dataDir, 'gvs-cache'), budgetBytes: 0 })
    // an object recorded damaged on every copy that a client writes again: cleared once this node's copy verifies sound
    const again = new SoundAgain({ watched: () => this.unsound.objects(), verify: async (l, i) => await this.store.verify(l, i), cleared: async (sound, before) => { await this.unsound.record([], undefined, { sound, before }) }, log })
    this.store.onWritten = (l, i) => { again.written(l, i) }
    this.usage = new StoreUsage([join(components.config.dataDir, 'gvs'), join(components.config.dataDir, 'gvs-cache')], () => { this.components.diskMeasured?.() })
    this.store.on('fenced', f => {
      // a VM's holder fenced the volume in before its VM starts: the fence names the top
      // layer it knows (this node's document may not have that snapshot yet), a layer of
      // the volume's own line, whose base is the volume's id. The caches of older epochs
      // go, and a plain export's writer here must claim the volume again (refused while
      // the VM uses it)
      const id = layerNumber(f.volume).base
      this.exports.fenceCaches(id, f.epoch)
      this.exports.writers.revokeClaims(id, f.epoch)
    })
    this.writeIntervals = new WriteIntervalRecords({
      self: this.replicas.self,
      log,
      state: components.state,
      host: components.host,
      alive: n => this.components.membership.members.get(n)?.state === 'alive',
      lastHeard: n => this.components.membership.members.get(n)?.lastSeen,
      nameOf: n => this.nodeName(n),
      generation: () => this.placementGeneration(),
      // where writes go: a draining node at weight 0 (live-placement.ts)
      nodes: () => this.placed.placementNodes().map(n => ({ id: n.id, weight: n.weight }))
    })
    this.epochs = new WriterEpochs({
      self: this.replicas.self,
      log,
      transport: this.replicas,
      outOfReachWhy: n => this.replicas.outOfReachWhy(n),
      volumes: () => this.volumes(),
      liveNodes: () => this.liveNodes().map(n => n.id),
      nameOf: n => this.nodeName(n),
      write: async (fn, message) => await this.components.state.write(fn, message),
      pin: async (id, epoch) => { await this.exports.pin(id, epoch) },
      retryMs: this.init.writeRetryMs ?? WRITE_RETRY_MS
    })
    this.pinKeys = new PinKeys(join(components.config.dataDir, PIN_KEY_FILE), log)
    this.exports = new VolumeExports({ log, pinKey: (id, epoch) => this.pinKeys.keyOf(id, epoch), writeIntervals: this.writeIntervals, nameOf: n => this.nodeName(n), unreached: n => this.replicas.outOfReachWhy(n) != null, downSince: n => this.downSince(n), transport: this.replicas, holders: this.holders, nodes: () => this.liveNodes().map(n => n.id), generation: this.placementGeneration, volumes: () => this.volumes(), pinsFile: new PinsFile(join(components.config.dataDir, PINS_FILE), log), retryMs: this.init.writeRetryMs ?? WRITE_RETRY_MS, caches: this.caches, writerFloor: async layer => await this.store.writerFloor(layer) }, new Writers(this.init.writerIdleMs ?? 30_000, async id => this.vmUsing(id) ?? await this.gridWriters.otherWriters(id), (id, epoch) => { this.caches.empty(id, epoch) }, {
      epochs: { next: async (id, held) => await this.epochs.claim(id, held), fence: async (id, epoch) => { await this.epochs.fenceLive(id, epoch) } },
      stallMs: this.init.writerStallMs
    }))
    this.status = new StatusService({ host: components.host, answer: async (ids, o) => await this.statusAnswer(ids, o) })
    this.placementCheck = new PlacementCheck({
      host: components.host,
      signature: () => this.placed.signature(),
      others: () => this.mayBeRunning().filter(id => id !== this.replicas.self)
    })
    this.gridWriters = new GridWriters({ self: this.replicas.self, log, status: this.status, members: () => this.components.membership.members, liveIds: () => this.liveIds(), passUnreached: (id, n) => this.epochs.passUnreached(id, n) })
    this.metrics = components.registry == null ? null : new GvsMetrics(components.registry, () => this.nbd.stats, this.caches)
    this.heals = new DamageHeals({ transport: this.replicas, sources: (l, i) => this.sourcesOf(l, i), objectSize: this.store.objectSize, log: components.log, started: () => this.started, unsound: async objects => { await this.unsound.record(objects) } })
    this.store.on('damaged', r => { this.metrics?.damaged.inc(); this.heals.soon(r.volume, r.index) })
    this.repairs = new RepairRuns({
      self: this.replicas.self,
      transport: this.replicas,
      holders: this.holders,
      nodes: () => this.liveNodes().map(n => n.id),
      metrics: this.metrics,
      repaired: async v => { await this.states.repaired(v) },
      file: new RepairsFile(join(components.config.dataDir, REPAIRS_FILE), log),
      agreed: async () => await this.placementCheck.agreed(),
      nameOf: n => this.nodeName(n),
      unsound: async (v, objects) => { await this.unsound.record(objects, v) },
      intervals: id => this.writeIntervals.intervals(id),
      intervalsRepaired: async (id, startedAt, generation) => { await this.writeIntervals.repaired(id, startedAt, generation) },
      generation: () => this.placementGeneration()
    }, { objectSize: this.store.objectSize, bytesPerSecond: this.init.repairBytesPerSecond, retireQuietMs: this.init.retireQuietMs })
    this.lastRepairs = this.repairs.last
    this.states = new VolumeStates({ self: this.replicas.self, repairs: this.repairs, status: this.status, live: () => this.liveIds(), coordinators: () => this.coordinators(), awayForRestart: () => this.writeIntervals.awayForRestart(), members: () => this.components.membership.members, noMajority: () => this.writeIntervals.noMajority(), outOfReach: n => this.replicas.outOfReachWhy(n), ioFailing: v => this.ioFailures.of(exportName(v)) })
    this.reclaim = new LayerReclaim({
      self: this.replicas.self,
      log,
      store: this.store,
      transport: this.replicas,
      holders: this.holders,
      live: () => this.liveIds(),
      mayFree: () => this.mayFree(),
      repairer: (m, layer) => this.repairs.layerRepairer({ ...m, layer }),
      room: n => { const a = this.components.membership.members.get(n)?.advert; return a == null ? null : { free: a.free.diskBytes, capacity: a.capacity.diskBytes } },
      nameOf: n => this.nodeName(n),
      coordinatorOf: name => coordinatorOf(name, this.coordinators()),
      // through the state service, as a method (it reads its own fields)
      write: async (fn, message) => await this.components.state.write(fn, message),
      running: () => this.started,
      heads: () => this.components.state.heads?.() ?? [],
      hasHeads: heads => this.components.state.hasHeads?.(heads) ?? false,
      keysWrittenSince: (heads, keys) => this.components.state.keysWrittenSince?.(heads, 'volumes', keys) ?? null
    }, { freeAfterMs: this.init.freeAfterMs })
    this.exportSweeper = new ExportSweeper({
      self: this.replicas.self,
      log,
      volumes: () => this.volumes(),
      members: () => new Map([...this.components.membership.members.values()].map(m => [m.nodeId, m.state])),
      live: () => this.coordinators(),
      majority: () => this.writeIntervals.noMajority() == null,
      write: async (fn, message) => await this.components.state.write(fn, message)
    }, { sweepMs: this.init.exportSweepMs, leaseMs: this.init.exportLeaseMs })
    this.scrub = new ScrubSchedule({
      self: this.replicas.self, log, transport: this.replicas, store: this.store, metrics: this.metrics, file: join(components.config.dataDir, 'gvs-scrub.json'), sources: (layer, index) => this.sourcesOf(layer, index),
      unsound: async (objects, sound, startedAt) => { await this.unsound.record(objects.map(o => `${o.layer}/${o.index}`), undefined, { sound, before: startedAt }) },
      watched: () => this.unsound.objects(),
      nameOf: n => this.nodeName(n),
      endOf: layer => this.layerEnd(layer)
    }, { intervalMs: this.init.scrubIntervalMs ?? 24 * 3600_000, bytesPerSecond: this.init.scrubBytesPerSecond ?? this.init.repairBytesPerSecond })
  }

  async start (): Promise<void> {
    this.startedAt = Date.now()
    // the layers of the document as this node kept it on its disk, before peers synced
    // it anything (a destroy made while it was down included: layer-reclaim.ts)
    this.reclaim.note(this.components.state.volumesAsLoaded?.() ?? this.volumes())
    await this.store.start()
    this.components.diskMeasured?.()
    this.usage.start()
    this.caches.budget.limit = this.init.localCacheBytes ?? await defaultCacheBytes(this.components.config.dataDir)
    this.caches.start()
    if (this.caches.failed != null) this.components.log.warn('the volume cache is off: its directory could not be set up', { error: this.caches.failed })
    // then those an earlier run saw the document stop reading but had not freed, and the document now
    await this.reclaim.load(() => this.volumes())
    // VM disks an earlier release pinned open without a key (their QEMU asks for NAME~EPOCH)
    await this.pinKeys.load()
    if (this.pinKeys.fresh) this.exports.acceptKeyless()
    await this.replicas.start()
    await this.status.start()
    await this.placementCheck.start()
    await this.nbd.start()
    this.started = true
    this.heals.running()
    this.noting = setInterval(() => {
      this.reclaim.note(this.volumes())
      // the caches give way when the disk runs short of room (the replicas need it)
      void this.caches.checkRoom()
    }, this.init.noteEveryMs ?? NOTE_EVERY_MS)
    this.noting.unref?.()
    this.refreshDraining(false)
    this.liveKey = [...this.liveIds()].sort().join(',')
    this.components.membership.on?.('transition', this.onTransition)
    this.components.state.on?.('changed', this.onDocChanged)
    this.components.membership.on?.('vouched', this.onVouched)
    this.components.host.addEventListener?.('peer:connect', this.onConnect)
    this.pass.start()
    this.exportSweeper.start()
    await this.scrub.start()
  }

  async stop (): Promise<void> {
    this.started = false
    this.heals.stop()
    if (this.noting != null) clearInterval(this.noting)
    if (this.noteDue != null) clearTimeout(this.noteDue)
    this.noteDue = null
    if (this.graceTimer != null) clearTimeout(this.graceTimer)
    this.components.membership.off?.('transition', this.onTransition)
    this.components.state.off?.('changed', this.onDocChanged)
    this.components.membership.off?.('vouched', this.onVouched)
    this.components.host.removeEventListener?.('peer:connect', this.onConnect)
    // no new pass from here on (the timer goes now); one that runs is waited for below
    const passStopped = this.pass.stop()
    const sweepStopped = this.exportSweeper.stop()
    this.repairs.stopAll()
    await this.scrub.stop()
    await passStopped
    await sweepStopped
    await this.repairs.ended()
    await this.nbd.stop()
    await this.status.stop()
    await this.placementCheck.stop()
    await this.replicas.stop()
    await this.usage.stop()
    // the record of layers to free, as the last note left it (a restart right after a destroy: bb39)
    await this.reclaim.settled()
    await this.store.stop()
    this.caches.close()
    this.exports.writers.close()
  }

  /** a member changed (placement follows the live members): background repairs stop, their plan is stale, and a pass follows soon */
  // cut from this node alone (membership found another that reaches it): probed now, so
  // that a writer's claim and fence go on without it within seconds (passUnreached), not
  // first when a call has waited out its timeout
  private readonly onVouched = (target: string): void => { this.replicas.probeSoon(target) }

  // a new connection to a peer found out of reach (a cut healed: membership dials it
  // again): probed now, not at the end of its backoff, so the first repair after the
  // heal does not fail its copies to it as out of reach
  private readonly onConnect = (evt: CustomEvent<{ toString: () => string }>): void => {
    const peer = evt.detail.toString()
    if (this.replicas.outOfReachWhy(peer) != null) this.replicas.probeSoon(peer)
  }

  private readonly onTransition = (t?: { nodeId: string, to: string }): void => {
    if (t != null) this.noteGone(t.nodeId, t.to)
    // requests in flight to a node found dead fail now, and are tried on the live nodes
    if (t != null && t.to !== 'alive' && t.to !== 'suspect') this.replicas.dropPeer(t.nodeId)
    // a suspect (its heartbeats to this node stopped) may be cut from this node alone,
    // and held alive by the others' word: probed now, not first when a call waits on it
    if (t?.to === 'suspect') this.replicas.probeSoon(t.nodeId)
    // every change of the live nodes moves the placement generation on, also while no
    // I/O of this node asks for holders: a node that went and came back between two of
    // its reads is a change (settler.ts)
    this.placementGeneration()
    // since when it has seen no majority: a request then fails once that outlasts the retry window
    this.writeIntervals.noMajority()
    // a draining node's objects stay on it while the others are too few to hold them
    this.refreshDraining(false)
    // suspect -> dead, dead -> forgotten: placement (over the alive) did not move
    const key = [...this.liveIds()].sort().join(',')
    if (key === this.liveKey) return
    this.liveKey = key
    // a partition may let another writer in unasked: the caches of this node's writers go
    this.caches.dropAll()
    this.repairs.stopBackground()
    this.pass.changed()
  }

  private noteGone (node: string, to: string): void {
    if (to === 'alive' || to === 'suspect') { this.goneAt.delete(node); return }
    const m = this.components.membership.members.get(node)
    if (m == null || this.goneAt.has(node)) return
    this.goneAt.set(node, lastSignOfLife(m.lastSeen, monoNow(), Date.now(), LAST_SEEN_GRAIN_MS))
    if (this.goneAt.size > 1024) this.goneAt.delete(this.goneAt.keys().next().value!)
  }

  /** the nodes being drained whose objects move off them now, and why none do if so (live-placement.ts evacuating) */
  private evac: { nodes: ReadonlySet<string>, why?: string, key: string } = { nodes: new Set(), key: '' }

  /**
   * whose objects move off them, and why not, now: for the drain's progress (vgrid node
   * drain --wait); `away`: draining nodes not alive here, whose copies are not known
   */
  evacuation (): { nodes: string[], why?: string, away?: string[] } {
    const away = this.components.state.read().list('roll')
      // (one whose last advert had no disk holds nothing: not waited for, rv35)
      .filter(e => { const m = this.components.membership.members.get(e.node); return e.draining === true && !this.evac.nodes.has(e.node) && m?.state !== 'alive' && m?.advert.capacity.diskBytes !== 0 })
      .map(e => e.node).sort()
    return { nodes: [...this.evac.nodes].sort(), ...this.evac.why != null ? { why: this.evac.why } : {}, ...away.length > 0 ? { away } : {} }
  }

  private readonly onDocChanged = (): void => {
    this.refreshDraining()
    // the layers it reads noted soon, not only every 2 s: a volume made, written here and
    // destroyed between two notes was never seen, so its copies here were never freed (rv42)
    if (this.noteDue == null && this.started) {
      this.noteDue = setTimeout(() => {
        this.noteDue = null
        if (!this.started) return
        // a change of leases or of the roll changes no volume: the document's read cache
        // gives the same objects then, and nothing is worked out again (rv43)
        const vs = this.volumes()
        if (vs.length === this.notedVolumes.length && vs.every((v, i) => v === this.notedVolumes[i])) return
        this.notedVolumes = vs
        this.reclaim.note(vs)
      }, NOTE_SOON_MS)
      this.noteDue.unref?.()
    }
  }

  /** The drained nodes from the roll: a change moves placement, and repair follows it (`moved`; the caller does otherwise) */
  private refreshDraining (moved = true): void {
    const reader = this.components.state.read()
    const draining = reader.list('roll').filter(e => e.draining === true).map(e => ({ node: e.node, since: e.drainedAt }))
    // no drain, as before (the usual case, at every document change): nothing to work out
    if (draining.length === 0 && this.evac.key === '') return
    let replicas = 1
    const volumes = reader.list('volumes')
    for (const v of volumes) if (v.replicas > replicas) replicas = v.replicas
    const e = evacuating({ draining, table: this.components.membership.members, replicas, volumes: volumes.map(v => ({ path: v.path, replicas: v.replicas })), nameOf: n => this.nodeName(n) })
    // '' for no drain at all, as at the start
    const key = e.nodes.size === 0 && e.why == null ? '' : `${[...e.nodes].sort().join(',')}|${e.why ?? ''}`
    if (key === this.evac.key) return
    const was = this.evac
    this.evac = { ...e, key }
    for (const n of e.nodes) if (!was.nodes.has(n)) this.components.log.info('volume copies move off a draining node', { node: this.nodeName(n) })
    if (e.why != null && e.why !== was.why) this.components.log.warn(e.why)
    if (!moved) return
    // the live nodes stay as they were: placement moves, and a repair pass follows it soon
    this.placementGeneration()
    this.repairs.stopBackground()
    this.pass.changed()
  }

  /**
   * The background pass: the volumes this node coordinates are repaired towards their
   * placement (rate-capped, one at a time, so client I/O keeps going), this node frees
   * its copies of layers nothing reads any more (destroyed volumes, folded layers), and
   * folds the deleted snapshots' layers it coordinates (layer-reclaim.ts). True when a
   * repair left copies unmade (the next pass comes sooner: background-pass.ts).
   */
  async reconcile (): Promise<boolean> {
    const vols = this.volumes()
    this.exports.forgetGone()
    await this.reclaim.free(vols)
    this.states.forgetGone(vols)
    await this.repairs.forget(new Set(vols.map(v => v.id)))
    const live = this.coordinators()
    let unmade = false
    // a node without a majority cannot tell which copies are the newest: it repairs nothing
    // (the minority side of a cut showed a repair of its own that failed); nor while a
    // member is away for a restart under a confirmed grace: its copies are waited for, not
    // made anew elsewhere and then moved back (bb32: every restart of an agent copied its
    // node's data away; Ceph's noout). Writes still bring the objects they touch to the
    // holders of now; a pass comes when the grace ends, should the member not be back
    const away = this.writeIntervals.awayForRestart()
    if (away.size > 0) this.passAfterGrace(Math.max(...away.values()))
    const repairs = this.writeIntervals.noMajority() == null && away.size === 0
    for (const v of vols) {
      if (!this.started) return unmade
      if (!repairs) break
      if (coordinatorOf(v.id, live) === this.replicas.self) {
        const r = await this.repair(v, { background: true })
        // objects left alone as unavailable wait for a node to return, which wakes a pass itself
        if (r.failed - (r.unavailable ?? 0) > 0) unmade = true
      }
    }
    if (this.started) await this.reclaim.fold(() => this.volumes())
    return unmade
  }

  private graceTimer: NodeJS.Timeout | null = null
  /** a background pass once the restart graces in force end (wall ms) */
  private passAfterGrace (until: number): void {
    if (this.graceTimer != null) clearTimeout(this.graceTimer)
    this.graceTimer = setTimeout(() => { this.graceTimer = null; if (this.started) this.pass.changed() }, Math.max(0, until - Date.now()) + 1000)
    this.graceTimer.unref?.()
  }

  /**
   * The VMs the document says use the volume as a disk and run or should (volumeUsers),
   * as a plain export's refusal, or null: a plain writer never writes a running VM's
   * disk, also when the VM's node does not answer its claim in time, or between two
   * runs of the VM.
   */
  private vmUsing (id: string): string | null {
    const r = this.components.state.read()
    const v = r.list('volumes').find(x => x.id === id)
    if (v == null) return null
    const leases = r.list('leases')
    const running = volumeUsers(v, r.list('vms'), leases).running
    if (running.length === 0) return null
    const where = (vm: string): string => { const l = leases.find(x => x.vm === vm); return l == null ? '' : ` on ${this.gridWriters.nameOf(l.holder)}` }
    return running.map(vm => `VM "${vm.name}"${where(vm.id)}, whose disk it is`).join(', ')
  }

  /**
   * The members of the grid's roll, and those this node knows, that are not alive (nor
   * left for good), as "NAME (ID) is STATE". A dead member taken off the roll (`vgrid
   * node forget`: `forgotten`) counts as left: the gossip table keeps it for its forget
   * time (10 minutes), and folds waited on it as long (a tester's grid, a host forgotten
   * and started again under a new identity, waited about 15 minutes). A dead member that
   * was never on the roll here (its entry may not have reached this node yet) still counts.
   */
  private notAlive (): string[] {
    // the roll (the grid's members, crdt: DVMM), not only the gossip table, which forgets a dead member after a while
    const table = this.components.membership.members
    const forgotten = this.components.forgotten
    const roll = this.components.state.read().list('roll')
    const out = new Map<string, string>()
    for (const m of table.values()) {
      if (m.nodeId === this.replicas.self || m.state === 'alive' || m.state === 'left') continue
      if (m.state === 'dead' && forgotten?.(m.nodeId) === true) continue
      out.set(m.nodeId, `${this.nodeName(m.nodeId)} (${m.nodeId}) is ${m.state}`)
    }
    // a member on the roll counts until it is alive here (one that left is off it)
    for (const e of roll) {
      const m = table.get(e.node)
      if (e.node === this.replicas.self || m?.state === 'alive' || out.has(e.node)) continue
      out.set(e.node, `${e.name} (${e.node}) ${m == null ? 'has not been heard from since this agent started' : `is ${m.state}`}`)
    }
    return [...out.values()]
  }

  /** the members that count for folds and frees: the table's, but the forgotten dead and those left */
  private counted (): string[] {
    const forgotten = this.components.forgotten
    return [...this.components.membership.members.values()]
      .filter(m => m.nodeId !== this.replicas.self && m.state !== 'left' && !(m.state === 'dead' && forgotten?.(m.nodeId) === true))
      .map(m => m.nodeId)
  }

  /**
   * Why no layer may be freed or folded now, or null. A layer nothing reads in this
   * node's document may be read by a clone another node made that is not here yet:
   * so only with every member up (a partition's other side may be making one) and
   * every change another member announced held here, each member heard from (rv31: a
   * member not heard announcing yet, after this agent's start, counted as none behind).
   */
  mayFree (): string | null {
    const down = this.notAlive()
    if (down.length > 0) return `a member of the grid is not alive: ${down.join(', ')}`
    const counted = this.counted()
    const unheard = this.components.state.headsUnheardOf?.(counted) ?? []
    if (unheard.length > 0) return `not heard yet which changes ${unheard.map(n => this.gridWriters.nameOf(n)).join(', ')} ${unheard.length === 1 ? 'holds' : 'hold'} (a member's advert says)`
    const behind = this.components.state.lacksHeadsOf?.(counted) ?? []
    return behind.length === 0 ? null : `changes ${behind.map(n => this.gridWriters.nameOf(n)).join(', ')} announced are not here yet`
  }

  /**
   * Why the deleted snapshots' layers of volume `id` are not folded away yet as this
   * node sees it, or null (they fold at the next background pass of the volume's
   * coordinator): what every fold and free waits for (mayFree), or why this node's
   * last fold of one of them waited, when it is the one that folds them.
   */
  foldWait (v: Volume, mayFree = this.mayFree()): string | null {
    return mayFree ?? this.reclaim.waitOf(v)
  }

  /** one pass of folding deleted snapshots' layers away now (tests; the background pass does it too) */
  async fold (): Promise<number> { return await this.reclaim.fold(() => this.volumes()) }

  routes (app: FastifyInstance): void { gvsRoutes(this)(app) }

  /** a node's name as its advert or the roll has it (its id when neither does) */
  nodeName (node: string): string {
    return this.components.membership.members.get(node)?.advert.name ?? this.components.state.read().get('roll', node)?.value.name ?? node
  }

  /**
   * for /v1/status: volumes whose NBD requests failed lately (io-failures.ts), this
   * node's disk full, and the volumes not at full redundancy (volume-problems.ts)
   */
  async problems (): Promise<HealthProblem[]> {
    const unreached = this.replicas.outOfReach().map(({ peer, since, why }): HealthProblem => ({
      service: 'gvs',
      cause: 'replica-out-of-reach',
      message: `this node cannot reach ${this.nodeName(peer)}'s volume store though membership holds it alive (${why}): reads go to other copies; writes of objects it holds fail until it answers`,
      since: new Date(since).toISOString()
    }))
    const failed = this.scrub.status().failed
    const scrub: HealthProblem[] = failed == null ? [] : [{ service: 'gvs', cause: 'scrub-failed', message: `the last scrub of this node's copies failed: ${failed.error} (vgrid vol scrub --now tries again)`, since: new Date(failed.at).toISOString() }]
    const vols = this.volumes()
    return [...unreached, ...scrub, ...this.ioFailures.problems(), ...this.replicas.diskFull.problems(), ...this.replicas.refusals.problems(), ...await this.volumeProblems.problems()]
      .map(p => ({ ...p, message: sayNodes(sayLayers(p.message, vols), n => this.nodeName(n)) }))
  }

  /** bytes the volume store holds on this node's disk, as last measured (null: not yet) */
  storedBytes (): number | null { return this.usage.bytes() }

  /** measures what the store holds now (tests; it is measured every USAGE_EVERY_MS) */
  async measureStored (): Promise<number | null> { await this.usage.measure(); return this.usage.bytes() }

  volumes (): Volume[] { return this.components.state.read().list('volumes') }

  /** how far the document reads a layer (bytes), worked out once per document version */
  private endsMemo: { reader: Reader, ends: ReadonlyMap<string, number> } | null = null
  private layerEnd (layer: string): number | undefined {
    const reader = this.components.state.read()
    if (this.endsMemo?.reader !== reader) this.endsMemo = { reader, ends: layerEnds(reader.list('volumes')) }
    return this.endsMemo.ends.get(layer)
  }

  /** the layers this node's document reads frozen, worked out once per document version */
  private frozenMemo: { reader: Reader, layers: ReadonlySet<string> } | null = null
  private frozenInDocument (): ReadonlySet<string> {
    const reader = this.components.state.read()
    if (this.frozenMemo?.reader !== reader) this.frozenMemo = { reader, layers: frozenLayersOf(reader.list('volumes')) }
    return this.frozenMemo.layers
  }

  /**
   * A snapshot froze these layers: every live node's replicas refuse writes to them
   * before this returns, or were waited for FREEZE_WAIT_MS (a node that did not
   * confirm is logged: only its document keeps a lagging writer out of the snapshot there)
   */
  async freeze (layers: string[]): Promise<void> {
    const nodes = [...new Set([...this.mayBeRunning(), this.replicas.self])]
    // the route names at most 256 volumes, as many as a request's layers
    for (const { node, why } of await callEach(this.replicas, nodes, { op: 'freeze', layers }, FREEZE_WAIT_MS)) {
      this.components.log.warn('a node did not confirm that a snapshot froze its layers: a writer whose document lags may still write into the snapshot there', { node, layers: layers.join(','), why })
    }
  }

  /** the members alive or suspect: they may still run clients and hold copies */
  private mayBeRunning (): string[] {
    return [...this.components.membership.members.values()].filter(m => mayBeRunning(m.state)).map(m => m.nodeId)
  }

  /** the live members that hold replicas, weighted by disk capacity */
  liveNodes (): LiveNode[] { return this.placed.liveNodes() }

  /** since when a holder membership holds dead, or gone from its table, has been silent (silent-since.ts; ReplicatedVolumeComponents.downSince) */
  private downSince (node: string): number | undefined {
    const entry = this.components.state.read().get('roll', node)?.value
    const wallNow = Date.now()
    return silentSince({
      member: this.components.membership.members.get(node),
      onRoll: entry != null,
      restarting: restartPending(entry?.restart, wallNow),
      goneAt: this.goneAt.get(node),
      startedAt: this.startedAt,
      // lastSeen is on the monotonic clock (protocol/membership-service.ts)
      monoNow: monoNow(),
      wallNow,
      grainMs: LAST_SEEN_GRAIN_MS
    })
  }

  /** the last sign of life (wall clock) of members that went, kept once the member table goes on without them (at most 1,024) */
  private readonly goneAt = new Map<string, number>()
  /** when this volume store started (wall clock): a holder on the roll it never saw has been silent at least since */
  private startedAt = Date.now()

  private liveIds (): Set<string> { return this.placed.liveIds() }

  /** the live nodes that may coordinate volumes: those that reach every other (health.ts coordinatorCandidates) */
  private coordinators (): Set<string> {
    return coordinatorCandidates(this.liveIds(), n => this.components.membership.members.get(n)?.advert.unreached)
  }

  pool (): Pool { return this.placed.pool() }

  /** the object's holders over the live members (live-placement.ts) */
  readonly holders: (key: string, r: number) => string[]

  /** moves on whenever the live nodes placement is made over change (live-placement.ts) */
  readonly placementGeneration: () => number

  /** where a sound copy of one of this node's objects may be: its holders, then every other live node */
  private sourcesOf (layer: string, index: number): string[] {
    const v = this.volumes().find(x => referencedLayers([x]).has(layer))
    const hs = v == null ? [] : this.holders(objectKey(placementKeyOf(v), index), v.replicas)
    return [...new Set([...hs, ...this.liveIds()])]
  }

  /** the block device NBD serves for an export name (a volume, or VOL@SNAP read-only) */
  device (name: string): BlockDevice | undefined { return this.exports.device(name) }

  /** a device for an NBD session: one of a snapshot counts as read here until its session releases it (export-sweeper.ts) */
  private openDevice (name: string): BlockDevice | undefined {
    const dev = this.device(name)
    if (dev == null) return dev
    const ref = splitSnapshotRef(name)
    if (ref == null) return dev
    // as exports.ts names them: a path without its "/", a path, an id; a name that is a volume's was opened as one
    const all = this.volumes()
    const byName = (n: string): Volume | undefined => byPath(all, `/${n}`) ?? byPath(all, n) ?? all.find(x => x.id === n)
    const v = byName(name) == null ? byName(ref.volume) : undefined
    if (v != null) this.exportSweeper.opened(dev, v.id, ref.snapshot)
    return dev
  }

  /** the repair of this volume running here, if any */
  repairing (id: string): RepairProgressView | null { return this.repairs.progress(id) }

  /**
   * Repairs every object set the volume reads (its layers) towards their placement
   * (repair-runs.ts); a second call while one runs joins it.
   */
  async repair (v: Volume, opts: { background?: boolean, scrub?: boolean } = {}): Promise<RepairReport> {
    return await this.repairs.repair(v, opts)
  }

  /**
   * Why a repair asked of this node now could not say what the volume lacks: live
   * members it does not reach (a partial cut; null: none). Their copies cannot be looked
   * at or copied from here, and a repair counted every one failed and called a healthy
   * volume degraded (bb19).
   */
  repairRefusal (): string | null {
    const cut = this.replicas.outOfReach().filter(o => this.liveIds().has(o.peer))
    if (cut.length === 0) return null
    const names = cut.map(o => this.nodeName(o.peer)).sort()
    return `this node does not reach ${names.join(', ')} though ${cut.length === 1 ? 'it is' : 'they are'} alive (a partial cut: ${cut[0]!.why}): ${cut.length === 1 ? 'its' : 'their'} copies can be neither checked nor copied from here; run the repair on a node that reaches every member, or once the cut is healed`
  }

  /**
   * Why a repair asked of this node would copy data it should wait for: members away for
   * a restart under a confirmed grace (null: none). The background passes wait for them
   * (Ceph's noout); a `vol repair` copied their data away all the same (bb36: 188 MiB on
   * a routine restart, 178 copies where 128 were needed once it was back).
   */
  repairWaitsFor (v?: Volume): string | null {
    let away = this.writeIntervals.awayForRestart()
    // only members the volume's writes went to hold copies it needs (a clone's record
    // carries its source's): repairing the others copies nothing of theirs (rv40)
    if (v != null && away.size > 0) { const on = placedOn(v); away = new Map([...away].filter(([n]) => on.has(n))) }
    if (away.size === 0) return null
    const names = [...away.keys()].map(n => this.nodeName(n)).sort()
    const until = Math.max(...away.values())
    return `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} away for a restart (${names.length === 1 ? 'its' : 'their'} restart grace holds until ${new Date(until).toISOString()}, ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s more): ${names.length === 1 ? 'its' : 'their'} copies are waited for, not made anew elsewhere and moved back after`
  }

  /** what this node answers another's status request */
  async statusAnswer (ids: string[], o: { writersOnly?: boolean, claim?: { from: string } } = {}): Promise<StatusAnswer> {
    const out: StatusAnswer = {}
    const claim = o.claim
    if (claim != null) {
      // the asker is about to write: this node's writers, and its claims, which give way to a smaller id (writers.ts)
      for (const id of ids) {
        const a = this.exports.writers.answerClaim(id, this.gridWriters.nameOf(claim.from), claim.from < this.replicas.self)
        // not refused here: the asker may write it next, and what this node cached of it stop being true
        if (a.writers === 0) this.exports.emptyCaches(id)
        out[id] = { writers: a.writers, ...(a.claiming ? { claiming: true } : {}) }
      }
      return out
    }
    const all = this.volumes()
    const live = this.coordinators()
    for (const id of ids) {
      const v = all.find(x => x.id === id)
      const mine = o.writersOnly !== true && v != null && (coordinatorOf(v.id, live) === this.replicas.self || this.repairs.isRunning(v.id))
      const vmDisks = this.exports.writers.vmDisks(id)
      out[id] = { writers: this.exports.writers.count(id), ...(vmDisks > 0 ? { vmDisks } : {}), ...(mine ? { health: await this.states.local(v) } : {}) }
    }
    return out
  }

  /** the state of each volume as the API shows it (volume-states.ts) */
  async health (vs: Volume[]): Promise<Map<string, VolumeHealthView>> { return await this.states.of(vs) }

  /** NBD writers of a volume on every live node (grid-writers.ts) */
  async writersOf (id: string): Promise<NodeWriters[]> { return await this.gridWriters.writersOf(id) }

  /** makes `epoch` the volume's writer epoch on every live node before a VM's disk opens (writer-epochs.ts) */
  async fence (volumeId: string, epoch: number): Promise<void> { await this.epochs.fence(volumeId, epoch) }

  /** the export name of a volume's disk pinned at `epoch` on this node, with its key (tests; uriOf for VMs) */
  pinnedExportName (name: string, epoch: number): string {
    const v = this.volumes().find(x => exportName(x) === name || x.id === name)
    if (v == null) throw new Error(`no volume "${name}"`)
    return this.exports.pinnedNameOf(name, v.id, epoch)
  }

  /**
   * `length` bytes at `offset` of a VM's disk as its guest will read them, through its
   * export pinned at `epoch` here (a start's look at a boot volume's first sector)
   */
  async readDisk (v: Volume, epoch: number, offset: number, length: number): Promise<Uint8Array> {
    const dev = this.device(this.exports.pinnedNameOf(exportName(v), v.id, epoch))
    if (dev == null) throw new Error(`volume ${v.path} has no disk at writer epoch ${epoch} on this node`)
    try { return await dev.read(offset, length) } finally { this.exports.writers.release(dev) }
  }

  /** the NBD URI a client on this node opens for a volume */
  uriOf (v: Volume, epoch?: number): string {
    const name = epoch == null ? exportName(v) : this.exports.pinnedNameOf(exportName(v), v.id, epoch)
    return `nbd+unix:///${name}?socket=${this.init.nbdSocket ?? join(this.components.config.dataDir, 'nbd.sock')}`
  }
}

/** the NBD export name of a volume: its path without the leading "/" */
export const exportName = (v: Volume): string => v.path.slice(1)

/** the host's libp2p ping, where it has one (an agent's host does; some tests' do not) */
function pingOf (host: GvsComponents['host']): ((peer: string, signal: AbortSignal) => Promise<unknown>) | undefined {
  const ping = (host as { services?: { ping?: Ping } }).services?.ping
  if (ping == null) return undefined
  return async (peer, signal) => await ping.ping(peerIdFromString(peer), { signal })
}

