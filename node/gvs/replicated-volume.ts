// A volume whose objects live on R nodes each, reachable from any node: the
// BlockDevice the NBD server serves for a replicated volume.
// - a write is acknowledged only once every holder of each object it touches has
//   written it; with FUA, once every holder has it on stable storage;
// - a flush is acknowledged once every node written to since the last flush has
//   flushed, and objects whose written node died since are on their live holders and
//   flushed there (so a flushed write survives the loss of any R-1 holders, invariant 4);
// - reads go to the local replica first, then the others in placement order; a damaged
//   or unreachable replica is skipped (and the damage reported by its store);
// - every write carries the writer's epoch, checked by each replica (invariant 3).
// - an object whose placement moved (a node died or joined) is first copied to its new
//   holders from wherever a copy is, before they serve a read or take a write: no
//   write is lost across the move and a new holder never answers with zeros it lacks
//   (settler.ts);
// Too few holders (fewer than minReplicas live nodes) fails the write with a clear
// 'unavailable' error instead of taking it with fewer copies than promised. Where the
// writes went is recorded before the first write in each placement generation, and a
// read or settle of an object must hear from one of its holders in each
// (write-intervals.ts).
import { GvsError, isGvsError, sinceOfAll, untilOfAll } from './errors.ts'
import { checkRange, pieces, type BlockDevice, type Piece } from './block-device.ts'
import type { ReplicaTransport } from './replication.ts'
import { OBJECT_SIZE, objectKey } from './placement.ts'
import { RangeLock } from './range-lock.ts'
import type { ReplicaRequest } from './replica-protocol.ts'
import { planSettle, unifyPlan } from './versions.ts'
import { Settler, type SettlerComponents } from './settler.ts'
import { unheard, unheardError, type WriteInterval } from './write-intervals.ts'
import { addTo, eachLimited, planFlush, UnflushedWrites } from './unflushed-writes.ts'
import { retryTransient } from './transient-retry.ts'

export interface ReplicatedVolumeComponents {
  transport: ReplicaTransport
  /** the object's holders now, best first: placement over the live nodes */
  holders: (key: string, replicas: number) => string[]
  /** the live nodes, where a moved object's old copies may be; default: none beyond the holders */
  nodes?: () => string[]
  /** changes whenever the live nodes change (SettlerComponents.generation) */
  generation?: () => number
  /**
   * before a write: resolves once the placement it writes under is recorded where a
   * majority holds it (write-interval-records.ts), to a token of what was recorded (the
   * interval's key); a write whose placement's token (`intervalNow`) is another by then
   * records again first. Absent: not recorded
   */
  beforeWrite?: () => Promise<string | number | undefined>
  /** the token of the placement writes go to now (default: the placement generation) */
  intervalNow?: () => string | number
  /** the volume's write intervals in force (SettlerComponents.intervals) */
  intervals?: () => WriteInterval[]
  /** a node's name, for errors */
  nameOf?: (node: string) => string
  /** a live node this node cannot reach, though membership holds it alive (peer-reach.ts) */
  unreached?: (node: string) => boolean
  /** since when a node membership holds dead has been silent (ms since the epoch: its last sign of life); undefined for a live one or one not known */
  downSince?: (node: string) => number | undefined
  /** copies of one version that held different data, made alike (compareCopies) */
  onDiverged?: SettlerComponents['onDiverged']
  /** the copies reads were served from (SettlerComponents.served), kept across devices of one writer epoch */
  served?: SettlerComponents['served']
  /** writes in flight, by object and byte range: shared by the devices of one writer epoch (default: this device's own) */
  writing?: RangeLock
}

export interface ReplicatedVolumeInit {
  /** the store name of the volume's objects (its id) */
  volume: string
  size: number
  replicas: number
  /** writes fail below this many holders (Ceph's min_size); default = replicas */
  minReplicas?: number
  epoch: number
  readOnly?: boolean
  objectSize?: number
  /** frozen layers under this volume's objects, top first (snapshots, a clone's parent) */
  under?: string[]
  /** the name objects are placed by: the root of the layer stack, so all layers of an object share holders */
  placementKey?: string
  /** how long a write or flush is tried again while replicas are out of reach for a moment (default 0: it fails at once) */
  retryMs?: number
  /** this device is the volume's sole writer, at an epoch fenced in for it alone (SettlerInit.compareCopies) */
  compareCopies?: boolean
}

/** records of where a write goes made again, the live nodes having changed meanwhile, before the write fails as a moment's failure */
const MAX_RERECORDS = 5

/** object settles a flush runs at once for writes of an earlier placement generation */
const ORPHAN_SETTLES = 8

/** shared by the pieces of one request: set once one failed for good */
interface Stop { failed: Error | null }

export class ReplicatedVolume implements BlockDevice {
  readonly size: number
  readonly readOnly: boolean
  private readonly c: ReplicatedVolumeComponents
  private readonly init: Required<Omit<ReplicatedVolumeInit, 'readOnly' | 'under' | 'placementKey' | 'retryMs' | 'compareCopies'>>
  private readonly under: string[] | undefined
  private readonly pkey: string
  private readonly retryMs: number
  /** nodes written to since their last flush, and what (unflushed-writes.ts) */
  private readonly unflushed = new UnflushedWrites()
  private flushedOnce = false
  /** writes in flight, by object and byte range */
  private readonly writing: RangeLock
  /** which objects are complete on their holders, suspects, this writer's sequence numbers */
  private readonly settler: Settler
  /** the flush in progress (with those it overlapped): a later one is answered after it */
  private flushing: Promise<void> | null = null

  constructor (components: ReplicatedVolumeComponents, init: ReplicatedVolumeInit) {
    this.c = components
    this.writing = components.writing ?? new RangeLock()
    this.size = init.size
    this.readOnly = init.readOnly === true
    const minReplicas = init.minReplicas ?? init.replicas
    if (minReplicas < 1 || minReplicas > init.replicas) throw new GvsError('invalid', `minimum replicas ${minReplicas} is not between 1 and R=${init.replicas}`)
    this.init = { volume: init.volume, size: init.size, replicas: init.replicas, minReplicas, epoch: init.epoch, objectSize: init.objectSize ?? OBJECT_SIZE }
    this.under = init.under != null && init.under.length > 0 ? init.under : undefined
    this.pkey = init.placementKey ?? init.volume
    this.retryMs = init.retryMs ?? 0
    this.settler = new Settler({ transport: components.transport, nodes: components.nodes, writing: this.writing, generation: components.generation, intervals: components.intervals, nameOf: components.nameOf, downSince: components.downSince, onDiverged: components.onDiverged, served: components.served }, { volume: init.volume, epoch: init.epoch, under: this.under, placementKey: this.pkey, replicas: init.replicas, compareCopies: init.compareCopies === true && !this.readOnly })
  }

  /** the holders that take writes to one object, or a clear error */
  private writeHolders (index: number): string[] {
    const hs = this.c.holders(objectKey(this.pkey, index), this.init.replicas)
    // transient: a member restarting (SIGTERM: it left the gossip, and is back in seconds) costs the client a pause, not an error
    if (hs.length < this.init.minReplicas) {
      throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: ${hs.length} live node(s) can hold it, the volume needs at least ${this.init.minReplicas} of R=${this.init.replicas}`, { transient: true })
    }
    return hs
  }

  /** the holders to read from, this node first (`hs`: the ones a settle or look checked; placement may have moved on since) */
  private readOrder (hs: readonly string[]): string[] {
    const self = this.c.transport.self
    return hs.includes(self) ? [self, ...hs.filter(h => h !== self)] : [...hs]
  }

  async read (offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length)
    const ps = pieces(offset, length, this.init.objectSize)
    // a moment without a majority (this agent just restarted, or a member went) is waited out as a write's is
    const one = async (p: Piece): Promise<Uint8Array> => await this.retrying(undefined, async () => await this.readPiece(p))
    if (ps.length === 1) return await one(ps[0]!)
    const out = new Uint8Array(length)
    await Promise.all(ps.map(async p => { out.set(await one(p), p.at) }))
    return out
  }

  /**
   * Where to read an object from. Once its holders are known to have its newest copy,
   * they are, this node first. Before that (its placement moved, a holder came back
   * from missing writes, or a write failed on one), only nodes that have the newest
   * copy: a holder without it would answer with zeros or old data. A read does not copy
   * the object itself: a VM reading through a moved volume would then move it all at
   * once, at full speed, which is what repair's rate cap is there to prevent. A write
   * still settles first.
   */
  private async readSources (index: number): Promise<string[]> {
    const generation = this.settler.generation()
    const hs = this.c.holders(objectKey(this.pkey, index), this.init.replicas)
    if (this.settler.isSettled(index, hs)) return this.readOrder(hs)
    // layers resolve per node, which needs every layer in place: settled as for a write
    if (this.under != null) return await this.settledSources(index, hs)
    const compare = this.settler.comparesCopies()
    const { seen, everyone, silent } = await this.settler.look(this.init.volume, index, hs, compare)
    // the newest copy may be only on holders of an earlier placement, none of which answered
    const lost = unheard(this.c.intervals?.() ?? [], this.pkey, index, this.init.replicas, n => seen.some(x => x.node === n))
    if (lost.length > 0) throw unheardError(this.init.volume, `object ${index}`, lost, this.c.nameOf, silent.timing(lost.flat(), this.c.downSince))
    const plan = planSettle(hs, seen, this.settler.suspectsOf(index))
    const self = this.c.transport.self
    if (plan.sources.length === 0) {
      // written nowhere (thin), as every node answered: settled, and the holders answer
      // zeros. Some did not answer: an acknowledged write is on at least minReplicas
      // nodes, so with fewer silent one of them answered, and there is none: zeros, from
      // those that answered (not settled: asked again next time). With that many silent,
      // the only copies may be theirs, and zeros would hide data that exists: fail
      if (!everyone) {
        if (silent.size >= this.init.minReplicas) throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: no node that answered has a copy, and ${[...silent.keys()].map(n => this.c.nameOf?.(n) ?? n).join(', ')} did not answer (${[...silent.values()][0]}); try again`)
        return this.readOrder(hs).filter(n => !silent.has(n))
      }
      this.settler.markSettled(index, hs, generation)
      return this.readOrder(hs)
    }
    // an acknowledged write is on at least minReplicas nodes: with that many silent, its
    // only copies may be theirs (former holders too), and the newest that answered older
    if (silent.size >= this.init.minReplicas) throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: ${[...silent.keys()].map(n => this.c.nameOf?.(n) ?? n).join(', ')} did not answer (${[...silent.values()][0]}), and may hold a newer copy than ${plan.sources.map(n => this.c.nameOf?.(n) ?? n).join(', ')}; try again`)
    if (compare) {
      // copies of the newest version that differ (a writer died with writes in flight) are
      // made alike before either is read: reads must not answer one or the other by where
      // they go. Alike: reads are served from copies with this digest, which stands should
      // a holder silent now come back with another (rv37)
      const u = unifyPlan(hs, plan, seen, this.settler.servedOf(index))
      if (u.diverged.length > 0) return await this.settledSources(index, hs)
      if (u.truth != null) this.settler.serve(index, plan.newest, u.truth)
    }
    if (plan.lacking.length === 0 && hs.every(h => plan.sources.includes(h))) { this.settler.markSettled(index, hs, generation); return this.readOrder(hs) }
    return plan.sources.includes(self) ? [self, ...plan.sources.filter(n => n !== self)] : plan.sources
  }

  /**
   * Where to read an object from once a settle has run for it (a layered volume's, or
   * one whose copies of one version differed): the holders that answered and have its
   * newest copy, this node first (a holder that did not answer may have an old copy:
   * not read from until it does; one the newest copy could not be brought to, its disk
   * full, neither: the read goes to the others, and the copy is tried again by the next
   * settle or left to repair)
   */
  private async settledSources (index: number, hs: string[]): Promise<string[]> {
    const { silent, behind, error, deposedBy, newestOn } = await this.settler.settleForRead(index, hs)
    // an acknowledged write is on at least minReplicas nodes, so with that many silent its
    // only copies may be theirs, and what answered older
    if (silent.size >= this.init.minReplicas) throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: ${[...silent.keys()].map(n => this.c.nameOf?.(n) ?? n).join(', ')} did not answer (${[...silent.values()][0]}), and may hold a newer copy than the others; try again`, { transient: true, ...silent.timing() })
    // a device under a newer writer's epoch copies nothing of the top layer: it reads
    // where the top's newest copy is, whole there (rv35: holders that lacked it were read)
    if (deposedBy != null && newestOn != null && newestOn.length > 0) {
      const self = this.c.transport.self
      const on = newestOn.filter(n => !silent.has(n))
      return on.includes(self) ? [self, ...on.filter(n => n !== self)] : on
    }
    const sound = this.readOrder(hs).filter(n => !silent.has(n) && !behind.has(n))
    if (sound.length === 0 && error != null) throw error
    return sound
  }

  private async readPiece (p: Piece): Promise<Uint8Array> {
    const errors: string[] = []
    for (const peer of await this.readSources(p.index)) {
      try {
        const r = await this.c.transport.call(peer, { op: 'read', volume: this.init.volume, index: p.index, offset: p.offset, length: p.length, under: this.under })
        if (r.data?.length === p.length) return r.data
        errors.push(`${peer}: short read`)
      } catch (err) {
        errors.push((err as Error).message)
      }
    }
    throw new GvsError(errors.length === 0 ? 'unavailable' : 'io', `volume "${this.init.volume}" object ${p.index}: no replica could serve the read${errors.length === 0 ? ' (no live holder)' : `: ${errors.join('; ')}`}`)
  }

  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.writable()
    checkRange(this, offset, data.length)
    await this.allPieces(pieces(offset, data.length, this.init.objectSize), async (p, stop) => {
      const chunk = data.subarray(p.at, p.at + p.length)
      await this.toObject(p, seq => ({ op: 'write', volume: this.init.volume, index: p.index, offset: p.offset, epoch: this.init.epoch, seq, fua, under: this.under, followsFreeze: true }), chunk, fua, stop)
    })
  }

  /**
   * A request's pieces (one per object), answered only once every piece has ended: a
   * piece still retrying after the request was answered could land later over a newer
   * write the client was told succeeded. Once one piece fails for good, the others
   * start no new attempt. The error is a lasting one's if any piece had one.
   */
  private async allPieces (ps: Piece[], fn: (p: Piece, stop: Stop) => Promise<void>): Promise<void> {
    const stop: Stop = { failed: null }
    const results = await Promise.allSettled(ps.map(async p => {
      try { await fn(p, stop) } catch (err) {
        if (!(err instanceof GvsError && err.transient)) stop.failed ??= err as Error
        throw err
      }
    }))
    const errors = results.flatMap(r => r.status === 'rejected' ? [r.reason as Error] : [])
    if (errors.length > 0) throw errors.find(e => !(e instanceof GvsError && e.transient)) ?? errors[0]!
  }

  /**
   * One write or zero of one object: its holders settled first (outside the write
   * lock, which settling takes whole), then the request to all of them in order with
   * overlapping writes. If the holders changed in between, it settles again.
   */
  private async toObject (p: Piece, req: (seq: number) => ReplicaRequest, data: Uint8Array | undefined, fua: boolean, stop?: Stop): Promise<void> {
    await this.retrying(stop, async () => {
      for (let moved = 0; ;) {
        // where the write goes is recorded first, where a majority holds it (write-intervals.ts)
        const recorded = await this.c.beforeWrite?.()
        const hs = this.writeHolders(p.index)
        await this.settler.settleAll(p.index, hs, data == null ? 'zero' : 'write')
        const sent = await this.inOrder(p, async () => {
          // the live nodes changed since the record was made: the holders now may be in no
          // recorded interval, so the record is made again first (rv34)
          if (recorded != null && recorded !== (this.c.intervalNow?.() ?? this.settler.generation())) return 'moved'
          const now = this.writeHolders(p.index)
          if (!this.settler.isSettled(p.index, now)) return 'unsettled'
          const seq = this.settler.nextSeq(p.index)
          await this.toAll(p.index, now, req(seq), data, fua)
          return 'sent'
        })
        if (sent === 'sent') return
        // nodes changing faster than a record is made: a moment's failure, which the retry
        // time bounds, not a loop without end (rv35)
        if (sent === 'moved' && ++moved >= MAX_RERECORDS) throw new GvsError('unavailable', `volume "${this.init.volume}" object ${p.index}: the live nodes changed ${moved} times while where this write goes was being recorded`, { transient: true })
      }
    })
  }

  /** a write or flush tried again while replicas are out of reach for a moment, for up to `retryMs` (transient-retry.ts) */
  private async retrying<T> (stop: Stop | undefined, fn: () => Promise<T>): Promise<T> {
    return await retryTransient(this.retryMs, () => stop?.failed != null, fn)
  }

  /**
   * Runs a write once no overlapping write of this volume is in flight. The replicas
   * may run requests in another order than they were sent (they travel on several
   * streams), and two overlapping writes landing in different orders on two replicas
   * would leave them different for good; one at a time, they land alike everywhere.
   */
  private async inOrder<T> (p: Piece, fn: () => Promise<T>): Promise<T> {
    return await this.writing.run(String(p.index), { start: p.offset, end: p.offset + p.length, exclusive: true }, fn)
  }

  async trim (offset: number, length: number, fua: boolean): Promise<void> { await this.writeZeroes(offset, length, fua) }

  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> {
    this.writable()
    checkRange(this, offset, length)
    await this.allPieces(pieces(offset, length, this.init.objectSize), async (p, stop) => {
      await this.toObject(p, seq => ({ op: 'zero', volume: this.init.volume, index: p.index, offset: p.offset, length: p.length, epoch: this.init.epoch, seq, fua, under: this.under, followsFreeze: true }), undefined, fua, stop)
    })
  }

  /**
   * Every node written to since the last flush flushes. A node that died since holds
   * the only unflushed copy of nothing (every write reached all R holders), but its
   * copies no longer count: the objects it had unflushed are first brought to their
   * holders among the live nodes (settle), which then flush too. So are those of a node
   * written to in an earlier placement generation: it may have been away meanwhile, its
   * server restarted, and the writes it had not synced lost (rv34: a flush succeeded on
   * such a holder, which synced nothing, and the write then had one copy on disk). So a flush that
   * succeeds means R copies on live nodes' stable storage, and a holder's death fails
   * at most the flushes made before membership says it died, not every later one.
   * A flush that starts while another runs is answered once that one is done, and fails
   * if it failed: what it must cover includes writes the other took from `unflushed`
   * (clients flush on several connections at once, nbd/session.ts CAN_MULTI_CONN).
   */
  async flush (): Promise<void> {
    const before = this.flushing
    const own = this.retrying(undefined, async () => { await this.flushOnce() })
    const both = Promise.allSettled([before, own]).then(([b, o]) => {
      if (o.status === 'rejected') throw o.reason
      if (b.status === 'rejected') throw new GvsError('io', `volume "${this.init.volume}": an overlapping flush failed: ${(b.reason as Error).message}`)
    })
    this.flushing = both
    try { await both } finally { if (this.flushing === both) this.flushing = null }
  }

  private async flushOnce (): Promise<void> {
    const entries = this.unflushed.take()
    const live = this.c.nodes == null ? null : new Set(this.c.nodes())
    // the first flush goes to every live node: a client that reconnected to a restarted
    // agent flushes writes an earlier run of it took (on other nodes too) that this one never saw
    // (one cut from this node alone is passed with R >= 2, as a writer's claim passes it:
    // every object an earlier run wrote there was written to another holder too, which
    // this flushes; every flush through a host cut from one other failed after 20 s)
    const everyNode = this.flushedOnce ? [] : [...live ?? []].filter(n => !(this.init.replicas >= 2 && this.c.unreached?.(n) === true))
    this.flushedOnce = true
    const gen = this.settler.generation()
    const { flushNow, orphaned } = planFlush(entries, live, gen, everyNode)
    const errors: string[] = []
    const causes: unknown[] = []
    /** every failure was a replica out of reach for a moment: worth another try (retrying) */
    let transient = true
    // a few at once: each settle asks every live node (after a membership change every
    // object written since the last flush is one of these)
    await eachLimited([...orphaned], ORPHAN_SETTLES, async index => {
      try {
        const hs = this.writeHolders(index)
        this.settler.unsettle(index)
        await this.settler.settleAll(index, hs, 'flush')
        for (const h of hs) addTo(flushNow, h, [index])
      } catch (err) {
        errors.push(`object ${index}: ${(err as Error).message}`)
        causes.push(err)
        if (!(err instanceof GvsError && err.transient)) transient = false
        for (const [node, objects] of entries) {
          const g = objects.get(index)
          if (g != null) this.markUnflushed(node, [index], g)
        }
      }
    })
    const peers = [...flushNow.keys()]
    const results = await Promise.allSettled(peers.map(async peer => await this.c.transport.call(peer, { op: 'flush', volume: this.init.volume })))
    peers.forEach((p, i) => {
      const r = results[i]
      if (r?.status !== 'rejected') return
      // as of the generation this flush began in: a holder that restarted while the call
      // hung is settled by the next flush (rv35)
      this.markUnflushed(p, flushNow.get(p)!, gen)
      errors.push(`${p}: ${String((r.reason as Error).message)}`)
      causes.push(r.reason)
      if (!(r.reason instanceof GvsError && r.reason.transient)) transient = false
    })
    if (errors.length > 0) throw new GvsError('io', `volume "${this.init.volume}": flush failed: ${errors.join('; ')}`, { transient, since: sinceOfAll(causes), until: untilOfAll(causes) })
  }

  private markUnflushed (node: string, idx: Iterable<number>, gen = this.settler.generation()): void {
    this.unflushed.mark(node, idx, gen)
  }

  /**
   * One request to every holder of an object; resolves only when all succeeded. A
   * holder it failed on may have missed it while later writes land there: it becomes a
   * suspect, and the object settles again (the suspect replaced by a sound copy) before
   * the next write or read of it.
   */
  private async toAll (index: number, hs: string[], req: ReplicaRequest, data: Uint8Array | undefined, fua: boolean): Promise<void> {
    if (!fua) for (const h of hs) this.markUnflushed(h, [index])
    // every call settles before this returns: the caller may then reuse `data` (the NBD
    // session gives a pooled payload back), and a call that ended without its answer
    // has kept it out of the pool (replica-channel.ts). Returning on a quorum would
    // hand out a buffer a stream may still be sending.
    const results = await Promise.allSettled(hs.map(async h => await this.c.transport.call(h, req, data)))
    // and again now it has landed: a flush that began while it was in flight took the
    // marks and may have run before it landed, so the next flush must cover it (failed
    // holders too: the write may have landed in part)
    if (!fua) for (const h of hs) this.markUnflushed(h, [index])
    const bad = results.flatMap((r, i) => r.status === 'rejected' ? [{ peer: hs[i]!, err: r.reason as Error }] : [])
    if (bad.length === 0) return
    // deposed by a newer writer: this one moves nothing more (rv34: its settle below copied
    // its refused write from a holder the newer writer's fence missed onto the others)
    const stale = bad.find(b => isGvsError(b.err, 'stale-epoch'))
    if (stale != null) { this.settler.unsettle(index); throw stale.err }
    this.settler.suspect(index, bad.map(b => b.peer))
    // bring it back in step now, not only at the next write or read of this object:
    // until then another node's reader could find the suspect's copy (if its holder
    // is gone for good, membership drops it and the next settle skips it)
    void this.settler.settle(index, hs).catch(() => {})
    // a snapshot froze the layer: the live volume above waits for the new top and writes there
    const frozen = bad.find(b => isGvsError(b.err, 'frozen'))
    if (frozen != null) throw frozen.err
    const full = bad.find(b => b.err instanceof GvsError && b.err.code === 'no-space')
    const transient = bad.every(b => b.err instanceof GvsError && b.err.transient)
    throw new GvsError(full != null ? 'no-space' : transient ? 'unavailable' : 'io', `volume "${this.init.volume}" object ${index}: ${bad.length} of ${hs.length} replica(s) failed the ${req.op}: ${bad.map(b => b.err.message).join('; ')}`, { transient })
  }

  private writable (): void {
    if (this.readOnly) throw new GvsError('invalid', `volume "${this.init.volume}" is read-only`)
  }
}
