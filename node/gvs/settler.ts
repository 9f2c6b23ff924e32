// Settling one object of a replicated volume (replicated-volume.ts): bringing its newest
// copy to every current holder that lacks it (absent, older, or suspect) before a write
// builds on it, and marking the copies of a holder that missed a write plainly behind.
// It keeps, per object, the holder list last made complete, the holders a write failed
// on, and this writer's sequence numbers (versions.ts), which a settle moves on.
import { GvsError, sinceOfAll, untilOfAll } from './errors.ts'
import type { ReplicaTransport } from './replication.ts'
import type { RangeLock, Span } from './range-lock.ts'
import { NO_VERSION, compareVersions, formatVersion, planSettle, unifyPlan, type CopySeen, type ServedCopy, type SettlePlan, type Version } from './versions.ts'
import { unheard, unheardError, type WriteInterval } from './write-intervals.ts'

/** every byte of an object: settling holds it whole */
const WHOLE: Span = { start: 0, end: Number.MAX_SAFE_INTEGER, exclusive: true }

/**
 * How long reads take a settle that left holders behind (their disk full) as it was,
 * before one tries the copy again: each try moves the whole object, and a client's
 * every read of it would.
 */
export const BEHIND_RETRY_MS = 5000

export interface SettlerComponents {
  transport: ReplicaTransport
  /** the live nodes, where a moved object's old copies may be; default: none beyond the holders */
  nodes?: () => string[]
  /** the volume's writes in flight, by object and byte range: a settle holds the object whole */
  writing: RangeLock
  /**
   * Changes whenever the live nodes (and so any object's holders) change: a settled
   * object is settled for one generation. Its holders may go A, B, A while another
   * node's writer writes it on B; then A's own old copy is not its newest, though its
   * holders read as before. Default: never changes.
   */
  generation?: () => number
  /**
   * the volume's write intervals in force (write-intervals.ts): a settle that hears
   * from none of an object's holders in one fails, as the newest copy may be only
   * there. Default: none (it may throw: this node may not tell at all).
   */
  intervals?: () => WriteInterval[]
  /** a node's name, for errors */
  nameOf?: (node: string) => string
  /** since when a node membership holds dead has been silent (ms since the epoch); undefined for a live one or one not known (ReplicatedVolumeComponents.downSince) */
  downSince?: (node: string) => number | undefined
  /** the clock BEHIND_RETRY_MS counts on (default Date.now) */
  now?: () => number
  /** copies of one version that held different data, made alike (SettlerInit.compareCopies) */
  onDiverged?: (d: Diverged) => void
  /**
   * per object, the copy of its newest version reads were served from (compareCopies):
   * kept by the caller across devices of one writer epoch (a resize makes a new one)
   */
  served?: Map<number, ServedCopy>
}

/** copies of one object's newest version found to hold different data, and the one kept */
export interface Diverged { layer: string, index: number, version: Version, kept: string, replaced: string[] }

export interface SettlerInit {
  /** the store name of the volume's objects (its id) */
  volume: string
  /** the writer's epoch */
  epoch: number
  /** frozen layers under the volume's objects, top first */
  under?: string[]
  /** what the objects are placed by (default: the volume) */
  placementKey?: string
  /** R (default 1) */
  replicas?: number
  /**
   * Each look at an object not settled compares the newest version's copies of the top
   * layer by a digest of their checksums, and a settle makes them alike (versions.ts
   * unifyPlan): a writer that died with writes in flight may have left them different
   * under one version. Only for the volume's sole writer, fenced in at an epoch of its
   * own (a VM's disk): another node's writer's writes in flight look different for a
   * moment. The frozen layers under it are not rewritten (a snapshot stays as taken).
   */
  compareCopies?: boolean
}

/** the nodes that did not answer a look, with why; `lasting`: those whose failure was not a moment's (a disk error, a refusal) */
export class Silent extends Map<string, string> {
  readonly lasting = new Set<string>()
  /** the error of each node that did not answer */
  readonly causes = new Map<string, unknown>()

  /** a node that did not answer, and why */
  note (node: string, err: unknown): void {
    this.set(node, (err as Error).message)
    this.causes.set(node, err)
    if (!(err instanceof GvsError && err.transient)) this.lasting.add(node)
  }

  /** what `other` says of `node`, unless this says something already (the first layer's word stands); lasting if either is */
  add (other: Silent, node: string): void {
    const why = other.get(node)
    if (why != null && !this.has(node)) {
      this.set(node, why)
      if (other.causes.has(node)) this.causes.set(node, other.causes.get(node))
    }
    if (other.lasting.has(node)) this.lasting.add(node)
  }

  /**
   * Since when the failures of `nodes` (default: every node that did not answer) have held
   * and until when they are due to end, where each says (sinceOfAll, untilOfAll): none for
   * a node that was not asked
   */
  timing (nodes: Iterable<string> = this.causes.keys(), downSince?: (node: string) => number | undefined): { since?: number, until?: number } {
    // a node not asked because membership holds it dead: silent since its last sign of
    // life (bb23: with both holders of an object killed, every request to it waited the
    // whole retry time, minutes on)
    const errs = [...new Set(nodes)].map(n => this.causes.get(n) ?? deadSince(n, downSince))
    return { since: sinceOfAll(errs), until: untilOfAll(errs) }
  }
}

/** a node membership holds dead, as a cause with its time (undefined: not known dead) */
function deadSince (node: string, downSince?: (node: string) => number | undefined): GvsError | undefined {
  const since = downSince?.(node)
  return since == null ? undefined : new GvsError('unavailable', 'not alive in membership', { transient: true, since })
}

/** what a settle left undone */
export interface Unsettled {
  /** holders that did not say which copy they have */
  silent: Silent
  /** holders that answered but lack the newest copy of some layer: bringing it to them failed (a full disk) */
  behind: Set<string>
  /** why the first of `behind` could not be brought the copy (null when none is behind) */
  error: GvsError | null
  /**
   * a holder refuses writers below this epoch, above this writer's: a newer writer took
   * the volume over, and this one moved no copy of the top layer (a write fails as
   * stale: settleAll; the frozen layers under it are settled as ever)
   */
  deposedBy?: { epoch: number, node: string }
  /** with deposedBy: the nodes with the top layer's newest copy, holders first (a read goes there) */
  newestOn?: string[]
}

export class Settler {
  private readonly c: SettlerComponents
  private readonly init: SettlerInit
  /** object index -> the placement generation and holder list last made complete (all hold it, or nobody does) */
  private readonly settled = new Map<number, string>()
  /** settles in progress, by the key (generation and holders) each settles for, resolving to what each left undone */
  private readonly settling = new Map<number, { key: string, p: Promise<Unsettled> }>()
  /** object index -> the sequence number of this writer's last write to it (versions.ts) */
  private readonly seqs = new Map<number, number>()
  /** object index -> holders a write of it failed on, until it settles again */
  private readonly suspects = new Map<number, Set<string>>()
  /** object index -> the last settle, when it left holders behind but none silent: its key, what it left undone, and when */
  private readonly partly = new Map<number, { key: string, u: Unsettled, at: number }>()
  /** per object, the copy of its newest version reads were served from (compareCopies) */
  private readonly served: Map<number, ServedCopy>

  constructor (components: SettlerComponents, init: SettlerInit) {
    this.c = components
    this.init = init
    this.served = components.served ?? new Map()
  }

  /** the placement generation now (see SettlerComponents.generation) */
  generation (): number { return this.c.generation?.() ?? 0 }

  private keyOf (hs: string[], generation: number): string { return `${generation}:${hs.join(',')}` }

  /** whether the object was last made complete on exactly these holders, in this placement generation */
  isSettled (index: number, hs: string[]): boolean { return this.settled.get(index) === this.keyOf(hs, this.generation()) }

  /** the object is complete on these holders (all hold its newest copy, or nobody has one), as seen in `generation` */
  markSettled (index: number, hs: string[], generation: number): void { this.settled.set(index, this.keyOf(hs, generation)) }

  /** whether a look at an object compares the copies of its newest version (SettlerInit.compareCopies) */
  comparesCopies (): boolean { return this.init.compareCopies === true }

  /** the copy of the object's newest version reads are served from (compareCopies) */
  servedOf (index: number): ServedCopy | undefined { return this.served.get(index) }

  /** reads of the object are served from copies of this version and digest */
  serve (index: number, version: Version, digest: string): void { this.served.set(index, { version, digest }) }

  /** the object settles again before its next write */
  unsettle (index: number): void { this.settled.delete(index); this.partly.delete(index) }

  /** the sequence number of this writer's next write to the object */
  nextSeq (index: number): number {
    const seq = (this.seqs.get(index) ?? 0) + 1
    this.seqs.set(index, seq)
    return seq
  }

  /** holders a write of the object failed on, until it settles again */
  suspectsOf (index: number): Set<string> | undefined { return this.suspects.get(index) }

  /** a write of the object failed on these holders: they may have missed it */
  suspect (index: number, peers: Iterable<string>): void {
    const suspects = this.suspects.get(index) ?? new Set<string>()
    for (const p of peers) suspects.add(p)
    this.suspects.set(index, suspects)
    this.unsettle(index)
  }

  /**
   * Brings the newest copy of the object to every current holder that lacks it (absent,
   * older, or suspect), once per holder set. It holds the whole object in this volume's
   * write lock: no write of it is in flight while copies are compared and replaced.
   * Resolves to the holders that did not answer and those the copy could not be brought
   * to: the object is settled only when there are none, since a silent one may hold an
   * old copy (or none) that a write would then build on and raise to the newest version.
   * A holder that cannot take the copy (its disk full) leaves the others settled: a
   * read goes to them (a write, which needs every holder, fails).
   */
  async settle (index: number, hs: string[]): Promise<Unsettled> {
    const done = (): Unsettled => ({ silent: new Silent(), behind: new Set(), error: null })
    // the generation it started in: one that changes while it runs leaves it unsettled
    const key = this.keyOf(hs, this.generation())
    if (this.settled.get(index) === key) return done()
    // one in flight for other holders or an older generation settles something else:
    // waited for, then this one runs (its answer is not this one's)
    for (let cur = this.settling.get(index); cur != null && cur.key !== key; cur = this.settling.get(index)) await cur.p.catch(() => {})
    if (this.settled.get(index) === key) return done()
    let inflight = this.settling.get(index)
    if (inflight == null) {
      const p = this.c.writing.run(String(index), WHOLE, async () => await this.settleNow(index, hs))
        .then(u => {
          if (u.silent.size === 0 && u.behind.size === 0 && u.deposedBy == null) this.settled.set(index, key)
          if (u.silent.size === 0 && u.behind.size > 0) this.partly.set(index, { key, u, at: this.now() }); else this.partly.delete(index)
          return u
        })
        .finally(() => { if (this.settling.get(index)?.p === p) this.settling.delete(index) })
      inflight = { key, p }
      this.settling.set(index, inflight)
    }
    return await inflight.p
  }

  private now (): number { return this.c.now?.() ?? Date.now() }

  /**
   * Settles the object for a read: as `settle`, but a settle that left holders behind
   * (and every holder answered) stands for reads for BEHIND_RETRY_MS, in the same
   * placement generation and holders, with nothing written or failed since: the others
   * have the newest copy, as a settled object's holders have.
   */
  async settleForRead (index: number, hs: string[]): Promise<Unsettled> {
    const p = this.partly.get(index)
    if (p != null && p.key === this.keyOf(hs, this.generation()) && this.now() - p.at < BEHIND_RETRY_MS) return p.u
    return await this.settle(index, hs)
  }

  /** settles the object for a write: every holder must have answered (a write needs them all anyway) */
  async settleAll (index: number, hs: string[], op: string): Promise<void> {
    const { silent, error, deposedBy } = await this.settle(index, hs)
    if (deposedBy != null) throw new GvsError('stale-epoch', `volume "${this.init.volume}" object ${index}: writer epoch ${this.init.epoch} is older than ${deposedBy.epoch}, the newest ${this.c.nameOf?.(deposedBy.node) ?? deposedBy.node} has seen: a newer writer took the volume over`)
    if (error != null) throw error
    if (silent.size === 0) return
    // worth another try only if every holder was out of reach (not one whose disk failed)
    throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: ${silent.size} of ${hs.length} replica(s) failed the ${op}, not saying which copy they have: ${[...silent.values()].join('; ')}`, { transient: silent.lasting.size === 0, ...silent.timing() })
  }

  private async settleNow (index: number, hs: string[]): Promise<Unsettled> {
    const u: Unsettled = { silent: new Silent(), behind: new Set(), error: null }
    for (const layer of [this.init.volume, ...(this.init.under ?? [])]) {
      const l = await this.settleLayer(layer, index, hs)
      const plan = l.plan
      for (const h of hs) u.silent.add(l.silent, h)
      for (const b of l.behind) u.behind.add(b)
      u.error ??= l.error
      if (layer !== this.init.volume) continue
      // deposed: nothing more of the top layer's (the layers under it, frozen, settle as ever:
      // a read that resolves through them must find them in place, rv35)
      if (l.deposedBy != null) { u.deposedBy = l.deposedBy; u.newestOn = plan.sources; continue }
      // this writer's next write to the object comes after every write it can see
      if (plan.newest.epoch === this.init.epoch) this.seqs.set(index, Math.max(this.seqs.get(index) ?? 0, plan.newest.seq))
      await this.outdateSuspects(index, plan, l.behind)
    }
    return u
  }

  /**
   * A suspect that got the newest copy is in step again. One that did not answer (cut
   * off, or gone), or could not take the copy (its disk full), may claim a version it
   * does not fully have; so the copies that are the newest move one version on (a zero
   * of no bytes), which leaves the suspect's copy plainly behind for any writer, reader
   * or repair, also after this writer is gone. Until that succeeds the object does not
   * settle (nor while such a suspect is still a holder: settle waits for every holder's
   * answer).
   */
  private async outdateSuspects (index: number, plan: SettlePlan, behind: ReadonlySet<string>): Promise<void> {
    const suspects = this.suspects.get(index)
    if (suspects == null) return
    const brought = plan.lacking.map(l => l.node).filter(n => !behind.has(n))
    for (const n of brought) suspects.delete(n)
    for (const s of plan.sources) suspects.delete(s)
    if (suspects.size === 0) { this.suspects.delete(index); return }
    const seq = this.nextSeq(index)
    const at = [...new Set([...plan.sources, ...brought])]
    const results = await Promise.allSettled(at.map(async n => await this.c.transport.call(n, { op: 'zero', volume: this.init.volume, index, offset: 0, length: 0, epoch: this.init.epoch, seq, fua: true })))
    const failed = results.flatMap((r, i) => r.status === 'rejected' ? [`${at[i]}: ${(r.reason as Error).message}`] : [])
    if (failed.length > 0) throw new GvsError('unavailable', `volume "${this.init.volume}" object ${index}: ${[...suspects].join(', ')} missed a write and did not answer, and the other copies could not be marked newer: ${failed.join('; ')}`, { transient: true })
    this.suspects.delete(index)
  }

  /**
   * What every live node says of one object set's object: holders first, then the
   * other live nodes (a moved object's old holders, or a holder that missed writes
   * while it was away and is back). A node that does not answer is left out.
   */
  async look (vol: string, index: number, hs: string[], digest = false): Promise<{ seen: CopySeen[], everyone: boolean, silent: Silent }> {
    const nodes = [...hs, ...(this.c.nodes?.() ?? []).filter(n => !hs.includes(n))]
    const silent = new Silent()
    const answers = await Promise.all(nodes.map(async (node): Promise<CopySeen | null> => {
      try {
        const r = (await this.c.transport.call(node, { op: 'stat', volume: vol, index, ...(digest ? { digest } : {}) })).reply
        return { node, present: r.present === true, version: r.version ?? NO_VERSION, ...(r.epoch != null ? { floor: r.epoch } : {}), ...(r.digest != null ? { digest: r.digest } : {}) }
      } catch (err) {
        silent.note(node, err)
        return null
      }
    }))
    const seen = answers.filter(x => x != null)
    return { seen, everyone: seen.length === nodes.length, silent }
  }

  /**
   * The copies of one layer's object brought to the holders that answered and lack it,
   * from the first source that can give it: one that cannot take it is `behind` (with
   * the `error` saying why), the others are settled all the same.
   */
  private async settleLayer (vol: string, index: number, hs: string[]): Promise<{ plan: SettlePlan, silent: Silent, behind: Set<string>, error: GvsError | null, deposedBy?: { epoch: number, node: string } }> {
    // the top layer's copies only: a frozen layer is a snapshot, which stays as it was taken
    const compare = this.comparesCopies() && vol === this.init.volume
    const { seen, silent } = await this.look(vol, index, hs, compare)
    const lost = unheard(this.c.intervals?.() ?? [], this.init.placementKey ?? this.init.volume, index, this.init.replicas ?? 1, n => seen.some(x => x.node === n))
    if (lost.length > 0) throw unheardError(this.init.volume, `object ${index}`, lost, this.c.nameOf, silent.timing(lost.flat(), this.c.downSince))
    let plan = planSettle(hs, seen, vol === this.init.volume ? this.suspects.get(index) : undefined)
    // the newest writer epoch any node refuses older writers below: what a copy teaches its new holder
    const top = seen.reduce<CopySeen | null>((a, x) => (x.floor ?? 0) > (a?.floor ?? 0) ? x : a, null)
    const floor = top?.floor ?? 0
    // a writer deposed by a newer one moves no copy: one of them may be a write of its own
    // that a node the newer writer's fence missed took and the others refused (rv34: its
    // settle copied it onto them, and the new writer read it)
    if (vol === this.init.volume && top != null && floor > this.init.epoch) return { plan, silent, behind: new Set(plan.lacking.map(l => l.node)), error: null, deposedBy: { epoch: floor, node: top.node } }
    let truth: string | undefined
    let diverged = false
    if (compare) {
      const u = unifyPlan(hs, plan, seen, this.served.get(index))
      diverged = u.diverged.length > 0
      if (diverged) this.c.onDiverged?.({ layer: vol, index, version: plan.newest, kept: u.plan.sources[0]!, replaced: u.diverged })
      plan = u.plan
      truth = u.truth
    }
    const served = (): void => { if (truth != null) this.serve(index, plan.newest, truth) }
    if (plan.lacking.length === 0) { served(); return { plan, silent, behind: new Set(), error: null } }
    const why: string[] = []
    const errs: unknown[] = []
    let pending = plan.lacking
    for (const src of plan.sources) {
      let r
      try {
        r = await this.c.transport.call(src, { op: 'get', volume: vol, index, ...(diverged ? { digest: true } : {}) })
      } catch (err) { why.push((err as Error).message); errs.push(err); continue }
      if (r.data == null) { why.push(`${src}: absent`); errs.push(null); continue }
      // copies being made alike: only the copy compared, not one a write changed since
      if (diverged && (r.reply.digest !== truth || compareVersions(r.reply.version ?? NO_VERSION, plan.newest) !== 0)) {
        const changed = new GvsError('unavailable', `${src}: its copy changed since the copies were compared`, { transient: true })
        why.push(changed.message); errs.push(changed); continue
      }
      const data = r.data
      // the newest writer epoch seen anywhere, not only the source's: a holder the newer writer's fence missed learns it
      const put = { op: 'put', volume: vol, index, epoch: Math.max(r.reply.epoch ?? 0, floor), version: r.reply.version ?? NO_VERSION } as const
      // every put ends before the caller goes on: none still sends `data`. A put that
      // failed is not tried from another source: the target refused it (a full disk)
      const results = await Promise.allSettled(pending.map(async to => await this.c.transport.call(to.node, { ...put, replace: to.replace, ...(to.ifDigest != null ? { ifDigest: to.ifDigest } : {}) }, data)))
      for (const res of results) if (res.status === 'rejected') { why.push((res.reason as Error).message); errs.push(res.reason) }
      // copies being made alike: a holder that kept its own (a write, or another copy,
      // came since the look) is compared again at the next look, not taken for alike
      const kept = (i: number): boolean => { const res = results[i]!; return diverged && res.status === 'fulfilled' && res.value.reply.present === true }
      for (const [i, to] of pending.entries()) {
        if (!kept(i)) continue
        const again = new GvsError('unavailable', `${to.node}: its copy changed since the copies were compared`, { transient: true })
        why.push(again.message); errs.push(again)
      }
      pending = pending.filter((_, i) => results[i]!.status === 'rejected' || kept(i))
      break
    }
    if (pending.length === 0) { served(); return { plan, silent, behind: new Set(), error: null } }
    // a holder that ran out of room says so to the client (ENOSPC, not EIO); one out of
    // reach for a moment (restarting, a dropped stream) is retried like any write to it
    const gvs = errs.filter((e): e is GvsError => e instanceof GvsError)
    const code = gvs.some(e => e.code === 'no-space') ? 'no-space' : 'unavailable'
    const transient = errs.length > 0 && gvs.length === errs.length && gvs.every(e => e.transient)
    const error = new GvsError(code, `volume "${vol}" object ${index}: ${pending.map(l => l.node).join(', ')} lack its newest copy (${formatVersion(plan.newest)}) and none could be brought to them: ${why.join('; ')}`, { transient, since: sinceOfAll(errs), until: untilOfAll(errs) })
    return { plan, silent, behind: new Set(pending.map(l => l.node)), error }
  }
}
