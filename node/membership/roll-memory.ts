// Which members were taken off the grid's roll (vgrid node forget), as opposed to
// members whose roll entry has not reached this agent yet: a node writes its entry as
// it first joins, and a node killed a moment later is dead here before the entry
// arrives. Hiding it then (as "forgotten") made a dead member vanish from `vgrid nodes`.
export interface RollEntryLike { node: string }

export class RollMemory {
  /** nodes this agent has seen on the roll since it started */
  private readonly seen = new Set<string>()

  /** Notes every node on the roll as it is now. */
  note (roll: ReadonlyArray<RollEntryLike>): void {
    for (const e of roll) this.seen.add(e.node)
  }

  /** Whether `node` was on the roll here and is gone from it (`roll` as it is now). */
  forgotten (node: string, roll: ReadonlyArray<RollEntryLike>): boolean {
    this.note(roll)
    return this.seen.has(node) && !roll.some(e => e.node === node)
  }
}
