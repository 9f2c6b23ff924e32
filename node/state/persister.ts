// Keeps the disk in step with the replica, and makes local writes durable before
// they exist anywhere else. A local write is made on a fork of the replica; the
// fork's new bytes are appended and fdatasync'ed; only then is the fork merged into
// the replica (and so visible, sent to peers, acknowledged). If the disk fails the
// fork is dropped: a write answered with an error was applied nowhere.
//
// Group commit: every write queued while a flush runs goes into the next one, so a
// burst of writes costs one fsync. Changes from peers (already in the replica) ride
// along in the same records. When the log outgrows the snapshot the flush writes a
// new snapshot instead. A snapshot counts once it is renamed in place: a failure after
// that (starting the new log) is reported as disk trouble, but the flush's writes stand,
// since a restart would read them from that snapshot.
import type { Replica, Writer } from '../../crdt/index.ts'
import { sameHeads } from '../../crdt/index.ts'
import { DiskError, type StateStore } from './store.ts'

/**
 * What the persister needs of the store (a narrow seam: tests inject disk faults here).
 * writeSnapshot throws if the snapshot does not count; a DiskError it resolves with is
 * trouble after the snapshot was saved (StateStore.writeSnapshot).
 */
export type PersisterStore = Pick<StateStore, 'sizes' | 'append'> & {
  writeSnapshot: (payload: Uint8Array) => Promise<unknown>
}

export interface PersisterInit {
  store: PersisterStore
  replica: Replica
  /** compact when the log is larger than this and than the snapshot */
  compactLogBytes?: number
  /** heads of what is already on disk (default: the replica's heads now) */
  savedHeads?: string[]
  onFlush?: (kind: 'append' | 'snapshot', bytes: number, ms: number) => void
  /** local writes were merged into the replica (after they became durable) */
  onCommitted?: (changes: number) => void
  /** the disk failed (the flush's writers got the error too) */
  onDiskError?: (err: DiskError) => void
}

interface Waiter { resolve: () => void, reject: (err: Error) => void }
interface Job { fn: (w: Writer) => unknown, message?: string, resolve: (v: unknown) => void, reject: (err: Error) => void }

export class Persister {
  private readonly init: PersisterInit
  private savedHeads: string[]
  private waiters: Waiter[] = []
  private jobs: Job[] = []
  private running = false
  private wantSnapshot = false
  lastFlushAt = 0
  lastSnapshotAt = 0

  constructor (init: PersisterInit) {
    this.init = init
    this.savedHeads = init.savedHeads ?? init.replica.heads()
  }

  /**
   * Runs `fn` as one change and resolves with its result once the change is on disk
   * and in the replica. Rejects with fn's own error (nothing written) or a DiskError
   * (nothing kept).
   */
  async commit<T> (fn: (w: Writer) => T, message?: string): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      this.jobs.push({ fn, message, resolve: resolve as (v: unknown) => void, reject })
      this.kick()
    })
  }

  /** Resolves once everything the replica holds now is on disk (fsync'ed). */
  async flush (): Promise<void> {
    return await new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      this.kick()
    })
  }

  /**
   * Resolves once a fresh snapshot holding everything is on disk and the log is empty
   * (or, if no new log could be started after it, once onDiskError has been told so).
   */
  async snapshot (): Promise<void> {
    this.wantSnapshot = true
    await this.flush()
  }

  /** true when the disk is behind the replica */
  get dirty (): boolean { return !sameHeads(this.savedHeads, this.init.replica.heads()) }

  private kick (): void {
    if (!this.running) void this.run()
  }

  private async run (): Promise<void> {
    this.running = true
    try {
      while (this.waiters.length > 0 || this.jobs.length > 0) {
        const batch = this.waiters
        const jobs = this.jobs
        this.waiters = []
        this.jobs = []
        await this.once(jobs, batch)
      }
    } finally {
      this.running = false
    }
  }

  private async once (jobs: Job[], waiters: Waiter[]): Promise<void> {
    const { replica } = this.init
    // local writes go on a fork; their results wait for the disk
    let fork: Replica | undefined
    const done: Array<{ job: Job, result: unknown }> = []
    let changes = 0
    if (jobs.length > 0) {
      fork = replica.fork()
      for (const job of jobs) {
        try {
          const { result, changed } = fork.change(job.fn, job.message)
          if (changed) changes++
          done.push({ job, result })
        } catch (err) {
          job.reject(err as Error)
        }
      }
    }
    const source = fork ?? replica
    let after: DiskError | undefined
    try {
      after = await this.persist(source)
    } catch (err) {
      const e = err instanceof DiskError ? err : new DiskError('other', (err as Error).message)
      if (fork != null) {
        fork.discard()
        if (changes > 0) replica.rotateActor()
      }
      for (const { job } of done) job.reject(e)
      for (const w of waiters) w.reject(e)
      this.init.onDiskError?.(e)
      return
    }
    if (fork != null) {
      replica.merge(fork)
      if (changes > 0) this.init.onCommitted?.(changes)
    }
    for (const { job, result } of done) job.resolve(result)
    for (const w of waiters) w.resolve()
    if (after != null) this.init.onDiskError?.(after)
  }

  /**
   * Writes what `source` holds beyond what is on disk: an append, or a snapshot.
   * Returns the trouble after a snapshot that counts (the log could not be started afresh).
   */
  private async persist (source: Replica): Promise<DiskError | undefined> {
    const { store } = this.init
    const heads = source.heads()
    const sizes = store.sizes
    const limit = Math.max(this.init.compactLogBytes ?? 4 * 1024 * 1024, sizes.snapshotBytes)
    const t0 = performance.now()
    let after: DiskError | undefined
    if (this.wantSnapshot || sizes.logBytes > limit) {
      const bytes = source.save()
      const problem = await store.writeSnapshot(bytes)
      if (problem instanceof DiskError) after = problem
      // the next flush tries a snapshot again (the store refuses appends until one starts a new log)
      this.wantSnapshot = after != null
      this.lastSnapshotAt = Date.now()
      this.init.onFlush?.('snapshot', bytes.byteLength, performance.now() - t0)
    } else if (!sameHeads(heads, this.savedHeads)) {
      const bytes = source.saveSince(this.savedHeads)
      await store.append(bytes)
      this.init.onFlush?.('append', bytes.byteLength, performance.now() - t0)
    }
    this.savedHeads = heads
    this.lastFlushAt = Date.now()
    return after
  }
}
