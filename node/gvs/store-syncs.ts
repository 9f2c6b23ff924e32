// What of the object store (object-store.ts) is not yet on stable storage, and getting
// it there: the files and directories written since their last fsync, the flushes in
// progress, and the objects an fsync failed on.
// - A flush returns only once every write completed before it was called is on stable
//   storage, also when another flush (another writer's, on another connection) already
//   took those paths and is still syncing them: it waits for the flushes in progress.
// - An fsync that fails on an object's file marks the object lost, not dirty again: on
//   Linux the kernel may have dropped the unwritten pages and marked them clean, so a
//   retried fsync succeeds with the data gone. The store then treats the copy as
//   damaged (never served, verify reports it, scrub re-copies it) until it is rewritten
//   whole or removed. The flush that saw the error fails, and so does the next flush of
//   the object's own volume if that was not the one (another volume's flush, or the
//   background writeback, took the object's files): each volume's writer learns of
//   each error once, as from a disk, and never has a flush acknowledged over data the
//   kernel dropped. A lost object does not fail every later flush of every volume on
//   the node; it is detected and repaired as any damaged copy is. The mark is in
//   memory: after a restart, what is on disk is what a crash leaves, where the
//   checksums and versions tell what is missing.
// - A directory whose fsync failed is synced again by the next flush: its entries go
//   through the file system's journal, whose failure is sticky (later fsyncs fail too).
import { dirname } from 'node:path'
import { SYNCS_AT_ONCE, inParallel } from './file-io.ts'

/** fsync by path, a trailing "/" marking a directory (file-io.ts syncPath) */
export type Fsync = (path: string) => Promise<void>

interface Flush { paths: Set<string>, done: Promise<void> }

const isEnoent = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT'

export class StoreSyncs {
  private readonly fsync: Fsync
  private readonly onLost: (data: string) => void
  /** files and directories written since their last fsync */
  private readonly dirty = new Set<string>()
  /** flushes whose fsyncs are running, with the paths each took from `dirty` */
  private readonly flushing = new Set<Flush>()
  /** objects (their data paths) an fsync failed on, until rewritten or removed */
  private readonly lost = new Set<string>()
  /** by volume directory: the first fsync error on one of its objects that no flush of that volume has reported yet */
  private readonly owed = new Map<string, unknown>()

  /** onLost: an object was just marked lost (the store reports it as damaged) */
  constructor (fsync: Fsync, onLost: (data: string) => void) {
    this.fsync = fsync
    this.onLost = onLost
  }

  add (path: string): void { this.dirty.add(path) }

  /** whether the path waits for an fsync: written since, or taken by a flush still running */
  pending (path: string): boolean {
    if (this.dirty.has(path)) return true
    for (const f of this.flushing) if (f.paths.has(path)) return true
    return false
  }

  /** the path is gone (removed): nothing of it is left to sync */
  forget (path: string): void { this.dirty.delete(path) }

  /** everything under a removed directory */
  forgetUnder (dir: string): void {
    for (const path of [...this.dirty]) if (path.startsWith(dir + '/')) this.dirty.delete(path)
    for (const data of [...this.lost]) if (data.startsWith(dir + '/')) this.lost.delete(data)
    for (const vol of [...this.owed.keys()]) if (vol === dir || vol.startsWith(dir + '/')) this.owed.delete(vol)
  }

  /** whether anything written waits for an fsync */
  get hasDirty (): boolean { return this.dirty.size > 0 }

  isLost (data: string): boolean { return this.lost.size > 0 && this.lost.has(data) }

  /** the object's files were written whole again (or removed): no longer lost */
  rewritten (data: string): void { this.lost.delete(data) }

  /** an fsync of one of the object's files failed (its path: data or side file), with `err` */
  markLost (file: string, err?: unknown): void {
    const data = file.endsWith('.sum') ? file.slice(0, -4) : file
    const vol = dirname(data)
    if (!this.owed.has(vol)) this.owed.set(vol, err ?? new Error(`an fsync of ${file} failed`))
    if (this.lost.has(data)) return
    this.lost.add(data)
    this.onLost(data)
  }

  /** fsync of one path now; a file removed meanwhile has nothing to sync; a failed file marks its object lost */
  async syncNow (path: string): Promise<void> {
    try { await this.fsync(path) } catch (err) {
      if (isEnoent(err)) return
      if (path.endsWith('/')) this.dirty.add(path)
      else this.markLost(path, err)
      throw err
    }
  }

  /**
   * Those of `paths` that wait for an fsync (a new object's directory entry, for a FUA
   * write), synced now: taken from `dirty` as a flush takes them, so that a flush
   * meanwhile waits for this one, and each is synced once, not by every later FUA write.
   */
  async syncPending (paths: string[]): Promise<void> {
    const taken = paths.filter(x => this.pending(x))
    if (taken.length === 0) return
    for (const path of taken) this.dirty.delete(path)
    const mine: Flush = { paths: new Set(taken), done: this.syncAll(taken) }
    this.flushing.add(mine)
    try { await mine.done } finally { this.flushing.delete(mine) }
  }

  /**
   * Everything written before this call, on stable storage. `volumeDir`: the flush is
   * that volume's writer's, which also gets an error an earlier fsync of one of its
   * objects met and no flush of it reported (the writeback's, another volume's flush).
   */
  async flush (volumeDir?: string): Promise<void> {
    // what was written before this call and is not in `dirty` any more is in a flush
    // still running: this one waits for those too
    const earlier = [...this.flushing].map(f => f.done)
    const paths = [...this.dirty]
    this.dirty.clear()
    const mine: Flush = { paths: new Set(paths), done: this.syncAll(paths) }
    this.flushing.add(mine)
    try {
      const failed = (await Promise.allSettled([mine.done, ...earlier])).find(r => r.status === 'rejected')
      const owed = volumeDir === undefined ? undefined : this.owed.get(volumeDir)
      // one error reported to the volume's writer settles what it was owed
      if (volumeDir !== undefined && (failed != null || owed !== undefined)) this.owed.delete(volumeDir)
      if (failed != null) throw failed.reason
      if (owed !== undefined) throw owed
    } finally { this.flushing.delete(mine) }
  }

  /**
   * Files before the directories that name them. Several at once: the file system
   * commits concurrent fsyncs together (one journal commit for many files, where one
   * by one each paid its own: 256 files of a 512 MiB write took twice as long). Every
   * path is tried; the first error is thrown at the end.
   */
  private async syncAll (paths: string[]): Promise<void> {
    let first: { err: unknown } | null = null
    const one = async (path: string): Promise<void> => { await this.syncNow(path).catch(err => { first ??= { err } }) }
    await inParallel(paths.filter(x => !x.endsWith('/')), SYNCS_AT_ONCE, one)
    await inParallel(paths.filter(x => x.endsWith('/')), SYNCS_AT_ONCE, one)
    if (first != null) throw (first as { err: unknown }).err
  }
}
