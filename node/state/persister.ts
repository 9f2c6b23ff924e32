// Keeps the disk in step with the replica. Writers ask for durability and get it
// from the next flush: every flush appends all changes since the last one as one
// record and fsyncs once (group commit), so a burst of writes costs one fsync.
// When the log outgrows the snapshot the flush writes a new snapshot instead.
import type { Replica } from '../../crdt/index.ts'
import { sameHeads } from '../../crdt/index.ts'
import type { StateStore } from './store.ts'

export interface PersisterInit {
  store: StateStore
  replica: Replica
  /** compact when the log is larger than this and than the snapshot */
  compactLogBytes?: number
  /** heads of what is already on disk (default: the replica's heads now) */
  savedHeads?: string[]
  onFlush?: (kind: 'append' | 'snapshot', bytes: number, ms: number) => void
}

interface Waiter { resolve: () => void, reject: (err: Error) => void }

export class Persister {
  private readonly init: PersisterInit
  private savedHeads: string[]
  private waiters: Waiter[] = []
  private running = false
  private wantSnapshot = false
  lastFlushAt = 0
  lastSnapshotAt = 0

  constructor (init: PersisterInit) {
    this.init = init
    this.savedHeads = init.savedHeads ?? init.replica.heads()
  }

  /** Resolves once everything the replica holds now is on disk (fsync'ed). */
  async flush (): Promise<void> {
    return await new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      this.kick()
    })
  }

  /** Resolves once a fresh snapshot holding everything is on disk and the log is empty. */
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
      while (this.waiters.length > 0) {
        const batch = this.waiters
        this.waiters = []
        try {
          await this.once()
          for (const w of batch) w.resolve()
        } catch (err) {
          for (const w of batch) w.reject(err as Error)
        }
      }
    } finally {
      this.running = false
    }
  }

  private async once (): Promise<void> {
    const { store, replica } = this.init
    const heads = replica.heads()
    const sizes = store.sizes
    const limit = Math.max(this.init.compactLogBytes ?? 4 * 1024 * 1024, sizes.snapshotBytes)
    const t0 = performance.now()
    if (this.wantSnapshot || sizes.logBytes > limit) {
      this.wantSnapshot = false
      const bytes = replica.save()
      await store.writeSnapshot(bytes)
      this.lastSnapshotAt = Date.now()
      this.init.onFlush?.('snapshot', bytes.byteLength, performance.now() - t0)
    } else if (!sameHeads(heads, this.savedHeads)) {
      const bytes = replica.saveSince(this.savedHeads)
      await store.append(bytes)
      this.init.onFlush?.('append', bytes.byteLength, performance.now() - t0)
    }
    this.savedHeads = heads
    this.lastFlushAt = Date.now()
  }
}
