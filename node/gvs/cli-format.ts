// Output helpers of `vgrid vol` (cli.ts, cli-copy.ts).
import type { VolumeHealthView } from './health.ts'

export const out = (s: string): void => { process.stdout.write(s + '\n') }
export const json = (v: unknown): void => { out(JSON.stringify(v, null, 2)) }
export const enc = encodeURIComponent

/** "healthy", "degraded", "repairing 45%", "degraded, no reads or writes here (no majority)" */
export function stateText (h: VolumeHealthView): string {
  if (h.noMajority != null) return `${h.state}, no reads or writes here (no majority)`
  if (h.state === 'repairing' && h.repair != null && h.repair.total > 0) return `repairing ${Math.floor(h.repair.done / h.repair.total * 100)}%`
  return h.state
}

export function size (b: number): string {
  for (const [u, n] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (b >= n) return `${(b / n).toFixed(b % n === 0 ? 0 : 1)}${u}`
  return `${b}`
}
