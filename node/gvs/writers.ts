// Who writes a volume through this node's NBD server: every session that opens a
// writable export gets its own handle onto the volume's LiveVolume, and a handle that
// has written within `idleMs` counts as a writer, so a destroy can be refused while a
// client writes. A session that ends releases its handle at once; a writer that went
// quiet for `idleMs` no longer counts either (a client that hangs on to a session).
//
// One node writes a volume at a time. A session of a plain export (no writer epoch of
// its own: a VM's disk has one, and the replicas fence its older writers) first asks
// the other nodes, when it starts writing and after each quiet spell, whether a client
// writes the volume there; if one does, its writes fail (EPERM) naming that node. Two
// nodes' writers at one epoch would number their writes alike, and each would take its
// own copies for the newest: the replicas could end up different under one version.
// Sessions on one node share the volume's device and may write side by side (a
// multi-connection client).
//
// Two nodes that start at the same moment each see the other claiming. The smaller
// node id wins: a node asked by a smaller one while its own claim waits for answers
// gives that claim up there and then (answerClaim), and a claimant goes on past a
// claim it saw only from larger ids, which lost by its asking. So one of them writes,
// not neither (each refusing the other) and never both.
//
// A claim holds only while this node's event loop runs: after a stall of STALL_MS or
// more (an agent stopped, swapped out, a long pause) every plain session asks again
// before its next write. The others ask a silent node again until membership finds it
// dead (grid-writers.ts), which takes longer than STALL_MS, and may then let a writer
// in; this node's writer, back from the stall, must not go on writing beside it.
import type { BlockDevice } from './block-device.ts'
import { GvsError } from './errors.ts'

/** whether a client writes the volume on another node (or claims it first): a description of them, or null */
export type OtherWriters = (volume: string) => Promise<string | null>

/**
 * The writer epoch of a node's claim (invariant 3 for plain exports): two nodes' writers
 * at one epoch could not be told apart by the replicas, so a write still queued on a
 * node that stalled, or was cut off, while another node's client took the volume over
 * would land over that client's acknowledged writes. So each claim that wins writes
 * with an epoch past every earlier writer's (`next`: raised in the document,
 * crdt/placement/volume-epoch.ts) and fences it on every live node first (`fence`):
 * the earlier writer's writes are then refused wherever they arrive.
 * `held`: the epoch of the session's previous claim, when it claims again (after a
 * stall, a quiet spell or another's fence): `{ since }` (the volume's epoch now) if
 * another claim or a VM's holder took the volume since; the session is then fenced
 * out for good (WriterHandle.claim).
 */
export interface ClaimEpochs {
  next: (volume: string, held?: number) => Promise<{ epoch: number } | { since: number }>
  fence: (volume: string, epoch: number) => Promise<void>
}

/** one other node's answer to a claim (status-protocol.ts) */
export interface ClaimAnswer { node: string, name: string, writers: number, claiming: boolean }

/**
 * Whether a claim by `self` may go on, from the other nodes' answers: null if so, else
 * who writes. Clients writing on another node refuse it; so does a claim there at the
 * same moment from a smaller id. One from a larger id gave way when it answered.
 */
export function claimVerdict (self: string, answers: readonly ClaimAnswer[]): string | null {
  const why = [
    ...answers.filter(a => a.writers > 0).map(a => `${a.writers} client(s) on ${a.name}`),
    ...answers.filter(a => a.claiming && a.node < self).map(a => `${a.name}, which began writing it at the same moment`)
  ]
  return why.length === 0 ? null : why.sort().join(', ')
}

/** a claim waiting for the other nodes' answers; `lost`: a smaller node claimed the volume meanwhile (named) */
interface PendingClaim { lost: string | null }

/** a stall of the event loop this long (below membership's suspect time, 1.5 s) ends every plain session's claim */
export const STALL_MS = 1000
/** how often the loop's beat is taken */
const BEAT_MS = 200

interface Exclusive {
  volume: string
  others: OtherWriters
  idleMs: number
  vmDisk?: () => boolean
  checkStall?: () => void
  /** a session on this node that holds the volume now (its epoch), or one claiming it (wait for it) */
  sibling?: (h: WriterHandle) => { epoch: number | null } | Promise<unknown> | null
  epochs?: ClaimEpochs & { fencing: (epoch: number | null) => void }
  /** the device that writes at the handle's claimEpoch (following it when it changes) */
  claimed?: (h: WriterHandle) => BlockDevice
}

export class WriterHandle implements BlockDevice {
  private readonly dev: BlockDevice
  private readonly onWrite: (h: WriterHandle) => void
  private readonly exclusive?: Exclusive
  /** the ask of the other nodes in progress */
  private claiming: Promise<void> | null = null
  /** set while that ask waits for answers */
  pending: PendingClaim | null = null
  lastWriteAt = 0
  /** a VM disk's session: counted as a writer from its open to its end, written or not */
  holdsOpen = false
  /** the writer epoch the session writes with, when known (a cache is used only by a holder of its epoch) */
  epoch?: number
  /** with claim epochs: the epoch of this session's claim, which its writes carry */
  claimEpoch: number | null = null
  private claimedDev: BlockDevice | null = null
  /**
   * Why this session may write no more: another writer (another node's client, a VM)
   * took the volume after this session's claim. Writes it still sends (queued while its
   * node stalled or was cut off, or from a client that cached the disk as it was) would
   * land over that writer's; its client must connect again to write.
   */
  fencedOut: string | null = null
  /** the claim in progress, for siblings on this node to wait for */
  get claimingNow (): Promise<void> | null { return this.claiming }

  constructor (dev: BlockDevice, onWrite: (h: WriterHandle) => void, exclusive?: Exclusive) {
    this.dev = dev
    this.onWrite = onWrite
    this.exclusive = exclusive
  }

  /** before a write: this session is the volume's writer, or it becomes one now if no other node's client writes */
  private async claim (): Promise<void> {
    const x = this.exclusive
    if (x == null) return
    if (this.fencedOut != null) throw new GvsError('in-use', this.fencedOut)
    if (this.claiming != null) { await this.claiming; return }
    // back from a stall the beat has not seen yet: the claim ends here (see the top)
    x.checkStall?.()
    if (this.lastWriteAt > 0 && Date.now() - this.lastWriteAt <= x.idleMs) return
    // a VM's disk session on this node writes it (the other nodes are asked, not this one)
    if (x.vmDisk?.() === true) throw new GvsError('in-use', `volume "${x.volume}" is a running VM's disk on this node: one writer at a time; stop the VM first`)
    this.claiming = (async () => {
      // a session on this node that holds the volume: this one writes beside it, at its
      // epoch (a multi-connection client); one claiming it is waited for
      for (let s = x.sibling?.(this); s != null; s = x.sibling?.(this)) {
        if (!(s instanceof Promise)) {
          // a sibling's newer claim: another writer may have come between this session's claim and it
          if (this.claimEpoch != null && s.epoch != null && s.epoch !== this.claimEpoch) this.fenceOut(x.volume, s.epoch)
          this.claimEpoch = s.epoch
          this.wrote()
          return
        }
        await s
      }
      // counted as a writer from now on: another node asking at the same moment sees this one
      const pending: PendingClaim = this.pending = { lost: null }
      this.wrote()
      let others: string | null
      try { others = await x.others(x.volume) } catch (err) {
        // not a writer: the next write claims again
        this.lastWriteAt = 0
        throw err
      } finally { this.pending = null }
      const why = others ?? (pending.lost != null ? `${pending.lost}, which began writing it at the same moment` : null)
      if (why == null) {
        if (x.epochs != null) await this.takeEpoch(x.epochs)
        return
      }
      this.lastWriteAt = 0
      throw new GvsError('in-use', `volume "${x.volume}" is being written on another node (${why}): one node writes a volume at a time; stop that client first`)
    })().finally(() => { this.claiming = null })
    await this.claiming
  }

  /** the claim won: its epoch goes past every earlier writer's and is fenced in on every live node before the first write */
  private async takeEpoch (epochs: NonNullable<Exclusive['epochs']>): Promise<void> {
    try {
      const next = await epochs.next(this.exclusive!.volume, this.claimEpoch ?? undefined)
      if ('since' in next) this.fenceOut(this.exclusive!.volume, next.since)
      const epoch = next.epoch
      // this node's own fence does not end the claim it is made for (Writers.revokeClaims)
      epochs.fencing(epoch)
      try { await epochs.fence(this.exclusive!.volume, epoch) } finally { epochs.fencing(null) }
      this.claimEpoch = epoch
      this.wrote()
    } catch (err) {
      this.lastWriteAt = 0
      throw err
    }
  }

  /** another writer took the volume after this session's claim (at epoch `now`): it writes no more */
  private fenceOut (volume: string, now: number): never {
    this.fencedOut = `volume "${volume}" was taken over by another writer (its writer epoch went from ${this.claimEpoch ?? '?'}, this session's, to ${now}) since this session last wrote: writes it still sends could land over that writer's; connect again to write`
    this.lastWriteAt = 0
    throw new GvsError('in-use', this.fencedOut)
  }

  /** where writes go: with claim epochs, the device at this session's claim's epoch */
  private writer (): BlockDevice {
    const x = this.exclusive
    if (x?.claimed == null || this.claimEpoch == null) return this.dev
    this.claimedDev ??= x.claimed(this)
    return this.claimedDev
  }

  get size (): number { return this.dev.size }
  get readOnly (): boolean { return this.dev.readOnly }

  private wrote (): void {
    this.lastWriteAt = Date.now()
    this.onWrite(this)
  }

  async read (offset: number, length: number): Promise<Uint8Array> { return await (this.claimedDev ?? this.dev).read(offset, length) }
  /** a change: the claim first; the session counts as writing until it is done (a slow write is no quiet spell) */
  private async changing (fn: (d: BlockDevice) => Promise<void>): Promise<void> {
    await this.claim()
    this.wrote()
    try { await fn(this.writer()) } finally {
      // not where a stall or another's fence ended the claim meanwhile (lastWriteAt 0)
      if (this.lastWriteAt > 0) this.lastWriteAt = Date.now()
    }
  }

  async write (offset: number, data: Uint8Array, fua: boolean): Promise<void> { await this.changing(async d => { await d.write(offset, data, fua) }) }
  async flush (): Promise<void> { await (this.claimedDev ?? this.dev).flush() }
  async trim (offset: number, length: number, fua: boolean): Promise<void> { await this.changing(async d => { await d.trim(offset, length, fua) }) }
  async writeZeroes (offset: number, length: number, fua: boolean): Promise<void> { await this.changing(async d => { await d.writeZeroes(offset, length, fua) }) }
}

/** the writer handles of each volume; quiet ones are dropped when counted (not a VM disk's: see handle) */
export class Writers {
  private readonly byVolume = new Map<string, Set<WriterHandle>>()
  readonly idleMs: number
  private readonly others?: OtherWriters
  private readonly onDiskClosed?: (volume: string, epoch: number) => void
  /** the event loop's last beat (performance.now), and the timer that takes it */
  private lastBeat = performance.now()
  private readonly beat: NodeJS.Timeout
  private readonly stallMs: number
  private readonly epochs?: ClaimEpochs
  /** per volume, the epoch this node is fencing in for a claim of its own */
  private readonly fencing = new Map<string, number>()

  /**
   * `others`: how a plain export's session asks the other nodes (none: it does not ask);
   * `onDiskClosed`: the last VM disk session of a volume at an epoch here ended (its
   * cache is emptied: local-cache.ts); `epochs`: each claim that wins takes a writer
   * epoch of its own (ClaimEpochs; none: plain sessions write at the volume's epoch)
   */
  constructor (idleMs: number, others?: OtherWriters, onDiskClosed?: (volume: string, epoch: number) => void, opts: { stallMs?: number, epochs?: ClaimEpochs } = {}) {
    this.idleMs = idleMs
    this.others = others
    this.onDiskClosed = onDiskClosed
    this.epochs = opts.epochs
    this.stallMs = opts.stallMs ?? STALL_MS
    this.beat = setInterval(() => { this.checkStall() }, BEAT_MS)
    this.beat.unref()
  }

  /** stops the beat */
  close (): void { clearInterval(this.beat) }

  /** a beat came late by a stall: every plain session's claim ends (the top of this file) */
  checkStall (): void {
    const now = performance.now()
    if (now - this.lastBeat >= this.stallMs) {
      for (const s of this.byVolume.values()) for (const h of s) if (!h.holdsOpen) h.lastWriteAt = 0
    }
    this.lastBeat = now
  }

  /**
   * `exclusive`: a plain export's session, which writes only while no other node's does.
   * Otherwise a VM's disk (pinned to its writer epoch): a writer for as long as it is
   * open, quiet or not, so a plain session elsewhere is refused while the VM idles.
   */
  handle (volume: string, dev: BlockDevice, o: { exclusive?: boolean, epoch?: number, claimed?: (h: WriterHandle) => BlockDevice } = {}): WriterHandle {
    const add = (h: WriterHandle): void => {
      let s = this.byVolume.get(volume)
      if (s == null) this.byVolume.set(volume, s = new Set())
      s.add(h)
    }
    const exclusive = o.exclusive === true
    const vmDisk = (): boolean => [...this.byVolume.get(volume) ?? []].some(x => x.holdsOpen)
    const sibling = (h: WriterHandle): { epoch: number | null } | Promise<unknown> | null => {
      const now = Date.now()
      for (const x of this.byVolume.get(volume) ?? []) {
        if (x === h || x.holdsOpen) continue
        if (x.claimingNow != null) return x.claimingNow.catch(() => {})
        if (x.lastWriteAt > 0 && now - x.lastWriteAt <= this.idleMs) return { epoch: x.claimEpoch }
      }
      return null
    }
    const epochs = this.epochs == null || o.claimed == null
      ? undefined
      : { ...this.epochs, fencing: (e: number | null) => { if (e == null) this.fencing.delete(volume); else this.fencing.set(volume, e) } }
    const h = new WriterHandle(dev, add, exclusive && this.others != null ? { volume, others: this.others, idleMs: this.idleMs, vmDisk, checkStall: () => { this.checkStall() }, sibling, epochs, claimed: o.claimed } : undefined)
    h.epoch = o.epoch
    if (!exclusive) {
      h.holdsOpen = true
      add(h)
    }
    return h
  }

  /** the session of this handle ended */
  release (h: BlockDevice): void {
    if (!(h instanceof WriterHandle)) return
    for (const [volume, s] of this.byVolume) {
      if (!s.delete(h)) continue
      if (s.size === 0) this.byVolume.delete(volume)
      if (h.holdsOpen && h.epoch != null && !this.holds(volume, h.epoch)) this.onDiskClosed?.(volume, h.epoch)
    }
  }

  /**
   * The answer to another node's claim of the volume: the sessions here that already
   * write it, and whether one is claiming it now. `askerWins` (the asker's id is the
   * smaller): a claim here gives way, named `asker` in its refusal.
   */
  answerClaim (volume: string, asker: string, askerWins: boolean, now = Date.now()): { writers: number, claiming: boolean } {
    this.count(volume, now)
    const hs = [...this.byVolume.get(volume) ?? []]
    const writers = hs.filter(h => h.pending == null).length
    const pending = hs.filter(h => h.pending != null)
    // a session here that already writes refuses the asker: a sibling's claim here need not give way
    if (askerWins && writers === 0) for (const h of pending) h.pending!.lost ??= asker
    return { writers, claiming: pending.length > 0 }
  }

  /**
   * Whether a VM's disk session at `epoch` is open here (a VM disk's epoch is its
   * holder's own: another run of the VM fences this one out first, and a plain session
   * is refused while the VM uses the volume). What the node's cache serves (local-cache.ts).
   */
  holds (volume: string, epoch: number): boolean {
    for (const h of this.byVolume.get(volume) ?? []) if (h.holdsOpen && h.epoch === epoch) return true
    return false
  }

  /**
   * A VM's holder fenced the volume in: the plain sessions here that hold or are
   * claiming it must claim it again before their next write (and are refused while the
   * VM uses it). Its disk's own sessions keep theirs.
   */
  revokeClaims (volume: string, epoch?: number): void {
    // the fence of this node's own claim, on its way to every node
    if (epoch != null && this.fencing.get(volume) === epoch) return
    const s = this.byVolume.get(volume)
    if (s == null) return
    for (const h of [...s]) {
      if (h.holdsOpen) continue
      h.lastWriteAt = 0
      if (h.pending != null) h.pending.lost ??= 'the node of a VM whose disk it is'
      s.delete(h)
    }
    if (s.size === 0) this.byVolume.delete(volume)
  }

  /** of count's sessions, those of a VM's disk (pinned: open for as long as its QEMU has it, a VM stopping included) */
  vmDisks (volume: string): number {
    let n = 0
    for (const h of this.byVolume.get(volume) ?? []) if (h.holdsOpen) n++
    return n
  }

  /** sessions that wrote to the volume within idleMs */
  count (volume: string, now = Date.now()): number {
    const s = this.byVolume.get(volume)
    if (s == null) return 0
    for (const h of s) if (!h.holdsOpen && now - h.lastWriteAt > this.idleMs) s.delete(h)
    if (s.size === 0) this.byVolume.delete(volume)
    return s.size
  }
}
