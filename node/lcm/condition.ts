// A problem the LCM reports while it lasts: its message (null: none) and since when it
// holds, kept across a change of message; whoever sets it logs only when it changed.
export class Condition {
  value: string | null = null
  /** ISO time since when some problem has held; null with none */
  since: string | null = null

  /** Sets the problem (null: gone); true when that changed it. */
  set (value: string | null): boolean {
    if (value === this.value) return false
    this.since = value == null ? null : this.since ?? new Date().toISOString()
    this.value = value
    return true
  }
}
