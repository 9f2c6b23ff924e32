// The GVS service of an agent: this node's object store, the replica protocol that
// serves it to the other agents, and the NBD server that exports every volume of the
// cluster document (whatever node its replicas are on) as a ReplicatedVolume placed
// over the live members, weighted by their disk capacity.
import type { Libp2p } from '@libp2p/interface'
import type { FastifyInstance } from 'fastify'
import { join } from 'node:path'
import type { Reader, Volume, Writer } from '../../crdt/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { Logger } from '../log.ts'
import { ObjectStore } from './object-store.ts'
import { ReplicaService } from './replication.ts'
import { ReplicatedVolume } from './replicated-volume.ts'
import { Placement } from './placement.ts'
import { NbdServer } from './nbd/server.ts'
import type { BlockDevice } from './block-device.ts'
import { Repairer, mergeReports, type RepairReport } from './repair.ts'
import { layersOf, placementKeyOf, referencedLayers, type Pool } from './volumes.ts'
import { LiveVolume } from './live-volume.ts'
import { gvsRoutes } from './routes.ts'
import { GvsMetrics } from './metrics.ts'
import type { Registry } from 'prom-client'

export interface GvsComponents {
  peerId: string
  log: Logger
  config: { dataDir: string }
  host: Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol' | 'peerId'>
  state: {
    read: () => Reader
    write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
  }
  membership: { readonly members: MemberTable }
  /** the agent's Prometheus registry (optional in tests) */
  registry?: Registry
}

export interface GvsInit {
  /** default <data-dir>/nbd.sock */
  nbdSocket?: string
  /** loopback TCP for NBD, only where asked for */
  nbdTcpPort?: number
  repairBytesPerSecond?: number
  /** background repair and cleanup runs this often (0: never; default 30 s) */
  reconcileMs?: number
}

export class GvsService {
  readonly name = 'gvs'
  readonly components: GvsComponents
  readonly store: ObjectStore
  readonly replicas: ReplicaService
  readonly nbd: NbdServer
  private readonly init: GvsInit
  /** export devices by volume id (or id@snapshot), rebuilt when the volume's shape, layers or epoch change */
  private readonly devices = new Map<string, { key: string, dev: ReplicatedVolume }>()
  /** what NBD sessions hold: one per volume, following its current device */
  private readonly live = new Map<string, LiveVolume>()
  /** the last repair of each volume, for info */
  readonly repairs = new Map<string, RepairReport>()
  private readonly metrics: GvsMetrics | null
  private timer: ReturnType<typeof setTimeout> | null = null
  private reconciling: Promise<void> | null = null
  private running = false
  /** volumes this node has seen in the document: only these are freed when they go */
  private readonly seen = new Set<string>()

  constructor (components: GvsComponents, init: GvsInit = {}) {
    this.components = components
    this.init = init
    const log = components.log.child('gvs')
    this.store = new ObjectStore({ log }, { dir: join(components.config.dataDir, 'gvs') })
    this.replicas = new ReplicaService({ host: components.host, store: this.store, log })
    this.nbd = new NbdServer({ log, exports: { get: name => this.device(name), list: () => this.volumes().map(exportName) } }, {
      socketPath: init.nbdSocket ?? join(components.config.dataDir, 'nbd.sock'),
      tcpPort: init.nbdTcpPort
    })
    this.metrics = components.registry == null ? null : new GvsMetrics(components.registry, () => this.nbd.stats)
    this.store.on('damaged', () => { this.metrics?.damaged.inc() })
  }

  async start (): Promise<void> {
    await this.store.start()
    await this.replicas.start()
    await this.nbd.start()
    this.running = true
    this.schedule()
  }

  private schedule (): void {
    const ms = this.init.reconcileMs ?? 30_000
    if (!this.running || ms <= 0) return
    this.timer = setTimeout(() => {
      this.reconciling = this.reconcile().catch(err => { this.components.log.warn('gvs reconcile failed', { error: String(err) }) })
      void this.reconciling.finally(() => { this.reconciling = null; this.schedule() })
    }, ms)
    this.timer.unref?.()
  }

  /**
   * The background pass: every volume is repaired towards its placement (rate-capped,
   * one volume at a time, so client I/O keeps going), and this node frees the objects
   * of volumes it saw in the document and the document no longer has.
   */
  async reconcile (): Promise<void> {
    const vols = this.volumes()
    const ids = referencedLayers(vols)
    for (const id of ids) this.seen.add(id)
    for (const name of await this.store.volumes()) {
      // a volume this node never saw may be new and not yet synced here: keep it
      if (!ids.has(name) && this.seen.has(name)) {
        this.components.log.info('freeing the objects of a destroyed volume', { volume: name })
        await this.store.removeVolume(name)
      }
    }
    for (const v of vols) {
      if (!this.running) return
      await this.repair(v)
    }
  }

  async stop (): Promise<void> {
    this.running = false
    if (this.timer != null) clearTimeout(this.timer)
    await this.reconciling
    await this.nbd.stop()
    await this.replicas.stop()
    await this.store.stop()
  }

  routes (app: FastifyInstance): void { gvsRoutes(this)(app) }

  volumes (): Volume[] { return this.components.state.read().list('volumes') }

  /** the live members that hold replicas, weighted by disk capacity */
  liveNodes (): Array<{ id: string, weight: number, free: number }> {
    return [...this.components.membership.members.values()]
      .filter(m => m.state === 'alive')
      .map(m => ({ id: m.nodeId, weight: m.advert.capacity.diskBytes, free: m.advert.free.diskBytes }))
  }

  pool (): Pool {
    const live = this.liveNodes().filter(n => n.weight > 0)
    return { nodes: live.length, freeBytes: live.reduce((s, n) => s + n.free, 0) }
  }

  holders = (key: string, r: number): string[] => new Placement(this.liveNodes()).holders(key, r)

  /** a volume by export name: its path without the leading "/", or its id */
  private byName (name: string): Volume | undefined {
    return this.volumes().find(x => x.id === name || x.path === `/${name}` || x.path === name)
  }

  /**
   * The block device of an export name: a volume ("shop/db/data" or its id), or one of
   * its snapshots, read-only ("shop/db/data@nightly").
   */
  device (name: string): BlockDevice | undefined {
    if (this.byName(name) == null) {
      const at = name.lastIndexOf('@')
      const v = at > 0 ? this.byName(name.slice(0, at)) : undefined
      const snap = v?.snapshots[name.slice(at + 1)]
      if (v == null || snap == null) return undefined
      const layers = snap.layers ?? [v.id]
      return this.build(`${v.id}@${snap.name}`, v, layers, true)
    }
    let lv = this.live.get(name)
    if (lv == null) {
      lv = new LiveVolume(() => {
        const v = this.byName(name)
        return v == null ? undefined : this.build(v.id, v, layersOf(v), false)
      }, name)
      this.live.set(name, lv)
    }
    return lv
  }

  private build (cacheKey: string, v: Volume, layers: string[], readOnly: boolean): ReplicatedVolume {
    const key = `${v.sizeBytes}/${v.replicas}/${v.minReplicas ?? v.replicas}/${v.epoch ?? 1}/${layers.join(',')}`
    const cached = this.devices.get(cacheKey)
    if (cached?.key === key) return cached.dev
    const dev = new ReplicatedVolume({ transport: this.replicas, holders: this.holders, nodes: () => this.liveNodes().map(n => n.id) }, {
      volume: layers[0]!, under: layers.slice(1), placementKey: placementKeyOf(v), size: v.sizeBytes, replicas: v.replicas, minReplicas: v.minReplicas, epoch: v.epoch ?? 1, readOnly
    })
    this.devices.set(cacheKey, { key, dev })
    return dev
  }

  /** repairs every object set the volume reads (its layers) towards their placement */
  async repair (v: Volume): Promise<RepairReport> {
    const reports: RepairReport[] = []
    for (const layer of layersOf(v)) {
      reports.push(await new Repairer({ transport: this.replicas, holders: this.holders, nodes: () => this.liveNodes().map(n => n.id) }, {
        volume: layer, placementKey: placementKeyOf(v), replicas: v.replicas, objects: Math.ceil(v.sizeBytes / this.store.objectSize), bytesPerSecond: this.init.repairBytesPerSecond
      }).run())
    }
    const report = mergeReports(v.id, reports)
    this.metrics?.repairBytes.inc(report.bytes)
    this.metrics?.repairFailed.inc(report.failed)
    this.repairs.set(v.id, report)
    this.metrics?.volumesUnhealthy.set([...this.repairs.values()].filter(r => r.health !== 'healthy').length)
    return report
  }

  /** the NBD URI a client on this node opens for a volume */
  uriOf (v: Volume): string {
    return `nbd+unix:///${exportName(v)}?socket=${this.init.nbdSocket ?? join(this.components.config.dataDir, 'nbd.sock')}`
  }
}

/** the NBD export name of a volume: its path without the leading "/" */
export const exportName = (v: Volume): string => v.path.slice(1)
