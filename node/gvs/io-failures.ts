// The NBD requests this node's clients saw fail with an I/O error or a full disk, per
// export, for the node's health (`/v1/status`): a volume whose writes fail (too few
// live holders, a full or read-only disk, a replica that stays out of reach) is a
// problem an operator must see there, not only in the agent's log and the guest's
// kernel. A failure is shown for `windowMs` after the last one, or until a request of
// the same kind to that export succeeds (the cause passed: a majority back, a replica
// back); a read that succeeds does not clear failing writes.
import type { HealthProblem } from '../api/types.ts'

export const IO_FAILURE_WINDOW_MS = 60_000
/** at most this many exports are named in one problem */
const NAMED = 5

interface Failure { first: number, last: number, count: number, request: string, message: string }

export class IoFailures {
  private readonly byExport = new Map<string, Failure>()
  private readonly windowMs: number
  private readonly now: () => number

  constructor (windowMs = IO_FAILURE_WINDOW_MS, now: () => number = Date.now) {
    this.windowMs = windowMs
    this.now = now
  }

  failed (name: string, request: string, message: string): void {
    const now = this.now()
    const f = this.byExport.get(name)
    if (f != null && now - f.last <= this.windowMs) {
      Object.assign(f, { last: now, count: f.count + 1, request, message })
      return
    }
    this.byExport.set(name, { first: now, last: now, count: 1, request, message })
  }

  /** a request of `request`'s kind to `name` succeeded: failures of that kind are over */
  succeeded (name: string, request: string): void {
    if (this.byExport.get(name)?.request === request) this.byExport.delete(name)
  }

  /** why the volume of export `name` is failing through this node (null: it is not), for its state (volume-states.ts) */
  of (name: string): string | null {
    const f = this.byExport.get(name)
    if (f == null || this.now() - f.last > this.windowMs) return null
    return `NBD requests through this node failed ${f.count} time${f.count === 1 ? '' : 's'} since ${new Date(f.first).toISOString()}, the last a ${f.request} at ${new Date(f.last).toISOString()}: ${f.message}`
  }

  problems (): HealthProblem[] {
    const now = this.now()
    for (const [k, f] of this.byExport) if (now - f.last > this.windowMs) this.byExport.delete(k)
    if (this.byExport.size === 0) return []
    const all = [...this.byExport].sort((a, b) => b[1].last - a[1].last)
    const named = all.slice(0, NAMED).map(([name, f]) => `/${name}: ${f.count} failed since ${new Date(f.first).toISOString()}, the last a ${f.request} at ${new Date(f.last).toISOString()}: ${f.message}`)
    const more = all.length > NAMED ? `; and ${all.length - NAMED} more` : ''
    return [{ service: 'gvs', cause: 'volume-io-failing', message: `NBD requests to ${all.length} volume(s) failed in the last ${Math.round(this.windowMs / 1000)} s: ${named.join('; ')}${more}`, since: new Date(Math.min(...all.map(([, f]) => f.first))).toISOString() }]
  }
}
