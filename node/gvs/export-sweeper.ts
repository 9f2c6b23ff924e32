// Removes the snapshots of exports that are gone (export-holds.ts decides which), and
// renews this node's holds in the document while its exports run. It knows what only
// this node can: the leases of the exports it serves (a `vgrid vol export` takes one
// with its snapshot and renews it every few seconds while it copies: a CLI killed, even
// by SIGKILL, renews it no more) and the NBD sessions here that read a snapshot. It
// sweeps every SWEEP_MS, soon after a reading session ends and as a lease runs out. It
// removes its own node's abandoned export snapshots, and those of a node found dead
// whose hold expired when it coordinates the volume (coordinatorOf: one node per
// volume acts). A removal takes the snapshot's entry only: its layers stay while the
// volume or a clone reads through them (layer-reclaim.ts).
import { randomBytes } from 'node:crypto'
import type { Volume, Writer } from '../../crdt/index.ts'
import { snapshotOf } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'
import { BackgroundPass } from './background-pass.ts'
import { abandonedExports, exportFate, exportRecordOf, exportRenewals, heldKey, type ExportFacts, type ExportFate, type ExportRecord, EXPORT_HOLD_MS } from './export-holds.ts'
import { coordinatorOf } from './health.ts'

/** how often the export snapshots are looked over (besides soon after a lease or a reading session ends) */
export const SWEEP_MS = 15_000
/** how long an export's lease lasts unrenewed (its CLI renews it every third of this) */
export const EXPORT_LEASE_MS = 15_000
/** the sweep after a lease or a reading session ended */
const SOON_MS = 100

export interface ExportSweeperComponents {
  self: string
  log: Logger
  volumes: () => Volume[]
  /** the members' states as membership has them */
  members: () => ReadonlyMap<string, string>
  /** the live nodes that may coordinate (coordinatorOf over health.ts coordinatorCandidates) */
  live: () => Iterable<string>
  /** this node sees a majority of the roll */
  majority: () => boolean
  write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T>
}

export class ExportSweeper {
  /** this agent's run: a record naming another run of this node is of an export that ended with it */
  readonly run = randomBytes(6).toString('hex')
  private readonly c: ExportSweeperComponents
  /** the exports' leases here: when each runs out, by VOLUME-ID@NAME */
  private readonly leases = new Map<string, number>()
  /** wakes a sweep when the next lease runs out */
  private leaseTimer: NodeJS.Timeout | null = null
  /** how long a lease lasts unrenewed */
  readonly leaseMs: number
  /** NBD sessions reading a snapshot, by VOLUME-ID@NAME */
  private readonly readers = new Map<string, number>()
  /** the snapshot each reading session's device is of */
  private readonly readerKeys = new Map<object, string>()
  private readonly pass: BackgroundPass

  constructor (c: ExportSweeperComponents, o: { sweepMs?: number, leaseMs?: number } = {}) {
    this.c = c
    this.leaseMs = o.leaseMs ?? EXPORT_LEASE_MS
    this.pass = new BackgroundPass({
      periodMs: o.sweepMs ?? SWEEP_MS,
      delayMs: SOON_MS,
      run: async () => { await this.sweep(); return false },
      failed: err => { this.c.log.warn('the sweep of abandoned export snapshots failed (tried again later)', { error: String(err) }) }
    })
  }

  start (): void { this.pass.start() }
  async stop (): Promise<void> {
    if (this.leaseTimer != null) clearTimeout(this.leaseTimer)
    this.leaseTimer = null
    await this.pass.stop()
  }

  /** the record of an export snapshot this node makes now */
  record (now = Date.now(), quiet = false): ExportRecord { return { node: this.c.self, run: this.run, until: now + EXPORT_HOLD_MS, ...quiet ? { quiet: true as const } : {} } }

  /**
   * Takes or renews the lease of an export on VOLUME@NAME for `leaseMs` from `now`
   * (taken before its snapshot is, so that no sweep finds the snapshot unheld). Once it
   * runs out unrenewed, and no NBD session here reads the snapshot, the snapshot goes.
   */
  lease (volume: string, snapshot: string, now = Date.now()): void {
    this.leases.set(heldKey(volume, snapshot), now + this.leaseMs)
    this.wakeAtNextExpiry()
  }

  /** the lease of an export on VOLUME@NAME is given up (its snapshot was removed, or could not be taken) */
  endLease (volume: string, snapshot: string): void {
    if (this.leases.delete(heldKey(volume, snapshot))) this.pass.changed()
  }

  /** whether this node holds a lease on VOLUME@NAME now */
  leased (volume: string, snapshot: string, now = Date.now()): boolean {
    return (this.leases.get(heldKey(volume, snapshot)) ?? 0) > now
  }

  /** a sweep just after the earliest lease runs out (leases run out of themselves: nothing else marks it) */
  private wakeAtNextExpiry (): void {
    if (this.leaseTimer != null) clearTimeout(this.leaseTimer)
    this.leaseTimer = null
    if (this.leases.size === 0) return
    const next = Math.min(...this.leases.values())
    this.leaseTimer = setTimeout(() => {
      this.leaseTimer = null
      const now = Date.now()
      for (const [k, until] of this.leases) if (until <= now) this.leases.delete(k)
      this.pass.changed()
      this.wakeAtNextExpiry()
    }, Math.max(0, next - Date.now()) + 10)
    this.leaseTimer.unref?.()
  }

  /** an NBD session opened `dev` for a snapshot of volume `volume` (not for a volume: nothing to note) */
  opened (dev: object, volume: string, snapshot: string): void {
    if (this.readerKeys.has(dev)) return
    const key = heldKey(volume, snapshot)
    this.readerKeys.set(dev, key)
    count(this.readers, key, 1)
  }

  /** the session that opened `dev` ended */
  released (dev: object): void {
    const key = this.readerKeys.get(dev)
    if (key == null) return
    this.readerKeys.delete(dev)
    count(this.readers, key, -1)
    this.pass.changed()
  }

  facts (now = Date.now()): ExportFacts {
    const held = new Set([...[...this.leases].filter(([, until]) => until > now).map(([k]) => k), ...this.readers.keys()])
    return { now, self: this.c.self, run: this.run, held, members: this.c.members(), majority: this.c.majority() }
  }

  /** what becomes of volume `v`'s export snapshots as this node sees it now (a volume's removal takes the abandoned ones with it) */
  fates (v: Volume, facts = this.facts()): ExportFate[] {
    return Object.values(v.snapshots).map(s => exportFate(v, s, facts)).filter(x => x != null)
  }

  /**
   * Removes the abandoned export snapshots that are this node's to remove, and renews
   * the holds of its exports that run; decided again inside the write, on the document as
   * it is then. Returns the removals, each logged.
   */
  async sweep (): Promise<ExportFate[]> {
    const facts = this.facts()
    const mine = (vols: readonly Volume[]): ExportFate[] => {
      const live = [...this.c.live()]
      return abandonedExports(vols, facts).filter(a => a.node === this.c.self || coordinatorOf(a.volume, live) === this.c.self)
    }
    const vols = this.c.volumes()
    if (mine(vols).length === 0 && exportRenewals(vols, facts).length === 0) return []
    const removed = await this.c.write(w => {
      const now = w.reader.list('volumes')
      const gone = mine(now)
      for (const a of gone) w.removeSnapshot(a.volume, a.snapshot)
      for (const r of exportRenewals(now, facts)) {
        const v = now.find(x => x.id === r.volume)
        const s = v == null ? undefined : snapshotOf(v, r.snapshot)
        if (s == null || exportRecordOf(s) == null) continue
        const { at: _at, by: _by, ...rest } = s
        w.addSnapshot(r.volume, { ...rest, export: r.record } as typeof rest)
      }
      return gone
    }, 'export snapshots: abandoned removed, holds renewed')
    for (const a of removed) this.c.log.info('removed an export snapshot whose export is gone', { volume: a.path, snapshot: a.snapshot, node: a.node, why: a.why })
    return removed
  }
}

function count (m: Map<string, number>, key: string, by: number): void {
  const n = (m.get(key) ?? 0) + by
  if (n > 0) m.set(key, n)
  else m.delete(key)
}
