// Durations as operators write them ("250ms", "3s", "2m", "1h", or a number of ms),
// read alike by the agent's config (node/config.ts) and the volume store's settings
// (node/gvs/config.ts), each with its own bounds and error wording.

/** The longest delay a Node timer takes (about 24.8 days): a longer one fires after 1 ms, so settings that are a timer's delay stay under it. */
export const MAX_TIMER_MS = 2 ** 31 - 1

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** the milliseconds a duration text says, or null when it is not one */
export function durationMs (text: string): number | null {
  const m = DURATION.exec(text)
  return m == null ? null : Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!
}
