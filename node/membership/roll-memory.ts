// Which members were taken off the grid's roll (vgrid node forget), as opposed to
// members whose roll entry has not reached this agent yet: a node writes its entry as
// it first joins, and a node killed a moment later is dead here before the entry
// arrives. Hiding it then (as "forgotten") made a dead member vanish from `vgrid nodes`.
// What was seen is kept in the data dir (`roll-seen.json`): an agent restarted after a
// forget otherwise never saw the forgotten identity on the roll, and the volume store's
// folds waited on it for the gossip table's forget time (10 minutes).
import type { Logger } from '../log.ts'
import { RecordFile } from '../record-file.ts'

export interface RollEntryLike { node: string }

/** the most node ids kept: the roll over a long life (servers replaced), not unbounded */
export const ROLL_SEEN_MAX = 10_000

/** roll-seen.json: `{"v":1,"nodes":[id, ...]}`, oldest first */
export function parseRollSeen (text: string): { value: string[] } | { error: string } {
  let j: unknown
  try { j = JSON.parse(text) } catch (err) { return { error: `not JSON: ${(err as Error).message}` } }
  const nodes = (j as { nodes?: unknown } | null)?.nodes
  if ((j as { v?: unknown } | null)?.v !== 1 || !Array.isArray(nodes) || !nodes.every(n => typeof n === 'string' && n.length > 0 && n.length <= 128)) return { error: 'not {"v":1,"nodes":[node ids]}' }
  return { value: nodes.slice(-ROLL_SEEN_MAX) as string[] }
}

export class RollMemory {
  /** nodes this agent has seen on the roll (this run and, kept on disk, the runs before) */
  private readonly seen: Set<string>
  private readonly file?: RecordFile<string[]>

  /** `path`: where the nodes seen are kept across restarts (absent: this run only) */
  constructor (opts: { path?: string, log?: Logger } = {}) {
    if (opts.path != null && opts.log != null) {
      this.file = new RecordFile(opts.path, opts.log, {
        what: 'the node ids seen on the roll',
        ifLost: 'a node forgotten before this start may hold back layer folds for up to 10 minutes',
        empty: () => [],
        format: v => JSON.stringify({ v: 1, nodes: v }) + '\n',
        parse: parseRollSeen
      })
    }
    this.seen = new Set(this.file?.load() ?? [])
  }

  /** stopped: nothing more is written */
  private stopped = false

  /**
   * This node left the grid by itself (a graceful leave took its roll entry): it is no
   * longer one seen on the roll, so a later start, before it has written its entry
   * again, does not take itself for forgotten by `vgrid node forget` (rv40).
   */
  left (node: string, roll: ReadonlyArray<RollEntryLike>): void {
    if (roll.some(e => e.node === node) || !this.seen.delete(node)) return
    if (!this.stopped) this.file?.save([...this.seen]).catch(() => {}) // logged by the file
  }

  /** Writes nothing more, once the writes under way are done (the agent's stop). */
  async stop (): Promise<void> {
    this.stopped = true
    await this.file?.settled()
  }

  /** the roll at the last note (null: none yet this run) */
  private last: Set<string> | null = null

  /**
   * Notes every node on the roll as it is now (kept on disk when one is new). Returns the
   * nodes back on it after they were taken off while this run watched (forgotten while
   * only cut off, or started again on their old data dir): the others said nothing of it.
   */
  note (roll: ReadonlyArray<RollEntryLike>): string[] {
    const before = this.last
    this.last = new Set(roll.map(e => e.node))
    // on the roll at an earlier note of this run, not only seen: a new member's entry
    // seen first by a question between two notes (forgotten) is not back (CI: "future is
    // back on the member roll" of an agent that had just joined). A node forgotten while
    // this agent was down is told by the members that watched the forget, not here.
    const back = before == null ? [] : roll.filter(e => !before.has(e.node) && this.noted.has(e.node)).map(e => e.node)
    for (const e of roll) this.noted.add(e.node)
    if (this.noted.size > ROLL_SEEN_MAX) for (const n of this.noted) { if (this.noted.size <= ROLL_SEEN_MAX) break; this.noted.delete(n) }
    this.remember(roll)
    return back
  }

  /** nodes on the roll at some note of this run */
  private readonly noted = new Set<string>()

  /** adds the roll's nodes to those seen, kept on disk when one is new */
  private remember (roll: ReadonlyArray<RollEntryLike>): void {
    let added = false
    for (const e of roll) {
      if (this.seen.has(e.node)) continue
      this.seen.add(e.node)
      added = true
    }
    if (!added) return
    // the oldest go first once past the bound (a Set keeps insertion order)
    for (const n of this.seen) { if (this.seen.size <= ROLL_SEEN_MAX) break; this.seen.delete(n) }
    if (!this.stopped) this.file?.save([...this.seen]).catch(() => {}) // logged by the file; the memory still holds them
  }

  /** this node's own forget was told (once until it is back on the roll) */
  private selfToldForgotten = false

  /**
   * Whether this agent's own node was taken off the roll since it was last told: true
   * once when it finds itself forgotten (while it was down or cut off), again only after
   * it was back on the roll.
   */
  selfForgotten (self: string, roll: ReadonlyArray<RollEntryLike>): boolean {
    const forgotten = this.forgotten(self, roll)
    const news = forgotten && !this.selfToldForgotten
    this.selfToldForgotten = forgotten
    return news
  }

  /** Whether `node` was on the roll here and is gone from it (`roll` as it is now). */
  forgotten (node: string, roll: ReadonlyArray<RollEntryLike>): boolean {
    this.remember(roll)
    return this.seen.has(node) && !roll.some(e => e.node === node)
  }
}
