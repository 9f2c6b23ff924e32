// What this node's NBD server exports: every volume of the document by name (its path
// without the leading "/", or its id), and each snapshot read-only as VOL@SNAP. The
// sessions opened at one writer epoch share one LiveVolume, which follows the volume as
// its shape or layers change; each session gets its own writer handle on it, so the
// service knows who writes (writers.ts).
// A session keeps the epoch it opened with (invariant 3): when a new writer (a VM's new
// holder) raises the volume's epoch, the sessions already open here are the previous
// writer's, and must be refused by the replicas, not carried over to the new epoch.
// Sessions opened after the change write with the new one.
// A VM's disk is opened as NAME~EPOCH: pinned to the writer epoch its holder fenced
// here (GvsService.fence), not to whatever the document says now. Two nodes that both
// believe they hold a VM's lease raise the epoch at once, and the document keeps only
// one of their values: each VM must still write with its own holder's epoch, so the
// replicas refuse the loser's (crdt/placement/volume-epoch.ts). A pinned name opens
// only at an epoch this node fenced, or at the volume's current one. The pins are kept
// on disk (pins-file.ts): after an agent restart QEMU reconnects asking for the same
// NAME~EPOCH, which must still open though the document may hold another holder's epoch.
import { snapshotOf, type Volume } from '../../crdt/index.ts'
import type { BlockDevice } from './block-device.ts'
import type { PinsFile } from './pins-file.ts'
import { LiveVolume } from './live-volume.ts'
import { PINNED, pinnedName } from './export-names.ts'
import { ReplicatedVolume } from './replicated-volume.ts'
import { CachedVolume } from './cached-volume.ts'
import type { LocalCaches } from './local-cache.ts'
import type { ReplicaTransport } from './replication.ts'
import { byPath, layersOf, placementKeyOf, snapshotLayers, snapshotSize, splitSnapshotRef } from './volumes.ts'
import type { WriterHandle, Writers } from './writers.ts'
import type { WriteInterval } from './write-intervals.ts'
import type { Logger } from '../log.ts'
import { formatVersion, type ServedCopy } from './versions.ts'
import { RangeLock } from './range-lock.ts'

/** what the devices of a VM disk's one writer epoch share */
interface EpochShared { served: Map<number, ServedCopy>, writing: RangeLock }

/** pinned epochs kept per volume: the newest few of this node's VM starts */
const PINS_KEPT = 4


export interface VolumeExportsComponents {
  transport: ReplicaTransport
  /** where a VM disk's copies found different under one version, and made alike, are said */
  log?: Pick<Logger, 'warn'>
  /** a live node this node cannot reach (ReplicatedVolumeComponents.unreached) */
  unreached?: (node: string) => boolean
  /** since when a node membership holds dead has been silent (ReplicatedVolumeComponents.downSince) */
  downSince?: (node: string) => number | undefined
  holders: (key: string, replicas: number) => string[]
  nodes: () => string[]
  /** changes whenever the live nodes change (SettlerComponents.generation) */
  generation?: () => number
  volumes: () => Volume[]
  /** where the pins are kept across restarts (absent: in memory only) */
  pinsFile?: PinsFile
  /** how long a write or flush waits out replicas out of reach for a moment (ReplicatedVolumeInit.retryMs) */
  retryMs?: number
  /** this node's caches of its VMs' disks (local-cache.ts; absent: none) */
  caches?: LocalCaches
  /** the newest writer epoch this node's store knows for a layer (and those under it) */
  writerFloor?: (layer: string) => Promise<number>
  /** where each volume's writes went, by volume id (write-interval-records.ts; absent: none kept) */
  writeIntervals?: { intervals: (volumeId: string) => WriteInterval[], before: (volumeId: string) => Promise<string>, keyNow: () => string }
  /** a node's name, for errors */
  nameOf?: (node: string) => string
  /** the key a pinned name must carry (pin-keys.ts); absent: none asked (tests) */
  pinKey?: (id: string, epoch: number) => string
}

export class VolumeExports {
  readonly writers: Writers
  private readonly c: VolumeExportsComponents
  /** devices by volume id and epoch (or id@snapshot), rebuilt when the volume's shape or layers change */
  private readonly devices = new Map<string, { key: string, dev: BlockDevice, shared?: EpochShared }>()
  /** what new NBD sessions of a volume get: the LiveVolume of its current epoch */
  private readonly live = new Map<string, { id: string, epoch: number, lv: LiveVolume }>()
  /** per volume id, the writer epochs fenced on this node (newest last, a few kept) */
  private readonly pins = new Map<string, number[]>()
  /** pins an earlier release made ("ID#EPOCH"), whose QEMU asks for NAME~EPOCH with no key: opened without one */
  private readonly keyless = new Set<string>()

  constructor (components: VolumeExportsComponents, writers: Writers) {
    this.c = components
    this.writers = writers
    for (const [id, epochs] of components.pinsFile?.load() ?? []) this.pins.set(id, epochs.slice(-PINS_KEPT))
  }

  /** the pins kept so far were made by a release without keys (this run made the key): their names open without one */
  acceptKeyless (): void {
    for (const [id, epochs] of this.pins) for (const e of epochs) this.keyless.add(`${id}#${e}`)
  }

  /** the export name of the volume's disk pinned here at `epoch` */
  pinnedNameOf (name: string, id: string, epoch: number): string {
    return pinnedName(name, epoch, this.c.pinKey?.(id, epoch))
  }

  /** an export name is a volume's path without the "/" (exportName), or its id; a path wins (no new path has an id's shape) */
  private byName (name: string): Volume | undefined {
    const all = this.c.volumes()
    return byPath(all, `/${name}`) ?? byPath(all, name) ?? all.find(x => x.id === name)
  }

  /** what is cached: devices, LiveVolumes by export name, pinned epochs (bounded by the volumes and their pins) */
  sizes (): { devices: number, live: number, pins: number } {
    let pins = 0
    for (const p of this.pins.values()) pins += p.length
    return { devices: this.devices.size, live: this.live.size, pins }
  }

  /**
   * The volume's writer epoch was fenced here: NAME~EPOCH opens at it, after a restart
   * too. Resolves once the pins are on disk (the VM starts only then); rejects when
   * they cannot be written.
   */
  async pin (volumeId: string, epoch: number): Promise<void> {
    const before = this.pins.get(volumeId)
    const held = (before ?? []).filter(e => e !== epoch)
    held.push(epoch)
    this.pins.set(volumeId, held.slice(-PINS_KEPT))
    const dropped = this.prune()
    if (dropped || before?.join() !== this.pins.get(volumeId)!.join()) await this.c.pinsFile?.save(this.pins)
  }

  /**
   * Drops what no new session will open: the caches of volumes gone from the document,
   * pinned names at epochs no longer kept, and devices of epochs that are neither the
   * volume's current one, one of its pins, nor `keep` (a switch under way). A session
   * still on a dropped one keeps its LiveVolume, which builds a fresh device when it
   * next needs one (the replicas refuse its writes just the same). Whether it dropped
   * the pins of a volume gone (the file then has to follow).
   */
  private prune (keep?: { id: string, epoch: number }): boolean {
    const vols = new Map(this.c.volumes().map(v => [v.id, v]))
    let dropped = false
    for (const id of this.pins.keys()) if (!vols.has(id)) { this.pins.delete(id); dropped = true }
    for (const [name, entry] of this.live) {
      const m = PINNED.exec(name)
      const v = this.byName(m?.[1] ?? name)
      if (v == null || v.id !== entry.id || (m != null && this.pins.get(v.id)?.includes(Number(m[2])) !== true)) this.live.delete(name)
    }
    for (const k of this.devices.keys()) {
      const cut = k.search(/[#@]/)
      const id = cut < 0 ? k : k.slice(0, cut)
      const v = vols.get(id)
      if (v == null) { this.devices.delete(k); continue }
      if (k[cut] !== '#') continue
      const e = Number(k.slice(cut + 1))
      if (e !== (v.epoch ?? 1) && !(keep?.id === id && keep.epoch === e) && this.pins.get(id)?.includes(e) !== true) this.devices.delete(k)
    }
    // a cache lives as long as its epoch's device: a session still on a dropped one reads through to the replicas
    this.c.caches?.retain(new Set([...this.devices.keys()].filter(k => k.includes('#'))), new Set(vols.keys()))
    return dropped
  }

  /** another node is about to write the volume (a claim this node does not refuse): its caches here are emptied */
  emptyCaches (id: string): void { this.c.caches?.empty(id) }

  /** a writer was fenced in at `epoch`: this node's caches of older epochs go, for good */
  fenceCaches (id: string, epoch: number): void { this.c.caches?.fence(id, epoch) }

  /** drops what belongs to volumes gone from the document (their devices, caches and pins) */
  forgetGone (): void { this.pruneAndSave() }

  /** prune, and the pins file follows if it dropped pins (a failed write is only reported: nothing waits for it) */
  private pruneAndSave (keep?: { id: string, epoch: number }): void {
    if (this.prune(keep)) void this.c.pinsFile?.save(this.pins).catch(() => {})
  }

  /** the block device of an export name, or undefined when there is no such volume or snapshot */
  device (name: string): BlockDevice | undefined {
    const pinned = PINNED.exec(name)
    if (pinned != null) return this.pinnedDevice(name, pinned[1]!, Number(pinned[2]), pinned[3])
    const vol = this.byName(name)
    if (vol == null) {
      const ref = splitSnapshotRef(name)
      const v = ref == null ? undefined : this.byName(ref.volume)
      const snap = v == null || ref == null ? undefined : snapshotOf(v, ref.snapshot)
      if (v == null || snap == null) return undefined
      // by volume id and snapshot name, as a volume's sessions follow their volume: a
      // kept snapshot's layers change when a deleted one's is folded away, and a session
      // of a deleted snapshot fails, its layers being freed, not read as other bytes
      const id = v.id
      const at = snap.name
      return new LiveVolume(() => {
        const cur = this.c.volumes().find(x => x.id === id)
        const s = cur == null ? undefined : snapshotOf(cur, at)
        return cur == null || s == null ? undefined : this.build(`${id}@${at}`, cur, snapshotLayers(cur, s), true, cur.epoch ?? 1, snapshotSize(cur, s))
      }, name)
    }
    const epoch = vol.epoch ?? 1
    let entry = this.live.get(name)
    if (entry?.epoch !== epoch || entry.id !== vol.id) {
      // sessions of an earlier epoch, or of a volume the name no longer names, keep their
      // LiveVolume (and its device); new ones get this
      const previous = entry?.id === vol.id ? entry.epoch : undefined
      this.live.set(name, entry = { id: vol.id, epoch, lv: this.liveAt(name, vol.id, epoch) })
      // a session's open does not wait for the file
      this.pruneAndSave(previous == null ? undefined : { id: vol.id, epoch: previous })
    }
    return this.writers.handle(vol.id, entry.lv, { exclusive: true, epoch: entry.epoch, claimed: h => this.claimedAt(name, vol.id, h) })
  }

  /**
   * A plain session's writes once it claimed the volume: at its claim's writer epoch
   * (writers.ts ClaimEpochs), following it to the next claim's (the writes before are
   * flushed first, as at any switch: live-volume.ts).
   */
  private claimedAt (name: string, id: string, h: WriterHandle): LiveVolume {
    // used once the session has a claim epoch (WriterHandle.writer)
    return this.liveAt(name, id, () => h.claimEpoch ?? 1)
  }

  private pinnedDevice (name: string, base: string, epoch: number, key: string | undefined): BlockDevice | undefined {
    const vol = this.byName(base)
    if (vol == null || !Number.isSafeInteger(epoch)) return undefined
    if (epoch !== (vol.epoch ?? 1) && this.pins.get(vol.id)?.includes(epoch) !== true) return undefined
    // a VM's disk where its holder fenced it in, named with its key; the current epoch
    // opened elsewhere, or without the key, is a plain writer, which claims the volume
    // first like any other (refused while a VM uses it)
    const keyed = this.c.pinKey == null || (key == null ? this.keyless.has(`${vol.id}#${epoch}`) : key === this.c.pinKey(vol.id, epoch))
    // cached under the name as it is meant (the epoch as a number, the key only when it is
    // the key): a client asking with a new wrong key, or "~01", each time added an entry
    // that a pinned epoch kept for good (a reviewer's 50,000 names: 43 MB)
    const canonical = `${base}~${epoch}${keyed && key != null ? `~${key}` : ''}`
    let entry = this.live.get(canonical)
    if (entry?.id !== vol.id) this.live.set(canonical, entry = { id: vol.id, epoch, lv: this.liveAt(name, vol.id, epoch) })
    const here = keyed && this.pins.get(vol.id)?.includes(epoch) === true
    return this.writers.handle(vol.id, entry.lv, here ? { epoch } : { exclusive: true, epoch, claimed: h => this.claimedAt(name, vol.id, h) })
  }

  /**
   * What sessions of export `name` write through: volume `id`, at `epoch`, following its
   * shape, layers and path. By id, not by name: a session opened on a volume stays on it
   * when it is renamed, and fails (the volume "no longer exists") when it is destroyed,
   * never reaching another volume made at its old path.
   */
  private liveAt (name: string, id: string, epoch: number | (() => number)): LiveVolume {
    return new LiveVolume(() => {
      const v = this.c.volumes().find(x => x.id === id)
      const e = typeof epoch === 'number' ? epoch : epoch()
      return v == null ? undefined : this.build(`${v.id}#${e}`, v, layersOf(v), false, e)
    }, name)
  }

  private build (cacheKey: string, v: Volume, layers: string[], readOnly: boolean, epoch = v.epoch ?? 1, size = v.sizeBytes): BlockDevice {
    const key = `${size}/${v.replicas}/${v.minReplicas ?? v.replicas}/${epoch}/${layers.join(',')}`
    const cached = this.devices.get(cacheKey)
    if (cached?.key === key) return cached.dev
    const id = v.id
    const wi = this.c.writeIntervals
    // a VM's disk (`id#epoch`, an epoch this node fenced in for it) has this device for
    // its sole writer: its first look at each object makes copies of one version alike
    const vmEpoch = this.pins.get(v.id)?.includes(epoch) === true
    // kept across the devices of one epoch (a resize builds a new one, while writes on the
    // old one may still be in flight from another session): which copies reads were served
    // from, and the writes in flight, which a settle's comparison of copies waits for
    const shared = vmEpoch ? cached?.shared ?? { served: new Map<number, ServedCopy>(), writing: new RangeLock() } : undefined
    const log = this.c.log
    const replicated = new ReplicatedVolume({
      transport: this.c.transport,
      holders: this.c.holders,
      nodes: this.c.nodes,
      generation: this.c.generation,
      nameOf: this.c.nameOf,
      unreached: this.c.unreached,
      downSince: this.c.downSince,
      onDiverged: d => log?.warn(`copies of object ${d.index} of volume layer ${d.layer} at version ${formatVersion(d.version)} held different data (a writer that ended with writes to it in flight: one that not every holder took was never acknowledged): made alike from ${this.c.nameOf?.(d.kept) ?? d.kept}'s`, { volume: v.path, replaced: d.replaced.map(n => this.c.nameOf?.(n) ?? n).join(', ') }),
      ...(shared ?? {}),
      ...(wi == null ? {} : { intervals: () => wi.intervals(id), beforeWrite: async () => await wi.before(id), intervalNow: () => wi.keyNow() })
    }, {
      volume: layers[0]!, under: layers.slice(1), placementKey: placementKeyOf(v), size, replicas: v.replicas, minReplicas: v.minReplicas, epoch, readOnly, retryMs: this.c.retryMs, compareCopies: vmEpoch
    })
    // a VM's disk is cached on its holder's node (`id#epoch`, an epoch this node fenced
    // in for it; kept across its snapshots and resizes, which change no byte it reads);
    // a plain export or a snapshot is not
    const cache = readOnly || !vmEpoch ? null : this.c.caches?.of(v.id, epoch) ?? null
    const top = layers[0]!
    const dev = cache == null
      ? replicated
      : new CachedVolume({
        generation: this.c.generation,
        holds: () => this.writers.holds(id, epoch),
        floor: this.c.writerFloor == null ? undefined : async () => await this.c.writerFloor!(top),
        fencedOut: newer => { this.c.caches?.fence(id, newer) }
      }, replicated, cache)
    this.devices.set(cacheKey, { key, dev, ...(shared != null ? { shared } : {}) })
    return dev
  }
}
