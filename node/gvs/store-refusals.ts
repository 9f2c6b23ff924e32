// Requests this node's store refused for a fault of its own, other than want of room
// (disk-full.ts): files it cannot write (read-only, permissions, I/O errors: code `io`)
// or a writer epoch file it cannot read. The node whose store refuses must say so
// itself (bb35: `chattr +i` on a volume's directory, or a damaged epoch file, failed
// every write with EIO while the node's health and the volume said healthy). Shown for
// `windowMs` after the last one.
import type { HealthProblem } from '../api/types.ts'
import { GvsError } from './errors.ts'

export const STORE_REFUSAL_WINDOW_MS = 60_000

/** the start of the message of a writer epoch file's damage (epochs.ts) */
export const EPOCH_FILE_DAMAGED = 'epoch file of volume '

interface Seen { first: number, last: number, count: number, message: string }

/** the file system's answers that say the store's disk or directory is at fault (not a race: a file removed meanwhile is ENOENT) */
const STORE_FAULTS = new Set(['EIO', 'EROFS', 'EPERM', 'EACCES', 'ENOTDIR', 'EISDIR', 'EFBIG', 'EUCLEAN'])

export class StoreRefusals {
  private seen: Seen | null = null
  private readonly dir: string
  private readonly windowMs: number
  private readonly now: () => number

  constructor (dir: string, windowMs = STORE_REFUSAL_WINDOW_MS, now: () => number = Date.now) {
    this.dir = dir
    this.windowMs = windowMs
    this.now = now
  }

  /** a request to this node's store failed: counted if for a fault of the store's own */
  note (err: unknown): void {
    if (!(err instanceof GvsError)) return
    const fsCode = (err.cause as NodeJS.ErrnoException | undefined)?.code
    const fault = (err.code === 'io' && fsCode != null && STORE_FAULTS.has(fsCode)) || (err.code === 'damaged' && err.message.startsWith(EPOCH_FILE_DAMAGED))
    if (!fault) return
    const now = this.now()
    if (this.seen != null && now - this.seen.last <= this.windowMs) Object.assign(this.seen, { last: now, count: this.seen.count + 1, message: err.message })
    else this.seen = { first: now, last: now, count: 1, message: err.message }
  }

  problems (): HealthProblem[] {
    const s = this.seen
    if (s == null || this.now() - s.last > this.windowMs) { this.seen = null; return [] }
    return [{ service: 'gvs', cause: 'store-refusing', message: `this node's volume store (${this.dir}) failed ${s.count} request(s) on its own files since ${new Date(s.first).toISOString()}, the last: ${s.message}; check that directory and its disk (read-only, permissions, I/O errors, or a damaged epoch file as its log says): writes to the volumes with copies here fail until then`, since: new Date(s.first).toISOString() }]
  }
}
