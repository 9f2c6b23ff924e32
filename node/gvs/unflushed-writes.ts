// What a replicated volume's writer must flush where: the objects written to each
// node since its last flush, each with the placement generation of its first write
// since (replicated-volume.ts). Kept apart from the I/O so the choice of what a flush
// settles first reads (and tests) as data.

/** node → object index → placement generation of its first unflushed write there */
export type UnflushedMarks = ReadonlyArray<readonly [string, ReadonlyMap<number, number>]>

export class UnflushedWrites {
  private readonly byNode = new Map<string, Map<number, number>>()

  /** `gen`: the placement generation the writes were made in (an object keeps its oldest: rv35) */
  mark (node: string, idx: Iterable<number>, gen: number): void {
    const objects = this.byNode.get(node) ?? new Map<number, number>()
    for (const i of idx) {
      const g = objects.get(i)
      objects.set(i, g == null ? gen : Math.min(g, gen))
    }
    this.byNode.set(node, objects)
  }

  /** every mark, taken: a flush that fails puts back what it did not cover */
  take (): UnflushedMarks {
    const entries = [...this.byNode]
    this.byNode.clear()
    return entries
  }
}

export interface FlushPlan {
  /** node → the objects it flushes (an empty set: a flush of the whole node) */
  flushNow: Map<string, Set<number>>
  /** objects to bring to their holders first: written to a node gone since, or in an earlier generation (rv34) */
  orphaned: Set<number>
}

/**
 * What one flush does. A node still live, written in this placement generation,
 * flushes its objects; an object written to a node gone since, or in an earlier
 * generation (that node may have restarted meanwhile and lost what it had not
 * synced), is settled onto its holders first. `everyNode`: the first flush of a
 * writer goes to all of them (an earlier run of the agent may have written there).
 * `live` null: the live nodes are not known, every node counts as live.
 */
export function planFlush (entries: UnflushedMarks, live: ReadonlySet<string> | null, gen: number, everyNode: readonly string[] = []): FlushPlan {
  const flushNow = new Map<string, Set<number>>()
  for (const n of everyNode) flushNow.set(n, new Set())
  const orphaned = new Set<number>()
  for (const [node, objects] of entries) {
    const here = live == null || live.has(node)
    for (const [i, g] of objects) {
      if (here && g === gen) addTo(flushNow, node, [i])
      else orphaned.add(i)
    }
  }
  return { flushNow, orphaned }
}

export function addTo (flushNow: Map<string, Set<number>>, node: string, idx: Iterable<number>): void {
  const set = flushNow.get(node) ?? new Set<number>()
  for (const i of idx) set.add(i)
  flushNow.set(node, set)
}

/** runs `fn` over `items`, at most `limit` at once */
export async function eachLimited<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => { while (next < items.length) await fn(items[next++]!) }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
