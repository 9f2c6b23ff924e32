// The document updates DVMM queues between decision steps (statuses, exits, roll
// entry, lease rewrites), written with the next step's claims and releases in one
// change: an agent gets few acknowledged writes per second while many peers sync. An
// update is kept until a write that carries it succeeds.
import { InvalidObjectError, type Writer } from '../../crdt/index.ts'
import type { Logger } from '../log.ts'

/** a queued document update; `key`: a newer one with the same key replaces it; `written`: called once it is written */
interface PendingOp { apply: (w: Writer) => void, key?: string, written?: () => void }

export interface UpdateQueueComponents {
  log: Logger
  state: { write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
  /** asks for a decision step soon (it writes what is queued) */
  schedule: () => void
}

export class UpdateQueue {
  private readonly c: UpdateQueueComponents
  private readonly pending: PendingOp[] = []

  constructor (components: UpdateQueueComponents) {
    this.c = components
  }

  get size (): number { return this.pending.length }

  /** Queues a document update for the next step (one change for many updates). */
  enqueue (fn: (w: Writer) => void, opts: { key?: string, written?: () => void } = {}): void {
    const op: PendingOp = { apply: fn, ...opts }
    const i = opts.key == null ? -1 : this.pending.findIndex(p => p.key === opts.key)
    if (i >= 0) this.pending[i] = op
    else this.pending.push(op)
    this.c.schedule()
  }

  /** Writes every queued update and then `fn` in one change; returns what `fn` returned. */
  async write<T> (fn: (w: Writer) => T, message: string): Promise<T> {
    const ops = this.pending.splice(0)
    let out: T
    try {
      out = await this.c.state.write(w => {
        this.apply(w, ops)
        return fn(w)
      }, message)
    } catch (err) {
      // nothing was written: the updates go out with a later write; a newer update
      // with the same key, queued meanwhile, wins
      const keys = new Set(this.pending.map(p => p.key).filter(k => k != null))
      this.pending.unshift(...ops.filter(op => op.key == null || !keys.has(op.key)))
      throw err
    }
    for (const op of ops) op.written?.()
    return out
  }

  /** Takes every queued update, for a last write of the caller's own (the leave): not queued again, not reported written. */
  takeAll (): (w: Writer) => void {
    const ops = this.pending.splice(0)
    return w => { this.apply(w, ops) }
  }

  private apply (w: Writer, ops: PendingOp[]): void {
    for (const op of ops) {
      try { op.apply(w) } catch (err) {
        // one the schema refuses is this agent's bug, not a lease gone meanwhile: said louder
        if (err instanceof InvalidObjectError) this.c.log.warn('a queued update was refused by the schema, and dropped', { err: err.message })
        else this.c.log.debug('a queued update no longer applies', { err: (err as Error).message })
      }
    }
  }
}
