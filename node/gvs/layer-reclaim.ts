// Layers nothing needs apart any more are given back. A snapshot freezes its volume's
// layers and the volume writes on in a new top layer, so each snapshot kept adds a
// layer, and a deleted one leaves its layer behind: the snapshots above it read
// through it. Such a layer T is folded into the frozen layer U above it: every object
// of T that U lacks is copied into U on each of its holders (a local copy there, same
// placement), after which reading U alone gives what reading U then T gave, T is left
// out of every stack (the volumes' `merged` maps: crdt/writer.ts mergeLayer), and each
// node frees T's objects once it has seen nothing read T for a while.
//
// `planMerges` decides (pure), `LayerReclaim` does it in the background pass.
import type { Volume, Writer } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'
import { objectKey } from './placement.ts'
import type { ReplicaTransport } from './replication.ts'
import type { Repairer } from './repair.ts'
import { MAX_LAYERS, layerNumber, layersOf, placementKeyOf, referencedLayers, snapshotLayers } from './volumes.ts'
import type { ObjectStore } from './object-store.ts'
import { UnreadLayers } from './unread-layers.ts'
import { UnseenWrites, type KeysWrittenSince } from './unseen-writes.ts'
import { foldRoomShort, type NodeRoom } from './fold-room.ts'
import { join } from 'node:path'

export interface LayerMerge {
  /** the layer given back */
  layer: string
  /** the frozen layer directly above it in every stack that reads it */
  into: string
  /** the volumes whose stacks (their own or their snapshots') read it */
  volumes: string[]
  placementKey: string
  replicas: number
  /** the largest size of those volumes, in bytes */
  sizeBytes: number
}

/**
 * The layers that can be folded into the layer above them now. A layer T qualifies when
 * - no volume writes to it and no snapshot reads from it first (it tops no stack);
 * - in every stack that reads it, the same layer U is directly above it, and U is
 *   frozen (no volume's top: a copy into a layer a writer copies up into would race it);
 * - U itself does not qualify (one fold per chain per plan: T's objects must not be
 *   copied into a layer that is being folded away itself; `fold` plans again after each).
 * Pure: every node computes the same from the same document.
 */
export function planMerges (volumes: readonly Volume[]): LayerMerge[] {
  const tops = new Set<string>()
  const writable = new Set<string>()
  /** layer -> the layers seen directly above it, and the volumes whose stacks read it */
  const above = new Map<string, { over: Set<string>, volumes: Volume[] }>()
  for (const v of volumes) {
    const stacks = [layersOf(v), ...Object.values(v.snapshots).map(s => snapshotLayers(v, s))]
    writable.add(stacks[0]![0]!)
    for (const stack of stacks) {
      tops.add(stack[0]!)
      for (let i = 1; i < stack.length; i++) {
        const a = above.get(stack[i]!) ?? { over: new Set<string>(), volumes: [] }
        a.over.add(stack[i - 1]!)
        if (!a.volumes.includes(v)) a.volumes.push(v)
        above.set(stack[i]!, a)
      }
    }
  }
  const candidates = new Map<string, string>()
  for (const [layer, a] of above) {
    if (tops.has(layer) || a.over.size !== 1) continue
    const into = [...a.over][0]!
    if (!writable.has(into)) candidates.set(layer, into)
  }
  const out: LayerMerge[] = []
  for (const [layer, into] of candidates) {
    if (candidates.has(into)) continue
    const vs = above.get(layer)!.volumes
    out.push({ layer, into, volumes: vs.map(v => v.id).sort(), placementKey: placementKeyOf(vs[0]!), replicas: Math.max(...vs.map(v => v.replicas)), sizeBytes: Math.max(...vs.map(v => v.sizeBytes)) })
  }
  return out.sort((a, b) => a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0)
}

/**
 * How many layers of each volume's stacks wait to be folded away (vol info): the folds
 * planMerges makes, one after another (it plans one of each run of deleted snapshots'
 * layers at a time), those a fold waits on (a member down) included.
 */
export function waitingLayers (volumes: readonly Volume[]): Map<string, number> {
  return new Map([...foldingLayers(volumes)].map(([id, layers]) => [id, layers.size]))
}

/** The layers of each volume's stacks that wait to be folded away (see waitingLayers). */
export function foldingLayers (volumes: readonly Volume[]): Map<string, Set<string>> {
  const out = new Map(volumes.map(v => [v.id, new Set<string>()]))
  let vols = [...volumes]
  for (let round = 0; round < MAX_LAYERS; round++) {
    const plan = planMerges(vols)
    if (plan.length === 0) break
    const folds = new Map<string, Array<[string, string]>>()
    for (const m of plan) {
      for (const id of m.volumes) {
        out.get(id)?.add(m.layer)
        folds.set(id, [...folds.get(id) ?? [], [m.layer, m.into]])
      }
    }
    vols = vols.map(v => folds.has(v.id) ? { ...v, merged: { ...v.merged, ...Object.fromEntries(folds.get(v.id)!) } } : v)
  }
  return out
}

/**
 * What the layers under a volume's top are there for (vol info), each counted once, in
 * this order: its snapshots' (one each), deleted snapshots' waiting to be folded away,
 * those of the snapshot it was cloned from (its source's), those a clone of a deleted
 * snapshot reads (folding one would change what the clone reads), and the rest: a
 * deleted snapshot's layer right under the top, which the writer copies up from, folded
 * once the next snapshot freezes the top (planMerges).
 */
export interface LayerUses { snapshots: number, folding: number, source: number, clones: number, untilNextSnapshot: number }

export function layerUses (v: Volume, readers: LayerReaders, folding: ReadonlySet<string>): LayerUses {
  const snapshotTops = new Set(Object.values(v.snapshots).map(s => snapshotLayers(v, s)[0]))
  const out: LayerUses = { snapshots: 0, folding: 0, source: 0, clones: 0, untilNextSnapshot: 0 }
  for (const l of layersOf(v).slice(1)) {
    if (snapshotTops.has(l)) out.snapshots++
    else if (folding.has(l)) out.folding++
    else if (layerNumber(l).base !== v.id) out.source++
    else if ([...readers.get(l) ?? []].some(id => id !== v.id)) out.clones++
    else out.untilNextSnapshot++
  }
  return out
}

/** layer -> the volumes whose stacks read it under their top (layerUses; made once for many volumes) */
export type LayerReaders = ReadonlyMap<string, ReadonlySet<string>>

export function layerReaders (volumes: readonly Volume[]): LayerReaders {
  const out = new Map<string, Set<string>>()
  for (const v of volumes) {
    for (const l of layersOf(v).slice(1)) {
      let s = out.get(l)
      if (s == null) out.set(l, s = new Set())
      s.add(v.id)
    }
  }
  return out
}

/**
 * Leaves the layer out of every stack that reads it, if the document as the write
 * finds it still allows the fold (a clone made meanwhile may read it under its own
 * top). False when it does not: nothing is written.
 */
export function dropMerged (w: Writer, m: Pick<LayerMerge, 'layer' | 'into'>): boolean {
  const now = planMerges(w.reader.list('volumes')).find(x => x.layer === m.layer)
  if (now?.into !== m.into) return false
  for (const id of now.volumes) w.mergeLayer(id, m.layer, m.into)
  return true
}

export interface LayerReclaimComponents {
  self: string
  log: Logger
  store: ObjectStore
  transport: ReplicaTransport
  holders: (key: string, replicas: number) => string[]
  /** the live members with disk */
  live: () => Set<string>
  /**
   * Why nothing may be freed or folded now (null: it may): a member of the grid's roll
   * or of this node's member table not alive (a fold waits for a whole grid; a dead
   * member taken off the roll, `vgrid node forget`, does not count), or changes
   * a member announced not here yet (a clone it made may read a layer this document no
   * longer reads). Absent: always.
   */
  mayFree?: () => string | null
  /** the repairer of one layer placed like `m` (also what takes its inventory) */
  repairer: (m: LayerMerge, layer: string) => Repairer
  /** the coordinator of a name over the live nodes (health.ts coordinatorOf): a volume's folds are its placement key's */
  coordinatorOf: (name: string, live: Iterable<string>) => string | null
  write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
  running: () => boolean
  /** the document's heads now (recorded with the layers it reads: unread-layers.ts); absent: none */
  heads?: () => string[]
  /** whether the document holds every change these heads name; absent: no */
  hasHeads?: (heads: readonly string[]) => boolean
  /** which of `keys` a change since `heads` wrote, and up to which heads it looked (null: not known); absent: none */
  keysWrittenSince?: KeysWrittenSince
  /** a node's free and whole disk, as its advert says (null: not known): a fold waits for room on its holders (fold-room.ts) */
  room?: (node: string) => NodeRoom | null
  /** a node's name, for what a wait says */
  nameOf?: (node: string) => string
}

export interface LayerReclaimInit {
  /** how long a layer nothing reads stays on disk before it is freed (in-flight I/O may still name it); default 20 s */
  freeAfterMs?: number
}

export class LayerReclaim {
  private readonly c: LayerReclaimComponents
  private readonly freeAfterMs: number
  /** layers this node has seen the document read: only these are freed when nothing does */
  private readonly seen = new Set<string>()
  /** since when (monotonic) each seen layer has been read by nothing */
  private readonly unreadSince = new Map<string, number>()
  /** the layers the newest document this node looked at reads (note, free) */
  private lastRead: ReadonlySet<string> = new Set()
  /** the document's heads when `lastRead` was taken: a version that holds the one it was read from */
  private lastHeads: readonly string[] = []
  /** the layers this store had copies or epochs of at the last listing (less those freed since) */
  private held = new Set<string>()
  /**
   * the layers the store named since the last listing began: copies of them may have
   * come since, unlisted (bb39: a volume made and destroyed between two passes, then a
   * restart: its copies were in neither list of the record, and stayed for good). Not
   * every layer the document reads: the record would name the whole grid's, written
   * again at each one made anywhere (rv42).
   */
  private touchedSinceListing = new Set<string>()
  /** what the last note took of the store's touched layers */
  private justTaken: ReadonlySet<string> = new Set()
  /** layers the store named before their volume reached this node (unseen-writes.ts) */
  private readonly unseenWrites = new UnseenWrites()
  /** the seen layers nothing reads, not freed yet: on disk, for a restart (unread-layers.ts) */
  private readonly record: UnreadLayers
  /** the record is loaded (and its directory there) */
  private recording = false
  /** why the last pass freed nothing (logged once per reason) */
  private waitLogged: string | null = null
  /** why this node's last fold of a layer (by name) waited: for vol info (waitOf) */
  private readonly waits = new Map<string, string>()

  constructor (components: LayerReclaimComponents, init: LayerReclaimInit = {}) {
    this.c = components
    this.freeAfterMs = init.freeAfterMs ?? 20_000
    this.record = new UnreadLayers(join(components.store.dir, 'unread-layers.json'), components.log)
  }

  /**
   * Takes in the layers an earlier run saw the document stop reading and did not free
   * (the store started: the record is written from here on), and records what the
   * document (`volumes`, now) no longer reads of what this run has seen.
   */
  async load (volumes: () => readonly Volume[]): Promise<void> {
    const rec = await this.record.load()
    this.held = new Set(await this.c.store.layers())
    for (const l of rec.unread) this.seen.add(l)
    // the layers held here that a version of the document read, which the document now
    // holds: any of them it reads no more was let go by a change it holds (a destroy or
    // fold that reached this disk before this node saw it: bb26). A document without that
    // version (lost, older) tells nothing of them: they stay unseen. The heads are asked
    // of the document the volumes are then read from, in the same turn (rv31: a sync
    // during the awaits above made an older list's layers count as seen and unread).
    const now = volumes()
    if (rec.heads.length > 0 && this.c.hasHeads?.(rec.heads) === true) for (const l of rec.read) this.seen.add(l)
    this.noteRead(now)
    this.recording = true
    await this.keepRecord()
  }

  /** the layers `volumes` read are seen, and the newest read */
  private noteRead (volumes: readonly Volume[]): ReadonlySet<string> {
    const read = referencedLayers(volumes)
    for (const l of read) this.seen.add(l)
    // the store's touches taken now came after the last note, whose heads are older than them
    const before = this.lastHeads
    this.lastRead = read
    this.lastHeads = this.c.heads?.() ?? []
    this.justTaken = this.c.store.takeTouched()
    for (const l of this.justTaken) {
      this.touchedSinceListing.add(l)
      if (!this.seen.has(l)) this.unseenWrites.add(l, before)
    }
    return read
  }

  /**
   * Records the seen layers held here that the newest document read does not read (only
   * the newest: a set of a pass begun earlier would miss a layer made since, and name it)
   */
  private async keepRecord (): Promise<void> {
    if (!this.recording) return
    // held, or maybe held: named in the record whether or not copies came (a name with
    // none here frees nothing, and the next run's record leaves it out)
    const here = [...new Set([...this.held, ...this.touchedSinceListing])]
    await this.record.keep({
      unread: new Set(here.filter(l => this.seen.has(l) && !this.lastRead.has(l))),
      read: new Set(here.filter(l => this.lastRead.has(l))),
      heads: this.lastHeads
    })
  }

  /** once the record's writes under way are on disk (the service's stop) */
  async settled (): Promise<void> { await this.record.settled() }

  /**
   * The layers the document reads now count as seen. Called at start with the document
   * as loaded from this node's disk, before peers sync it: a volume destroyed while
   * this node was down is named there, so its copies here are freed once the sync
   * brings the destroy. The seen layers the document reads no more are recorded on disk
   * (unread-layers.ts), those it reads never: a node restarted on an empty or older
   * document (its state lost, no peer reachable yet) would take every layer it holds
   * for destroyed.
   */
  note (volumes: readonly Volume[]): void {
    this.noteRead(volumes)
    void this.keepRecord()
  }

  /**
   * Frees this node's copies of the layers it saw the document read and that nothing
   * has read for `freeAfterMs` (a destroyed volume's, a folded layer's). A layer this
   * node never saw may be new and not yet synced here: kept.
   */
  async free (volumes: readonly Volume[], now = performance.now()): Promise<string[]> {
    const read = this.noteRead(volumes)
    if (this.c.keysWrittenSince != null) {
      for (const l of this.unseenWrites.madeAndDestroyed(volumes, this.seen, this.c.keysWrittenSince)) {
        this.seen.add(l)
        this.c.log.info('a layer written here before this node\'s document had its volume, which was made and destroyed since: freed once nothing reads it', { layer: l })
      }
    }
    for (const l of read) this.unreadSince.delete(l)
    const freed: string[] = []
    // what the store names from here on may come after the listing, and what it named
    // just before (taken by the note above) may not be on disk yet: kept (rv43)
    this.touchedSinceListing = new Set(this.justTaken)
    const listed = await this.c.store.layers()
    this.held = new Set(listed)
    // the layers still count their time unread meanwhile; none goes, no line's floor either
    const wait = this.c.mayFree?.() ?? null
    if (wait != null && this.waitLogged !== wait) this.c.log.info('layers nothing reads here wait to be freed, and deleted snapshots\' layers to be folded', { why: wait })
    if (wait == null && this.waitLogged != null) this.c.log.info('layers nothing reads may be freed, and deleted snapshots\' layers folded, again', { waited: this.waitLogged })
    this.waitLogged = wait
    for (const name of listed) {
      // the newest document read counts (a note may have come during this pass's awaits)
      if (this.lastRead.has(name) || !this.seen.has(name)) continue
      const since = this.unreadSince.get(name) ?? now
      this.unreadSince.set(name, since)
      if (now - since < this.freeAfterMs || wait != null) continue
      this.c.log.info('freeing the objects of a layer nothing reads any more (a destroyed volume, or a folded snapshot layer)', { layer: name })
      await this.c.store.removeVolume(name)
      this.unreadSince.delete(name)
      this.held.delete(name)
      freed.push(name)
    }
    // a layer still read whose copies all moved away leaves no empty directory here
    for (const name of listed) if (this.lastRead.has(name)) await this.c.store.dropIfEmpty(name)
    await this.keepRecord()
    // a line the document reads no layer of any more (its volume destroyed) leaves no
    // writer epoch behind: its floor goes, here once every layer of it freed here is
    const readLines = new Set([...this.lastRead].map(l => layerNumber(l).base))
    const seenLines = new Set([...this.seen].map(l => layerNumber(l).base))
    const heldLines = new Set([...this.held].map(l => layerNumber(l).base))
    if (wait != null) return freed
    for (const base of await this.c.store.epochFloors()) {
      if (!readLines.has(base) && seenLines.has(base) && !heldLines.has(base)) await this.c.store.forgetLine(base)
    }
    return freed
  }

  /**
   * Why this node's last fold of one of the volume's deleted snapshots' layers waited,
   * or null (none did, or another node folds them)
   */
  waitOf (v: Volume): string | null {
    const stacks = [layersOf(v), ...Object.values(v.snapshots).map(s => snapshotLayers(v, s))]
    for (const stack of stacks) for (const l of stack) { const w = this.waits.get(l); if (w != null) return w }
    return null
  }

  /**
   * Folds the layers this node coordinates: those of the volumes whose placement key
   * (their root volume's id, shared by its clones) hashes to it, so one node walks a
   * volume's whole chain, planning again after each fold (the next layer down may fold
   * into the one just folded into) until nothing is left or `maxFolds` were made. A
   * fold that fails waits for the next pass (`volumes`: the document now, read again
   * after each fold).
   */
  async fold (volumes: () => readonly Volume[], maxFolds = 256): Promise<number> {
    let n = 0
    const failed = new Set<string>()
    // the waits of folds no longer planned (folded elsewhere, their volume gone) go
    const planned = new Set(planMerges(volumes()).map(m => m.layer))
    for (const l of [...this.waits.keys()]) if (!planned.has(l)) this.waits.delete(l)
    // a fold the document changed under (a snapshot deleted above it meanwhile) is planned again, a bounded number of times
    for (let tries = 0; n < maxFolds && tries < 2 * maxFolds && this.c.running() && (this.c.mayFree?.() ?? null) == null; tries++) {
      const live = this.c.live()
      const m = planMerges(volumes()).find(x => !failed.has(x.layer) && this.c.coordinatorOf(x.placementKey, live) === this.c.self)
      if (m == null) break
      try {
        const r = await this.foldOne(m, volumes)
        if (r === 'folded') { n++; this.waits.delete(m.layer) } else if (typeof r === 'object') { failed.add(m.layer); this.waits.set(m.layer, r.wait) }
      } catch (err) {
        failed.add(m.layer)
        this.waits.set(m.layer, `folding it failed (${(err as Error).message}); the next background pass tries again`)
        this.c.log.warn('folding a deleted snapshot\'s layer failed; the next pass tries again', { layer: m.layer, into: m.into, error: (err as Error).message })
      }
    }
    return n
  }

  /**
   * One fold: both layers complete on their holders first (every live node listed its
   * copies, and each object of either has its newest copy on all its holders by this
   * node's placement now; if not, the volume's repair makes it so and the next pass
   * folds), then each object of T that U lacks everywhere is copied into U on each
   * holder, T's writer epoch is carried to U on every live node (the epoch walk of a
   * writer, epochs.ts, would lose it with T's files), and only then is T left out of
   * the stacks.
   */
  private async foldOne (m: LayerMerge, volumes: () => readonly Volume[]): Promise<'folded' | 'replan' | { wait: string }> {
    const [under, over] = await Promise.all([this.c.repairer(m, m.layer).inventory(), this.c.repairer(m, m.into).inventory()])
    if (under.errors.length > 0 || over.errors.length > 0) {
      this.c.log.debug('a live node did not list a layer to fold: the next pass tries again', { layer: m.layer, errors: [...under.errors, ...over.errors].slice(0, 3) })
      return { wait: `a live node did not list its copies of the layers (${[...under.errors, ...over.errors][0]!}); the next background pass tries again` }
    }
    for (const [layer, inv] of [[m.layer, under.inventory], [m.into, over.inventory]] as const) {
      const short = [...inv].filter(([index, nodes]) => !this.c.holders(objectKey(m.placementKey, index), m.replicas).every(h => nodes.includes(h))).length
      if (short > 0) {
        this.c.log.debug('a layer to fold is not complete on its holders yet: its repair comes first', { layer, short })
        return { wait: `${short} object(s) of layer ${layer} are not on all their holders yet: the volume's repair comes first` }
      }
    }
    // room for the copies on every holder first: a fold into a full disk filled it (bb33)
    const copies = [...under.inventory.keys()].filter(i => !over.inventory.has(i))
    const noRoom = this.c.room == null ? null : foldRoomShort(copies, i => this.c.holders(objectKey(m.placementKey, i), m.replicas), this.c.store.objectSize, this.c.room, this.c.nameOf)
    if (noRoom != null) return { wait: noRoom }
    // a copy on each holder's own disk (no network): an object at a time, its holders at once
    for (const index of [...under.inventory.keys()].sort((a, b) => a - b)) {
      // U has its own copy of it (complete on its holders, checked above): T's is hidden
      if (over.inventory.has(index)) continue
      if (!this.c.running()) return { wait: 'the volume store stopped' }
      // its volumes removed meanwhile (vol rm): no copy into a layer being freed
      if (!stillRead(volumes(), m)) return 'replan'
      await Promise.all(this.c.holders(objectKey(m.placementKey, index), m.replicas).map(async node => {
        const r = await this.c.transport.call(node, { op: 'merge', volume: m.into, from: m.layer, index })
        if (r.reply.present !== true) throw new Error(`${node} has no copy of object ${index} of ${m.layer} to fold`)
      }))
    }
    // every live node: T's epoch taught to U, and U's copies made above on stable storage
    // (one flush each, before anything lets T go); not for a layer being freed
    if (!stillRead(volumes(), m)) return 'replan'
    await Promise.all([...this.c.live()].map(async node => await this.c.transport.call(node, { op: 'merge', volume: m.into, from: m.layer })))
    // the document as the write finds it may no longer allow it (a snapshot deleted or a
    // clone made meanwhile): the copies into U were harmless, and the layers are planned again
    const dropped = await this.c.write(w => dropMerged(w, m), `volume layer ${m.layer} folded into ${m.into}`)
    if (dropped) this.c.log.info('folded a deleted snapshot\'s layer into the one above it', { layer: m.layer, into: m.into, volumes: m.volumes })
    return dropped ? 'folded' : 'replan'
  }
}

/** whether a volume the fold is for is still in the document */
function stillRead (volumes: readonly Volume[], m: LayerMerge): boolean {
  return volumes.some(v => m.volumes.includes(v.id))
}
