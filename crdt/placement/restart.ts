// The restart rule (AppLogic's): a VM whose process exits is restarted on the same
// node; after 3 crashes within 24 hours it is left stopped, with the reason.

export const CRASH_LIMIT = 3
export const CRASH_WINDOW_MS = 24 * 3600_000

export type RestartPolicy = 'always' | 'on-failure' | 'never'

export type CrashDecision =
  | { action: 'restart', crashes: number[], reason: string }
  /** `completed`: it exited cleanly and its policy does not restart that: it did its work, no failure */
  | { action: 'stop', crashes: number[], reason: string, completed?: true }

/** `crashes`: earlier crash times; `clean`: the VM exited with status 0 */
export function onExit (crashes: readonly number[], now: number, opts: { policy?: RestartPolicy, clean?: boolean, detail?: string } = {}): CrashDecision {
  const policy = opts.policy ?? 'always'
  const what = opts.detail ?? 'exited'
  const completed = opts.clean === true ? { completed: true as const } : {}
  if (policy === 'never') return { action: 'stop', crashes: [...crashes], reason: `${what}; restart policy is never`, ...completed }
  if (opts.clean === true && policy === 'on-failure') return { action: 'stop', crashes: [...crashes], reason: `${what} cleanly; restart policy is on-failure`, ...completed }
  const recent = [...crashes.filter(t => now - t < CRASH_WINDOW_MS), now].slice(-CRASH_LIMIT)
  if (recent.length >= CRASH_LIMIT) return { action: 'stop', crashes: recent, reason: `${what}: ${CRASH_LIMIT} crashes within 24 h, left stopped` }
  return { action: 'restart', crashes: recent, reason: `${what}: crash ${recent.length} within 24 h, restarting (the ${CRASH_LIMIT === 3 ? '3rd' : `${CRASH_LIMIT}th`} leaves it stopped)` }
}
