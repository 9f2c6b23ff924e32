// The state service: this agent's copy of the cluster document, kept on disk and in
// sync with every peer. The one entry point for the rest of the agent: read through
// `read()`, write through `write()` (resolves once the change is on disk), watch
// `changed`. Start after the libp2p host, stop before it.
import { statSync } from 'node:fs'
import { EventEmitter } from 'node:events'
import type { Libp2p } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'
import { Replica, SCHEMA_VERSION, MAX_FUTURE_MS, labelKey, type Counts, type Kind, type Reader, type Writer, type Volume } from '../../crdt/index.ts'
import type { Counter, Registry } from 'prom-client'
import type { Logger } from '../log.ts'
import { StateMetrics } from './metrics.ts'
import { UnavailableError } from '../errors.ts'
import { StateStore, DiskError, type DiskCause, type DiskProblem, type StateFile } from './store.ts'
import { Persister } from './persister.ts'
import { SyncService, type PeerStatus } from './sync.ts'
import { HeadsAnnouncer } from './announce.ts'
import { HOLDS_PROTOCOL, serveHolds } from './holds-check.ts'

export { STATE_SYNC_PROTOCOL } from './sync.ts'
export { FRAME_SYNC } from './sync-session.ts'
export { StateMetrics } from './metrics.ts'
export { DiskError, type DiskCause } from './store.ts'

/**
 * Thrown by write() while the state files cannot be written (the API answers 503):
 * `cause` names the trouble, the message says what to do. Nothing of the write was
 * kept or sent anywhere.
 */
export class StateUnavailableError extends UnavailableError {
  override name = 'StateUnavailableError'
  override readonly cause: DiskCause
  constructor (cause: DiskCause, message: string) {
    // the API's error code: disk_full, io_error, read_only, dir_replaced, ...
    super(message, cause.replaceAll('-', '_'))
    this.cause = cause
  }
}

/** stop() could not save the document (what was acknowledged is still in the log). */
export class StateSaveError extends Error {
  override name = 'StateSaveError'
}

export type StateHealth =
  | { ok: true }
  | { ok: false, cause: DiskCause, message: string, since: string }

export interface StateServiceInit {
  host: Libp2p<{ pubsub: GossipSub }>
  dataDir: string
  clusterId: string
  log: Logger
  /** the agent's registry: the state metrics (vgrid_state_*) are registered on it */
  registry: Registry
  /** vgrid_gossip_rejected_total, owned by membership */
  gossipRejected: Counter<'topic' | 'reason'>
  /** a member's name, for the peer list */
  nameOf?: (peer: string) => string | undefined
  /** whether a peer's sync statistics are still worth showing (false: a member taken off the grid, `vgrid node forget`) */
  shown?: (peer: string) => boolean
  /** where a member listens, to pull from peers we are not connected to */
  addrsOf?: (peer: string) => string[]
  maxMessageBytes?: number
  compactLogBytes?: number
  compactIntervalMs?: number
  /** how often a degraded service retries its disk, and a healthy one checks its directory (ms) */
  diskCheckIntervalMs?: number
  /** the wall clock (ms), for `at` stamps; default Date.now */
  now?: () => number
}

export interface StateEvents {
  /** the document changed: by a write here, or by changes from `peer` */
  changed: [origin: 'local' | 'remote', peer?: string]
}

export interface RecoveredFile { file: StateFile, detail: string, keptAs: string, at: string }

export interface StateView {
  actor: string
  schema: { document: number, agent: number }
  heads: string[]
  digest: string
  history: { changes: number, ops: number, actors: number }
  size: { diskBytes: number, snapshotBytes: number, logBytes: number, logRecords: number, memoryBytes: number }
  counts: Counts
  persistence: { lastFlushAt: string | null, lastSnapshotAt: string | null, recovered: RecoveredFile[], health: StateHealth }
  peers: Array<Omit<PeerStatus, 'lastSyncAt' | 'lastChangeAt'> & { name: string | null, lastSyncAt: string | null, lastChangeAt: string | null }>
  blocked: string[]
}

const iso = (ms: number | null): string | null => ms == null || ms === 0 ? null : new Date(ms).toISOString()

export class StateService extends EventEmitter<StateEvents> {
  private readonly init: StateServiceInit
  private readonly log: Logger
  readonly metrics: StateMetrics
  private readonly store: StateStore
  private healthState: StateHealth = { ok: true }
  private diskTimer?: NodeJS.Timeout
  private recovering = false
  replica!: Replica
  private persister!: Persister
  private sync!: SyncService
  private announcer!: HeadsAnnouncer
  private compactTimer?: NodeJS.Timeout
  private readonly warned = new Set<string>()
  /** heads of what the state files held (before migrations) */
  private diskHeads: string[] = []
  readonly recovered: RecoveredFile[] = []
  private running = false
  private loadedVolumes: Volume[] = []

  constructor (init: StateServiceInit) {
    super()
    this.init = init
    this.log = init.log
    this.metrics = new StateMetrics(init.registry)
    this.store = new StateStore(init.dataDir)
  }

  /**
   * The volumes of the document as this node loaded it from its disk, before any peer's
   * change: the volume store frees the copies of volumes destroyed while this node was
   * down, which a peer may sync it before the store starts (node/gvs/layer-reclaim.ts).
   */
  volumesAsLoaded (): Volume[] { return this.loadedVolumes }

  /** ok, or why writes are refused (disk trouble) and since when. */
  health (): StateHealth { return this.healthState }

  async start (): Promise<void> {
    const { host } = this.init
    const metrics = this.metrics
    await this.load()
    this.loadedVolumes = this.replica.read().list('volumes')
    this.persister = new Persister({
      store: this.store,
      replica: this.replica,
      compactLogBytes: this.init.compactLogBytes,
      savedHeads: this.diskHeads,
      onFlush: (kind) => {
        metrics.fsyncs.inc({ kind })
        const s = this.store.sizes
        metrics.diskBytes.set(s.snapshotBytes + s.logBytes)
      },
      onCommitted: (n) => {
        metrics.changes.inc({ origin: 'local' }, n)
        this.afterChange('local')
      },
      onDiskError: err => { this.degrade(err) }
    })
    // the snapshot a previous run wrote: its time, not "never"
    try { this.persister.lastSnapshotAt = statSync(this.store.path('snapshot')).mtimeMs } catch {}
    await this.store.openLog()
    // a clean base after a repair or a migration
    if (this.recovered.length > 0 || this.persister.dirty) await this.persister.snapshot()

    this.sync = new SyncService({ host, replica: this.replica, log: this.log, maxMessageBytes: this.init.maxMessageBytes, addrsOf: this.init.addrsOf, nameOf: this.init.nameOf })
    this.sync.on('changed', (peer, n) => {
      metrics.changes.inc({ origin: 'remote' }, n)
      this.afterChange('remote', peer)
      this.settleFuture(peer)
    })
    this.sync.on('rejected', (_peer, reason) => metrics.syncRejected.inc({ reason }))
    this.sync.on('traffic', (direction, bytes) => {
      metrics.syncMessages.inc({ direction })
      metrics.syncBytes.inc({ direction }, bytes)
    })
    this.sync.on('sessions', n => metrics.sessions.set(n))
    this.announcer = new HeadsAnnouncer(host.services.pubsub, this.init.clusterId, () => this.replica.heads())
    this.announcer.on('heads', (peer, heads) => this.sync.noteHeads(peer, heads))
    this.announcer.on('rejected', reason => this.init.gossipRejected.inc({ topic: 'state', reason }))
    await this.sync.start()
    // others ask before they count on this node holding a change of theirs (holds-check.ts)
    await serveHolds(host, HOLDS_PROTOCOL, { holds: async heads => await this.holds(heads), noteHeads: (peer, heads) => { this.noteHeads(peer, heads) } })
    this.announcer.start()
    this.compactTimer = setInterval(() => {
      // a failure degrades the service (one ERROR); the old files stay as they were
      if (this.store.sizes.logRecords > 0 && this.healthState.ok) this.persister.snapshot().catch(() => {})
    }, this.init.compactIntervalMs ?? 10 * 60_000)
    this.diskTimer = setInterval(() => { void this.checkDisk() }, this.init.diskCheckIntervalMs ?? 2000)
    this.running = true
    // the start's snapshot was saved but the log could not be started afresh: refuse
    // writes (checkDisk retries) rather than fail each one at the store
    const refused = this.store.appendsRefused
    if (refused != null) this.degrade(refused)
    const c = this.replica.read().counts()
    this.log.info('cluster state loaded', { heads: this.replica.heads().length, changes: this.replica.stats().changes, labels: c.nodeLabels, vms: c.vms, volumes: c.volumes, apps: c.apps })
  }

  async stop (): Promise<void> {
    if (!this.running) {
      // a start that failed part way: release what it opened
      await this.sync?.stop().catch(() => {})
      await this.store.close().catch(() => {})
      return
    }
    this.running = false
    clearInterval(this.compactTimer)
    clearInterval(this.diskTimer)
    clearTimeout(this.remoteFlush)
    this.announcer.stop()
    await this.init.host.unhandle(HOLDS_PROTOCOL).catch(() => {})
    await this.sync.stop()
    // a fresh snapshot makes the next start a single load; after disk trouble, first
    // re-open the files (the directory may have been removed and is then re-created)
    let failed: Error | undefined
    try {
      if (!this.healthState.ok) await this.store.reopen()
      await this.persister.snapshot()
      const refused = this.store.appendsRefused
      if (refused != null) this.log.warn(`saved the cluster document at stop, but could not start a new log: ${refused.message}; the old log's records are all in the snapshot (replayed over it at the next start: harmless)`)
    } catch (err) {
      failed = err as Error
    }
    await this.store.close().catch(() => {})
    if (failed != null) {
      const msg = `could not save the cluster document at stop: ${failed.message}; the previous snapshot and log are kept (every acknowledged write is in them), changes from peers since are not`
      this.log.error(msg)
      throw new StateSaveError(msg)
    }
  }

  heads (): string[] { return this.replica.heads() }
  /** whether the document holds every change these heads name (they may be from an earlier run's document) */
  hasHeads (heads: readonly string[]): boolean { return this.replica.hasHeads([...heads]) }
  /** which of `keys` a change since `heads` wrote, and up to which heads it looked (null: heads not in the history; crdt/replica.ts) */
  keysWrittenSince (heads: readonly string[], kind: Kind, keys: ReadonlySet<string>): { found: Set<string>, heads: string[] } | null { return this.replica.keysWrittenSince(heads, kind, keys) }

  /** open sync sessions (one per connected peer once settled) */
  get sessionCount (): number { return this.sync?.sessionCount ?? 0 }
  get sessionPeers (): string[] { return this.sync?.sessionPeers ?? [] }

  /** A validating reader of the current document (use it at once, do not keep it). */
  read (): Reader { return this.replica.read() }

  labelsOf (node: string): Record<string, string> { return this.replica.read().labelsOf(node) }

  /**
   * Applies `fn`'s writes as one change, sends it to peers and resolves once it is
   * durable on disk: a caller may acknowledge it then. Throws InvalidObjectError,
   * NotFoundError or SchemaNewerError before anything is written.
   */
  async write<T> (fn: (w: Writer) => T, message?: string): Promise<T> {
    if (!this.running) throw new Error('the state service is not running')
    const h = this.healthState
    if (!h.ok) {
      this.metrics.writesFailed.inc({ cause: h.cause })
      throw new StateUnavailableError(h.cause, `the cluster document cannot be saved (${h.cause}: ${h.message}); writes are refused until this clears`)
    }
    try {
      return await this.persister.commit(fn, message)
    } catch (err) {
      if (err instanceof DiskError) {
        this.metrics.writesFailed.inc({ cause: err.reason })
        throw new StateUnavailableError(err.reason, `the change could not be saved and was not applied (${err.reason}: ${err.message})`)
      }
      throw err
    }
  }

  async setLabel (node: string, key: string, value: string): Promise<void> {
    await this.write(w => w.setLabel(node, key, value), `label ${node} ${key}`)
  }

  async removeLabel (node: string, key: string): Promise<boolean> {
    return await this.write(w => w.removeLabel(node, key), `unlabel ${node} ${key}`)
  }

  /**
   * Sets and removes a node's labels in one change, or none of them: the keys to remove
   * it lacks are returned, and then nothing is written (bb46: `unlabel NODE a b` removed
   * `a`, then failed on `b`).
   */
  async setLabels (node: string, set: Readonly<Record<string, string>>, remove: readonly string[]): Promise<string[]> {
    return await this.write(w => {
      const missing = remove.filter(k => w.current('nodeLabels', labelKey(node, k)) == null)
      if (missing.length > 0) return missing
      for (const [k, v] of Object.entries(set)) w.setLabel(node, k, v)
      for (const k of remove) w.removeLabel(node, k)
      return []
    }, `labels ${node}${Object.keys(set).map(k => ` ${k}`).join('')}${remove.map(k => ` -${k}`).join('')}`)
  }

  /** Heads a peer announced in its advert. */
  noteHeads (peer: string, heads: string[] | undefined): void {
    if (this.running && heads != null) this.sync.noteHeads(peer, heads)
  }

  /**
   * Whether this document holds every change up to `heads`, on disk: what a peer asks
   * before it counts on this node having a change of its (a restart grace,
   * node/dvmm/restart-grace.ts). Changes held only in memory are flushed first.
   */
  async holds (heads: string[]): Promise<boolean> {
    if (!this.running || !this.replica.hasHeads(heads)) return false
    await this.persister.flush()
    return true
  }

  /**
   * The peers among `peers` that announced heads this document lacks: they hold changes
   * not seen here yet (a volume store frees nothing until it has them).
   */
  lacksHeadsOf (peers: Iterable<string>): string[] {
    if (!this.running) return []
    const out: string[] = []
    for (const p of peers) {
      const heads = this.sync.announcedHeads(p)
      if (heads != null && !this.replica.hasHeads(heads)) out.push(p)
    }
    return out
  }

  /**
   * The peers among `peers` this agent has not heard announce any heads since it
   * started (their advert or gossip has not come yet): what they hold is not known.
   */
  headsUnheardOf (peers: Iterable<string>): string[] {
    if (!this.running) return []
    return [...peers].filter(p => this.sync.announcedHeads(p) == null)
  }

  /**
   * The peers among `peers` that announced heads this document holds: it has their
   * document as of their last advert (a node told to join counts as synced with the grid
   * once it holds a member's, node/dvmm/roll-join.ts).
   */
  holdsHeadsOf (peers: Iterable<string>): string[] {
    if (!this.running) return []
    const out: string[] = []
    for (const p of peers) {
      const heads = this.sync.announcedHeads(p)
      if (heads != null && this.replica.hasHeads(heads)) out.push(p)
    }
    return out
  }

  /** Test hook (VGRID_TEST_HOOKS): refuse state sync with these peers, to cut a partition. */
  setBlocked (peers: string[]): void { this.sync.setBlocked(peers) }

  view (): StateView {
    const r = this.replica.read()
    const s = this.store.sizes
    return {
      actor: this.replica.actor,
      schema: { document: this.replica.schema, agent: SCHEMA_VERSION },
      heads: this.replica.heads(),
      digest: r.digest(),
      history: this.replica.stats(),
      // Automerge lives in WebAssembly memory, counted in the process's external memory
      size: { diskBytes: s.snapshotBytes + s.logBytes, ...s, memoryBytes: process.memoryUsage().external },
      counts: r.counts(),
      persistence: { lastFlushAt: iso(this.persister.lastFlushAt), lastSnapshotAt: iso(this.persister.lastSnapshotAt), recovered: this.recovered, health: this.healthState },
      peers: this.sync.peers.list().filter(p => this.init.shown?.(p.id) ?? true).map(p => ({ ...p, name: this.init.nameOf?.(p.id) ?? null, lastSyncAt: iso(p.lastSyncAt), lastChangeAt: iso(p.lastChangeAt) })),
      blocked: this.sync.blockedPeers
    }
  }

  private afterChange (origin: 'local' | 'remote', peer?: string): void {
    this.sync.pokeAll(peer)
    if (origin === 'local') this.announcer.announce()
    else this.flushRemoteSoon()
    this.emit('changed', origin, peer)
  }

  private remoteFlush?: NodeJS.Timeout

  /**
   * Contests that a value stamped more than MAX_FUTURE_MS ahead of our clock won
   * (its writer's clock runs fast): write the value that should win again, stamped
   * now, so every agent reads it (crdt/conflicts.ts futureOverride).
   */
  private settleFuture (peer: string): void {
    const contests = this.replica.takeFutureContests()
    if (contests.length === 0 || !this.healthState.ok) return
    const now = (this.init.now ?? Date.now)()
    this.persister.commit(w => contests.filter(c => w.settleFuture(c.kind, c.key, now, MAX_FUTURE_MS)).map(c => `${c.kind}/${c.key}`), 'settle future stamps')
      .then(settled => {
        if (settled.length > 0) this.log.warn('values stamped in the future (a peer\'s clock runs fast) won contests: settled for the values this clock had passed', { from: this.init.nameOf?.(peer) ?? peer, objects: settled.slice(0, 10).join(','), count: settled.length })
      })
      .catch(() => {}) // disk trouble: reported by the persister (the contest then stays as it is)
  }

  /** Disk trouble: refuse writes (one ERROR line per episode) until checkDisk() recovers. */
  private degrade (err: DiskError): void {
    this.metrics.diskErrors.inc({ cause: err.reason })
    // at stop, stop() itself reports the failure (once)
    if (!this.healthState.ok || !this.running) return
    this.healthState = { ok: false, cause: err.reason, message: err.message, since: new Date().toISOString() }
    this.metrics.degraded.set({ cause: err.reason }, 1)
    this.log.error(`cannot save the cluster document (${err.reason}): ${err.message}; refusing writes until the disk recovers (nothing acknowledged is lost)`)
  }

  /** Healthy: notice a removed or replaced directory. Degraded: re-open the files and save everything. */
  private async checkDisk (): Promise<void> {
    if (!this.running || this.recovering) return
    this.recovering = true
    try {
      if (this.healthState.ok) {
        await this.store.checkDir().catch(err => { if (err instanceof DiskError) this.degrade(err) })
        return
      }
      const was = this.healthState
      try {
        await this.store.reopen()
        await this.persister.snapshot()
      } catch {
        return // still failing: keep refusing (already logged)
      }
      // the snapshot is saved but no new log could be started: still failing
      if (this.store.appendsRefused != null) return
      this.healthState = { ok: true }
      this.metrics.degraded.set({ cause: was.cause }, 0)
      this.log.info('the cluster document is saved again: wrote a fresh snapshot of everything this agent holds; accepting writes', { cause: was.cause, since: was.since })
    } finally {
      this.recovering = false
    }
  }

  /** Changes from peers are saved within 100 ms, a burst of them with one fsync (nobody waits on them). */
  private flushRemoteSoon (): void {
    if (this.remoteFlush != null) return
    this.remoteFlush = setTimeout(() => {
      this.remoteFlush = undefined
      // a failure degrades the service, which logs it once
      this.persister.flush().catch(() => {})
    }, 100)
  }

  private onInvalid = (kind: Kind, key: string, problem: string): void => {
    const k = `${kind}/${key}: ${problem}`
    if (this.warned.has(k)) return
    if (this.warned.size > 1000) this.warned.clear()
    this.warned.add(k)
    this.metrics.invalidValues.inc()
    this.log.warn('skipping an invalid value in the cluster document', { kind, key, problem })
  }

  /** Loads the document from disk; damaged files are set aside and the rest comes from peers. */
  private async load (): Promise<void> {
    const disk = await this.store.read()
    const problems: DiskProblem[] = [...disk.problems]
    const opts = { clusterId: this.init.clusterId, nodeId: this.init.host.peerId.toString(), onInvalid: this.onInvalid, now: this.init.now }
    const fail = (file: StateFile, detail: string): void => { problems.push({ file, path: this.store.path(file), detail }) }
    let replica: Replica | undefined
    if (disk.snapshot != null) {
      try {
        replica = Replica.load(opts, disk.snapshot)
        const bad = replica.structureProblem()
        if (bad != null) fail('snapshot', bad)
      } catch (err) {
        fail('snapshot', `cannot be loaded: ${(err as Error).message}`)
      }
    }
    const snapshotBad = problems.some(p => p.file === 'snapshot')
    if (snapshotBad) {
      replica = undefined
      // the log only extends the snapshot it was written after
      if (disk.records.length > 0 && !problems.some(p => p.file === 'log')) fail('log', 'extends a damaged snapshot')
    } else {
      replica ??= Replica.create(opts)
      for (const [i, rec] of disk.records.entries()) {
        try {
          replica.loadIncremental(rec)
        } catch (err) {
          fail('log', `record ${i} cannot be loaded: ${(err as Error).message}`)
          break
        }
      }
      const bad = replica.structureProblem()
      if (bad != null) {
        fail('log', bad)
        replica = disk.snapshot != null ? Replica.load(opts, disk.snapshot) : undefined
      }
    }
    this.replica = replica ?? Replica.create(opts)
    const clock = this.replica.clock
    this.metrics.clampedStamps = () => clock.clamped
    this.diskHeads = this.replica.heads()
    const migrated = this.replica.migrate()
    if (migrated.length > 0) this.log.info('migrated the cluster document', { to: migrated.at(-1) })
    if (this.replica.schemaNewer) this.log.warn('the cluster document is newer than this agent: reading only; upgrade this agent to write', { document: this.replica.schema, agent: SCHEMA_VERSION })
    const files = [...new Set(problems.map(p => p.file))]
    for (const file of files) {
      const detail = problems.filter(p => p.file === file).map(p => p.detail).join('; ')
      // a log whose intact records are in the document stays in place (closed to appends)
      // until start() has written the snapshot that holds them: a crash before then
      // finds them again. A damaged snapshot and a log extending it hold nothing we keep.
      const keptAs = file === 'log' && !snapshotBad ? await this.store.keepAside() : await this.store.setAside(file)
      this.metrics.corruptFiles.inc()
      this.recovered.push({ file, detail, keptAs, at: new Date().toISOString() })
      this.log.error(`state ${file} ${this.store.path(file)} is damaged: ${detail}; kept aside as ${keptAs}; recovering the document from peers`)
    }
  }
}
