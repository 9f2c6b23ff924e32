// What this node's NBD server exports: every volume of the document by name (its path
// without the leading "/", or its id), and each snapshot read-only as VOL@SNAP. A
// volume's sessions share one LiveVolume, which follows the volume as its shape,
// layers or epoch change; each session gets its own writer handle on it, so the
// service knows who writes (writers.ts).
import type { Volume } from '../../crdt/index.ts'
import type { BlockDevice } from './block-device.ts'
import { LiveVolume } from './live-volume.ts'
import { ReplicatedVolume } from './replicated-volume.ts'
import type { ReplicaTransport } from './replication.ts'
import { layersOf, placementKeyOf } from './volumes.ts'
import type { Writers } from './writers.ts'

export interface VolumeExportsComponents {
  transport: ReplicaTransport
  holders: (key: string, replicas: number) => string[]
  nodes: () => string[]
  volumes: () => Volume[]
}

export class VolumeExports {
  readonly writers: Writers
  private readonly c: VolumeExportsComponents
  /** devices by volume id (or id@snapshot), rebuilt when the volume's shape, layers or epoch change */
  private readonly devices = new Map<string, { key: string, dev: ReplicatedVolume }>()
  /** what NBD sessions hold: one per volume, following its current device */
  private readonly live = new Map<string, LiveVolume>()

  constructor (components: VolumeExportsComponents, writers: Writers) {
    this.c = components
    this.writers = writers
  }

  private byName (name: string): Volume | undefined {
    return this.c.volumes().find(x => x.id === name || x.path === `/${name}` || x.path === name)
  }

  /** the block device of an export name, or undefined when there is no such volume or snapshot */
  device (name: string): BlockDevice | undefined {
    const vol = this.byName(name)
    if (vol == null) {
      const at = name.lastIndexOf('@')
      const v = at > 0 ? this.byName(name.slice(0, at)) : undefined
      const snap = v?.snapshots[name.slice(at + 1)]
      if (v == null || snap == null) return undefined
      return this.build(`${v.id}@${snap.name}`, v, snap.layers ?? [v.id], true)
    }
    let lv = this.live.get(name)
    if (lv == null) {
      lv = new LiveVolume(() => {
        const v = this.byName(name)
        return v == null ? undefined : this.build(v.id, v, layersOf(v), false)
      }, name)
      this.live.set(name, lv)
    }
    return this.writers.handle(vol.id, lv)
  }

  private build (cacheKey: string, v: Volume, layers: string[], readOnly: boolean): ReplicatedVolume {
    const key = `${v.sizeBytes}/${v.replicas}/${v.minReplicas ?? v.replicas}/${v.epoch ?? 1}/${layers.join(',')}`
    const cached = this.devices.get(cacheKey)
    if (cached?.key === key) return cached.dev
    const dev = new ReplicatedVolume({ transport: this.c.transport, holders: this.c.holders, nodes: this.c.nodes }, {
      volume: layers[0]!, under: layers.slice(1), placementKey: placementKeyOf(v), size: v.sizeBytes, replicas: v.replicas, minReplicas: v.minReplicas, epoch: v.epoch ?? 1, readOnly
    })
    this.devices.set(cacheKey, { key, dev })
    return dev
  }
}
