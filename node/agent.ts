// The agent: one per server. It prepares what every service shares (the data dir,
// the cluster key, the identity, the host's capacity, the libp2p host), builds the
// services from one list, starts them in order and stops them in reverse. It holds
// no service logic: each service is a folder under node/ with one entry point.
import { EventEmitter } from 'node:events'
import { dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { PrivateKey } from '@libp2p/interface'
import { Registry } from 'prom-client'
import { loadOrCreateIdentity } from '../protocol/identity.ts'
import type { ClusterKey } from '../protocol/cluster-key.ts'
import type { Resources } from '../protocol/advert.ts'
import type { VgridHost } from '../protocol/host.ts'
import type { MembershipService } from '../protocol/membership-service.ts'
import type { AgentConfig } from './config.ts'
import { resolveCluster } from './cluster-key-store.ts'
import { holdsSockets, openToAdmins, secureDataDir } from './data-dir.ts'
import { groupId } from './groups.ts'
import { ADMIN_GROUP } from './api/access.ts'
import { DataDisk, detectCapacity } from './resources.ts'
import { createLogger, type Logger } from './log.ts'
import { startAll, stopAll, systemClock, type Clock, type Service } from './service.ts'
import { UnavailableError } from './errors.ts'
import { NetworkService } from './network/index.ts'
import { StateService } from './state/index.ts'
import { stateRoutes } from './api/state-routes.ts'
import { GridMembership, AdvertFields, MemberDirectory } from './membership/index.ts'
import { ClockWatch, awayMembers, deadMembers, restartingMembers, duplicateNames, joinUnreached, notJoined, outOfReachProblems, unheardMembers } from './membership/views.ts'
import { RollMemory } from './membership/roll-memory.ts'
import { ApiService } from './api/server.ts'
import type { HealthProblem } from './api/types.ts'
import { LcmService } from './lcm/index.ts'
import { DvmmService } from './dvmm/index.ts'
import type { HaReport } from '../crdt/placement/ha.ts'
import { NodeRuntime } from './dvmm/node-runtime.ts'
import { GvsService } from './gvs/index.ts'
import { tuningFromEnv } from './gvs/config.ts'

import { watchdogTimeoutFor } from './dvmm/timing.ts'
import { previousFence } from './dvmm/fence-record.ts'
import { registerHealthMetrics } from './health-metrics.ts'
import { VERSION } from './version.ts'

/** What the agent prepares before any service is built; every service takes the part of it it needs. */
export interface CoreComponents {
  config: AgentConfig
  log: Logger
  clock: Clock
  registry: Registry
  privateKey: PrivateKey
  clusterKey: ClusterKey
  capacity: Resources
  /** join addresses (--join and the token's) */
  join: string[]
  advert: AdvertFields
  directory: MemberDirectory
}

/**
 * The services of an agent, in start order (stopped in reverse). To add one: a folder
 * under node/ whose entry point exports a class implementing Service, and one line
 * here that builds it from the components it needs.
 */
async function buildServices (core: CoreComponents, opts: { api: boolean, without: ReadonlySet<OptionalService>, previousFeedAt: number | null, previousFeedFenceMs: number | null, stopBridge?: () => void }): Promise<{ services: Service[], host: VgridHost, api?: ApiService, membership: GridMembership, state: StateService }> {
  const startedAt = performance.now()
  const network = await NetworkService.create(core)
  const host = network.host
  const c = { ...core, host, clusterId: core.clusterKey.clusterId, dataDir: core.config.dataDir }
  // what keeps this node from working fully, shown in /v1/status; each service adds its own
  const problems: Array<() => HealthProblem[] | Promise<HealthProblem[]>> = [() => {
    const h = state.health()
    return h.ok ? [] : [{ service: 'state', cause: h.cause, message: h.message, since: h.since }]
  }, () => duplicateNames(core.directory.members), () => unheardMembers(state.read().list('roll'), core.directory.members, performance.now() - startedAt),
  () => joinUnreached(membership.joinStatus(), core.directory.members, host.peerId.toString(), performance.now() - startedAt),
  async () => await dataDisk.problems(),
  () => clockWatch.problems(membership.detector.clockOffsets(), core.directory.members, host.peerId.toString()),
  () => outOfReachProblems(membership.detector.outOfReach(), core.directory.members),
  () => deadMembers(state.read().list('roll'), core.directory.members),
  () => awayMembers(state.read().list('roll'), core.directory.members),
  () => restartingMembers(state.read().list('roll'), core.directory.members)]
  const clockWatch = new ClockWatch()
  const dataDisk = new DataDisk(core.config.dataDir, undefined, core.capacity.diskBytes)
  const membership = new GridMembership({
    ...c,
    labels: { labelsOf: node => state.labelsOf(node) },
    roll: node => state.read().get('roll', node)?.value,
    rollEntries: () => state.read().list('roll'),
    // a dead member gone from the roll (vgrid node forget) is no longer shown
    forgotten: node => rollMemory.forgotten(node, state.read().list('roll')),
    busyPeers: () => state.sessionPeers,
    health: async () => (await Promise.all(problems.map(async p => await p()))).flat(),
    ha: (): HaReport | null => dvmm?.ha() ?? null
  })
  const state: StateService = new StateService({
    ...c,
    log: core.log.child('state'),
    gossipRejected: membership.metrics.gossipRejected,
    nameOf: id => core.directory.nameOf(id),
    addrsOf: id => core.directory.addrsOf(id),
    // an identity forgotten (a server replaced) stayed in `vgrid state` until a restart
    shown: id => !rollMemory.forgotten(id, state.read().list('roll'))
  })
  // the roll as it changes, at most once a second: a forget is told from an entry yet to arrive
  const rollMemory = new RollMemory({ path: join(core.config.dataDir, 'roll-seen.json'), log: core.log.child('membership') })
  let rollNoteTimer: NodeJS.Timeout | undefined
  const self = host.peerId.toString()
  state.on('changed', () => {
    rollNoteTimer ??= setTimeout(() => {
      rollNoteTimer = undefined
      const roll = state.read().list('roll')
      // said by the node itself, whether it was down or cut off then (bb35: one forgotten
      // while down came back saying nothing of it)
      if (rollMemory.selfForgotten(self, roll)) core.log.warn('this node was taken off the member roll (vgrid node forget) while it was down or cut off: it joins it again as a member once it sees a majority; its VMs were placed elsewhere meanwhile, and the volume copies it holds are checked against the others\'; if it should be gone, stop it and forget it again')
      for (const id of rollMemory.note(roll)) {
        const name = roll.find(e => e.node === id)?.name ?? id
        core.log.warn(`${name} is back on the member roll after it left it or was taken off it (vgrid node forget): it counts for the majority and takes VMs and volume copies again; if it was forgotten by mistake while cut off, nothing is needed; if it should be gone, stop it and forget it again`, { node: name, id })
      }
    }, 1000).unref()
  })
  core.advert.provide('stateHeads', () => state.heads())
  membership.detector.on('advert', a => { state.noteHeads(a.nodeId, a.stateHeads) })

  const want = (name: OptionalService): boolean => !opts.without.has(name)
  const lcm = core.config.overlay && want('lcm')
    ? new LcmService({
      ...c,
      log: core.log.child('lcm'),
      peerId: host.peerId.toString(),
      membership: membership.detector,
      adverts: membership.detector,
      state,
      // and why the overlay is down (read from the LCM, provided below): placement makes this node the last choice for VMs with connections
      onAdvert: wg => { core.advert.provide('wireguard', () => wg); core.advert.changed() },
      // read when called: DVMM is built below
      vms: { interfaceOf: vm => dvmm?.local.interfaceOf(vm) ?? null, interfaceRun: vm => dvmm?.local.interfaceRun(vm) ?? null, setNames: async (vm, names) => await dvmm?.local.setNames(vm, names) ?? false, vmOfLinkAddress: a => dvmm?.local.vmOfLinkAddress(a) ?? null }
    }, { port: core.config.wireguardPort })
    : undefined
  if (lcm != null) core.advert.provide('overlayDown', () => lcm.overlayDown())
  core.advert.provide('dataDiskFull', () => dataDisk.fullWhy(() => { core.advert.changed() }))
  problems.push(() => lcm?.problems() ?? [])

  // the VM manager: drivers with the fencing watchdog, then the service that places and runs VMs
  // (the fence timeout the previous run ran with holds until the others' settings are known again)
  const previousFenceMs = previousFence(core.config.dataDir, core.log.child('dvmm'))
  const runtime = want('dvmm')
    ? new NodeRuntime({
      ...c,
      log: core.log.child('dvmm'),
      stopBridge: opts.stopBridge,
      onProbe: p => {
        core.advert.provide('vmHost', () => ({ cgroup: p.cgroup.version, accel: p.qemu.accel ?? null, drivers: p.drivers, volumeBoot: true, leaseSized: true }))
        core.advert.changed()
      }
    }, { watchdogTimeoutMs: watchdogTimeoutFor(core.config.fenceTimeoutMs) }) // DVMM sets the fence in force below (setFence), before anything runs
    : undefined
  // it holds the document some live member announced (its heads in that member's advert)
  const gridSynced = (): boolean => state.holdsHeadsOf([...membership.detector.members.values()].filter(m => m.state === 'alive' && m.nodeId !== host.peerId.toString()).map(m => m.nodeId)).length > 0
  const dvmm: DvmmService | undefined = runtime == null
    ? undefined
    : new DvmmService({
      ...c,
      peerId: host.peerId.toString(),
      state,
      membership: membership.detector,
      drivers: runtime.drivers,
      host,
      // a node told to join writes its roll entry once it synced with the grid (roll-join.ts)
      joinSynced: () => membership.joinStatus().some(j => j.reached) && gridSynced(),
      // a node alone on its roll starts nothing old before it holds a live member's document (decide.ts)
      gridSynced,
      onReserved: r => { core.advert.provide('reserved', () => r); core.advert.changed() },
      // the watchdog follows the fence timeout in force (activeFenceMs)
      onActiveFence: ms => { runtime.setFence(ms) },
      // a stop for a restart whose grace every member confirmed: the watchdog's last feed gives the VMs that long
      onRestartGrace: t => { runtime.restartGrace(t) },
      // a restart's record is said back once this run's own watchdog guards the VMs
      ownWatchdog: () => runtime.ownWatchdog(),
      network: lcm == null ? undefined : { overlayOf: vm => lcm.overlayOf(vm), interfacesChanged: () => { lcm.schedule(0) }, overlayDown: () => lcm.overlayDown(), tunnelDown: node => lcm.tunnelDown(node) },
      // read when called: GVS is built below
      volumes: want('gvs')
        ? {
            uriOf: (id, epoch) => { const v = state.read().get('volumes', id)?.value; return v == null || gvs == null ? null : gvs.uriOf(v, epoch) },
            fence: async (id, epoch) => { if (gvs == null) throw new Error('the volume store does not run on this node'); await gvs.fence(id, epoch) },
            readDisk: async (id, epoch, offset, length) => {
              const v = state.read().get('volumes', id)?.value
              if (v == null || gvs == null) throw new Error(v == null ? `volume ${id} does not exist` : 'the volume store does not run on this node')
              return await gvs.readDisk(v, epoch, offset, length)
            },
            writers: async id => gvs == null ? [] : await gvs.writersOf(id),
            health: async ids => {
              const r = state.read()
              return gvs == null ? new Map() : await gvs.health(ids.flatMap(id => { const v = r.get('volumes', id)?.value; return v == null ? [] : [v] }))
            }
          }
        : undefined
    }, {
      fenceTimeoutMs: core.config.fenceTimeoutMs,
      lastAliveAt: opts.previousFeedAt ?? undefined,
      lastAliveFenceMs: opts.previousFeedFenceMs ?? undefined,
      restartGraceMs: core.config.restartGraceMs,
      previousFenceMs
    })
  // the fencing watchdog is fed only while DVMM's decision steps do not hang (a step
  // stuck on a write lets the supervisor kill this node's VMs)
  if (runtime != null && dvmm != null) {
    runtime.setFence(dvmm.activeFenceMs)
    runtime.feedWhile(() => dvmm.loopAgeMs())
  }
  problems.push(() => [...dvmm?.problems() ?? [], ...runtime?.problems() ?? []])

  // the volume store: objects on this node's disk, every volume exported over NBD next to the API socket
  const gvs = want('gvs')
    ? new GvsService({
      ...c,
      log: core.log.child('gvs'),
      peerId: host.peerId.toString(),
      // the free disk in the advert is the room left on it, not the capacity given
      diskMeasured: () => { core.advert.changed() },
      state,
      membership: membership.detector,
      // a dead member forgotten (vgrid node forget) holds no fold nor free up for the
      // gossip table's forget time
      forgotten: node => rollMemory.forgotten(node, state.read().list('roll'))
    }, {
      nbdSocket: join(core.config.apiSocket == null ? core.config.dataDir : dirname(core.config.apiSocket), 'nbd.sock'),
      // the config file's settings, the environment's over them
      ...core.config.gvs,
      ...tuningFromEnv(process.env),
      env: false
    })
    : undefined
  problems.push(async () => await gvs?.problems() ?? [])
  if (gvs != null) core.advert.provide('diskAvailable', () => gvs.store.available())
  if (gvs != null) core.advert.provide('diskStored', () => gvs.storedBytes())

  // stopped before the state service: no note after it, and its file written before the data dir may go (a test's rm raced a late write)
  const rollNotes: Service = {
    name: 'roll-memory',
    start: async () => {},
    stop: async o => {
      clearTimeout(rollNoteTimer)
      rollNoteTimer = undefined
      // a leave took this node's roll entry (the VM manager stops first): not a forget
      if (o.graceful && o.leave !== false) rollMemory.left(self, state.read().list('roll'))
      await rollMemory.stop()
    }
  }
  // what status says, on /metrics too
  registerHealthMetrics(core.registry, { problems: async () => (await Promise.all(problems.map(async p => await p()))).flat(), ...(dvmm != null ? { haOk: () => dvmm.ha().ok } : {}), version: VERSION })
  const services: Service[] = [
    network,
    asService('state', state, stateRoutes({ state, directory: core.directory, onRoll: n => state.read().get('roll', n) != null })),
    rollNotes,
    membership,
    lcm ?? (core.config.overlay ? undefined : lcmOff),
    gvs,
    runtime,
    dvmm
  ].filter(s => s != null)
  let api: ApiService | undefined
  if (opts.api) {
    api = new ApiService({ ...c, log: core.log.child('api') }, { services, refuseChanges: () => want('dvmm') ? notJoined(core.join, state.read().list('roll'), membership.joinStatus().some(j => j.reached)) : null })
    services.push(api)
  }
  return { services, host, api, membership, state }
}

/**
 * An agent run with --no-overlay has no connection manager: its routes say so (503
 * `lcm_off`) rather than "no route", which read like a wrong URL or an old agent.
 */
const lcmOff: Service = {
  name: 'lcm-off',
  start: async () => {},
  stop: async () => {},
  routes: app => {
    const off = async (): Promise<never> => { throw new UnavailableError('the connection manager is off on this agent (it runs with --no-overlay): no links, no overlay', 'lcm_off') }
    for (const url of ['/v1/links', '/v1/links/:id', '/v1/net']) app.get(url, off)
    app.post('/v1/links', { config: { access: 'admin' } }, off)
    app.delete('/v1/links/:id', { config: { access: 'admin' } }, off)
  }
}

/** The state service predates the Service shape: give it a name and its routes. */
function asService (name: string, s: { start: () => Promise<void>, stop: () => Promise<void> }, routes: (app: FastifyInstance) => void): Service {
  return { name, start: async () => await s.start(), stop: async () => await s.stop(), routes }
}

/** Services a test or benchmark may leave out, to bring its own (e.g. DVMM on a fake driver). */
export type OptionalService = 'gvs' | 'dvmm' | 'lcm'

export interface AgentOptions {
  logger?: Logger
  without?: OptionalService[]
  /** when the previous run of this agent last fed its watchdog (node/dvmm/watchdog/bridge.ts): the VM manager's fence counts from there */
  previousFeedAt?: number | null
  /** the fence timeout that feed promised (a restart grace's is longer): the VM manager's fence counts it from there */
  previousFeedFenceMs?: number | null
  /** stops the bridge's feeds of the previous run's supervisor: called once this run's own watchdog feeds it */
  stopBridge?: () => void
}

export interface AgentEvents {
  started: []
  stopped: []
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly config: AgentConfig
  readonly log: Logger
  readonly registry = new Registry()
  host!: VgridHost
  /** the failure detector (members, and events benchmarks and tests listen to) */
  membership!: MembershipService
  /** the replicated cluster document */
  state!: StateService
  private services: Service[] = []
  private advert?: AdvertFields
  private grid!: GridMembership
  private api?: ApiService
  private running = false

  private readonly without: ReadonlySet<OptionalService>

  constructor (config: AgentConfig, opts: AgentOptions = {}) {
    super()
    this.config = config
    this.log = opts.logger ?? createLogger({ component: config.name })
    this.without = new Set(opts.without)
    this.previousFeedAt = opts.previousFeedAt ?? null
    this.previousFeedFenceMs = opts.previousFeedFenceMs ?? null
    this.stopBridge = opts.stopBridge
  }

  private readonly previousFeedAt: number | null
  private readonly previousFeedFenceMs: number | null
  private readonly stopBridge?: () => void

  get id (): string { return this.host.peerId.toString() }
  get apiAddress (): { host: string, port: number } | undefined { return this.api?.address }

  async start (opts: { api?: boolean } = {}): Promise<void> {
    const cfg = this.config
    // 0700, even if the operator made it: it holds the keys and every volume's contents;
    // 0710 of the vgrid group where it holds the sockets, for the group's members to reach
    const adminGid = groupId(ADMIN_GROUP)
    const sockets = cfg.apiSocket == null ? [join(cfg.dataDir, 'nbd.sock')] : [cfg.apiSocket, join(dirname(cfg.apiSocket), 'nbd.sock')]
    // 0710 only while the sockets are in it: moved elsewhere, it is made 0700 again
    await secureDataDir(cfg.dataDir, this.log, undefined, holdsSockets(cfg.dataDir, sockets) ? adminGid : null)
    const cluster = await resolveCluster(cfg.dataDir, { keyFile: cfg.keyFile, token: cfg.token }, this.log)
    await openToAdmins(cfg.dataDir, sockets, adminGid, this.log)
    const core: CoreComponents = {
      config: cfg,
      log: this.log,
      clock: systemClock,
      registry: this.registry,
      privateKey: await loadOrCreateIdentity(cfg.dataDir, this.log),
      clusterKey: cluster.key,
      capacity: await detectCapacity(cfg.dataDir, cfg.capacity),
      join: [...new Set([...cfg.join, ...cluster.joinAddrs])],
      advert: new AdvertFields(),
      directory: new MemberDirectory()
    }
    this.advert = core.advert
    const built = await buildServices(core, { api: opts.api !== false, without: this.without, previousFeedAt: this.previousFeedAt, previousFeedFenceMs: this.previousFeedFenceMs, stopBridge: this.stopBridge })
    Object.assign(this, { host: built.host, grid: built.membership, membership: built.membership.detector, state: built.state, api: built.api, services: built.services })
    await startAll(this.services, this.log)
    this.running = true
    this.log.info('agent started', {
      id: this.id,
      cluster: cluster.key.clusterId,
      listen: this.grid.addrs().join(','),
      api: this.api == null ? 'off' : `${this.api.address.host}:${this.api.address.port}`,
      socket: this.api == null ? 'off' : cfg.apiSocket ?? 'off'
    })
    if (cluster.created) {
      // not the token itself: the log goes to the journal, which more than root may read (bb48)
      this.log.info('started a new grid; `vgrid token` (as root) prints the token that joins other servers to it')
    }
    this.emit('started')
  }

  /**
   * Graceful stop announces "leaving" so peers mark this node left, not dead, and the
   * node leaves the grid: its VMs stop, its leases and roll entry go. `leave: false`
   * (SIGTERM: a restart, an upgrade) announces it but stays in the grid: the VMs run on
   * under the watchdog, and a run back within the fence timeout adopts them.
   * `graceful: false` stops without a word, as a crash would (benchmarks, tests).
   * Throws if a service could not stop cleanly (e.g. the document could not be saved).
   */
  async stop (opts: { graceful?: boolean, leave?: boolean } = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    try {
      await stopAll(this.services, { graceful: opts.graceful !== false, leave: opts.leave !== false })
    } finally {
      this.emit('stopped')
    }
    this.log.info('agent stopped')
  }

  addrs (): string[] { return this.grid.addrs() }
  token (): string { return this.grid.token() }

  /** Reserved resources come from the leases this node holds. */
  setReserved (r: Resources): void {
    this.advert?.provide('reserved', () => r)
    this.advert?.changed()
  }
}
