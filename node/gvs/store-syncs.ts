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
//   whole or removed.
// - Its writer learns of it once, from the next flush of the object's volume that
//   began after the failed fsync did (the failure is a debt, tagged with the flush that
//   met it), whichever flush that was: its own, another volume's (a flush syncs every
//   volume's dirty files), or the background writeback's. So no flush is acknowledged
//   over data the kernel dropped, a flush is not failed by an error in data it did not
//   cover (a write after it began), and another volume's writer is not failed by it. A
//   whole sound copy written over the object (scrub, a heal), or its removal, settles
//   the debt: nothing of the writer's is missing then. A failed FUA write or object
//   sync is answered to its caller and owes nothing, but a FUA write's failed fsync
//   also dropped the writes to the object that waited for a flush: those are owed to
//   every flush to come (tag 0). A flush that names no volume (an agent of an earlier
//   release) takes every debt due. The marks are in memory: after a restart, what is
//   on disk is what a crash leaves, where the checksums and versions tell what is
//   missing.
// - A directory whose fsync failed is synced again by the next flush: its entries go
//   through the file system's journal, whose failure is sticky (later fsyncs fail too).
import { SYNCS_AT_ONCE, inParallel } from './file-io.ts'

/** fsync by path, a trailing "/" marking a directory (file-io.ts syncPath) */
export type Fsync = (path: string) => Promise<void>

/** the fsyncs that failed in one round, by path */
type Failures = Array<{ path: string, err: unknown }>

interface Flush { id: number, paths: Set<string>, done: Promise<Failures> }

/**
 * Whose flush it is: a volume writer's (its directory), a writer's of an unknown volume
 * ('any': an agent of an earlier release), or the store's own ('store': the writeback,
 * a stop), which fails on any error it met and takes no debt.
 */
export type FlushScope = { volumeDir: string } | 'any' | 'store'

interface Debt { err: unknown, flush: number }

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
  /** by data path: an fsync error a flush met on the object, not yet reported to its volume's writer */
  private readonly debts = new Map<string, Debt>()
  private nextFlush = 1

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

  /** the path is gone (removed): nothing of it is left to sync (its debt: `rewritten`) */
  forget (path: string): void { this.dirty.delete(path) }

  /** everything under a removed directory */
  forgetUnder (dir: string): void {
    for (const path of [...this.dirty]) if (path.startsWith(dir + '/')) this.dirty.delete(path)
    for (const data of [...this.lost]) if (data.startsWith(dir + '/')) this.lost.delete(data)
    for (const data of [...this.debts.keys()]) if (data.startsWith(dir + '/')) this.debts.delete(data)
  }

  /** whether anything written waits for an fsync */
  get hasDirty (): boolean { return this.dirty.size > 0 }

  isLost (data: string): boolean { return this.lost.size > 0 && this.lost.has(data) }

  /** the object's files were written whole again (or removed): no longer lost, nothing owed */
  rewritten (data: string): void {
    this.lost.delete(data)
    this.debts.delete(data)
  }

  /**
   * An fsync of one of the object's files failed (its path: data or side file); in
   * flush `flush` (0: before any flush now running or to come), a debt to its volume's
   * writer. Of two failures the earlier flush's tag is kept: a flush waiting for that
   * one must not miss it because a later flush failed first.
   */
  markLost (file: string, err?: unknown, flush?: number): void {
    const data = file.endsWith('.sum') ? file.slice(0, -4) : file
    const had = this.debts.get(data)
    if (flush !== undefined && (had == null || flush < had.flush)) this.debts.set(data, { err: had?.err ?? err ?? new Error(`an fsync of ${file} failed`), flush })
    if (this.lost.has(data)) return
    this.lost.add(data)
    this.onLost(data)
  }

  /** fsync of one path now; a file removed meanwhile has nothing to sync; a failed file marks its object lost (owed, in flush `flush`) */
  async syncNow (path: string, flush?: number): Promise<void> {
    try { await this.fsync(path) } catch (err) {
      if (isEnoent(err)) return
      if (path.endsWith('/')) this.dirty.add(path)
      else this.markLost(path, err, flush)
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
    // an id of its own (flushes wait for it), but no debts: its caller gets its error
    const mine: Flush = { id: this.nextFlush++, paths: new Set(taken), done: this.syncAll(taken) }
    this.flushing.add(mine)
    try {
      const failed = await mine.done
      if (failed.length > 0) throw failed[0]!.err
    } finally { this.flushing.delete(mine) }
  }

  /**
   * Everything written before this call, on stable storage, for `scope` (FlushScope):
   * it fails on a directory that failed, and on each debt due to it (see the top).
   */
  async flush (scope: FlushScope = 'any'): Promise<void> {
    const id = this.nextFlush++
    // what was written before this call and is not in `dirty` any more is in a flush
    // still running: this one waits for those too
    const earlier = [...this.flushing].map(f => f.done)
    const paths = [...this.dirty]
    this.dirty.clear()
    const mine: Flush = { id, paths: new Set(paths), done: this.syncAll(paths, id) }
    this.flushing.add(mine)
    try {
      const failures = (await Promise.all([mine.done, ...earlier])).flat()
      if (scope === 'store') {
        if (failures.length > 0) throw failures[0]!.err
        return
      }
      // every flush with a lower id has ended (it was over before this one began, or in `earlier`)
      const due = [...this.debts].filter(([data, d]) => d.flush <= id && (scope === 'any' || data.startsWith(scope.volumeDir + '/')))
      for (const [data] of due) this.debts.delete(data)
      const dir = failures.find(f => f.path.endsWith('/'))
      if (dir != null) throw dir.err
      if (due.length > 0) throw due[0]![1].err
    } finally { this.flushing.delete(mine) }
  }

  /**
   * Files before the directories that name them. Several at once: the file system
   * commits concurrent fsyncs together (one journal commit for many files, where one
   * by one each paid its own: 256 files of a 512 MiB write took twice as long). Every
   * path is tried; what failed is the answer (never a rejection). `flush`: the id of
   * the flush it is, whose failed objects are owed to their volumes.
   */
  private async syncAll (paths: string[], flush?: number): Promise<Failures> {
    const failed: Failures = []
    const one = async (path: string): Promise<void> => { await this.syncNow(path, flush).catch(err => { failed.push({ path, err }) }) }
    await inParallel(paths.filter(x => !x.endsWith('/')), SYNCS_AT_ONCE, one)
    await inParallel(paths.filter(x => x.endsWith('/')), SYNCS_AT_ONCE, one)
    return failed
  }
}
