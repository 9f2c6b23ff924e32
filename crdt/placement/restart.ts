// The restart rule (AppLogic's): a VM whose process exits is restarted on the same
// node; after 3 crashes within 24 hours it is left stopped, with the reason. Under
// `always` a clean exit (status 0) after a run of at least MIN_CLEAN_RUN_MS is no
// crash: it is restarted and counted nothing (a job that finishes and is started
// again); a shorter one counts, so a VM that exits 0 at once is not restarted for ever,
// and runs under QUICK_RUN_MS in a row wait longer and longer before their restart.
// A guest's own reboot is no exit a policy judges: it is restarted under every policy,
// counted nothing, quick reboots in a row waiting as quick clean runs do.

export const CRASH_LIMIT = 3
export const CRASH_WINDOW_MS = 24 * 3600_000
/** a clean exit after a run this long is no crash under `always` */
export const MIN_CLEAN_RUN_MS = 10_000
/**
 * The wait before a restart after the 1st and the 2nd crash within the window: a cause
 * that passes (a watchdog started again, a disk back, a peer restarting) gets time to,
 * where three starts in a tenth of a second used up the rule at once.
 */
export const RESTART_DELAYS_MS = [1000, 5000] as const

/**
 * A clean run shorter than this is a quick one. Under `always`, quick runs in a row wait
 * longer and longer before their restart (as Kubernetes' CrashLoopBackOff): a VM that
 * ends every few seconds for ever wrote two changes to the cluster document each time,
 * which keeps its whole history (bb45: 7,850 restarts a day of a VM that ran 11 s).
 */
export const QUICK_RUN_MS = 10 * 60_000
/** the first wait after quick runs in a row, and the longest */
export const QUICK_RESTART_FIRST_MS = 10_000
export const QUICK_RESTART_MAX_MS = 5 * 60_000

/** the wait before the restart after `quickRuns` quick clean runs in a row: none after the first, then 10 s doubling, at most 5 min */
export function quickRestartDelayMs (quickRuns: number): number {
  if (quickRuns <= 1) return 0
  return Math.min(QUICK_RESTART_FIRST_MS * 2 ** Math.min(quickRuns - 2, 30), QUICK_RESTART_MAX_MS)
}

/**
 * The crashes a takeover's claim carries on from the lease it takes over (the same VM's:
 * the crash rule counts a VM's crashes, not a node's), those within the window: a VM
 * that crashed twice and took its node down with it is left stopped at its next crash,
 * where each node's count began anew and it went round the grid for ever.
 */
export function recentCrashes (crashes: readonly number[] | undefined, now: number): number[] {
  return (crashes ?? []).filter(t => now - t < CRASH_WINDOW_MS)
}

/** how long to wait, from `now`, before restarting after the crashes in `crashes` (0: none recent) */
export function restartDelayMs (crashes: readonly number[], now: number): number {
  const recent = crashes.filter(t => now - t < CRASH_WINDOW_MS && t <= now)
  if (recent.length === 0) return 0
  const delay = RESTART_DELAYS_MS[Math.min(recent.length, RESTART_DELAYS_MS.length) - 1]!
  return Math.max(0, Math.max(...recent) + delay - now)
}

export type RestartPolicy = 'always' | 'on-failure' | 'never'

export type CrashDecision =
  | { action: 'restart', crashes: number[], reason: string, delayMs?: number }
  /** `completed`: it exited cleanly and its policy does not restart that: it did its work, no failure */
  | { action: 'stop', crashes: number[], reason: string, completed?: true }

/**
 * The wait, and how the reason says it, before a restart after `quick` quick clean runs
 * in a row; with the time it ends (UTC), as the reason is read long after it was written
 * (bb54: "restarting in 300 s" read the same for all of 5 minutes)
 */
function quickRestart (quick: number, now: number): { delayMs?: number, when: string } {
  const delayMs = quickRestartDelayMs(quick)
  if (delayMs === 0) return { when: 'restarting' }
  const at = new Date(now + delayMs).toISOString().slice(11, 19)
  return { delayMs, when: `restarting in ${delayMs / 1000} s (at ${at} UTC; ${quick} runs in a row under ${QUICK_RUN_MS / 60_000} min: each doubles the wait, up to ${QUICK_RESTART_MAX_MS / 60_000} min)` }
}

/**
 * `crashes`: earlier crash times; `clean`: the VM exited with status 0; `rebooted`: its
 * guest rebooted (a clean run too: restarted whatever the policy); `ranMs`: how long the
 * run lasted, where known; `quickRuns`: the quick clean runs in a row before this one
 * (QUICK_RUN_MS)
 */
export function onExit (crashes: readonly number[], now: number, opts: { policy?: RestartPolicy, clean?: boolean, rebooted?: boolean, detail?: string, ranMs?: number, quickRuns?: number } = {}): CrashDecision {
  const policy = opts.policy ?? 'always'
  const what = opts.detail ?? 'exited'
  if (opts.rebooted === true) {
    const quick = opts.ranMs != null && opts.ranMs < QUICK_RUN_MS ? (opts.quickRuns ?? 0) + 1 : 0
    const { delayMs, when } = quickRestart(quick, now)
    const after = opts.ranMs != null ? ` after ${Math.round(opts.ranMs / 1000)} s` : ''
    return { action: 'restart', crashes: crashes.filter(t => now - t < CRASH_WINDOW_MS), reason: `${what}${after}: ${when} (a guest's reboot is no crash, and restarts it whatever its restart policy)`, ...(delayMs != null ? { delayMs } : {}) }
  }
  const completed = opts.clean === true ? { completed: true as const } : {}
  if (policy === 'never') return { action: 'stop', crashes: [...crashes], reason: `${what}; restart policy is never`, ...completed }
  if (opts.clean === true && policy === 'on-failure') return { action: 'stop', crashes: [...crashes], reason: `${what} cleanly; restart policy is on-failure`, ...completed }
  if (opts.clean === true && policy === 'always' && (opts.ranMs ?? 0) >= MIN_CLEAN_RUN_MS) {
    const quick = opts.ranMs! < QUICK_RUN_MS ? (opts.quickRuns ?? 0) + 1 : 0
    const { delayMs, when } = quickRestart(quick, now)
    return { action: 'restart', crashes: crashes.filter(t => now - t < CRASH_WINDOW_MS), reason: `${what} cleanly after ${Math.round(opts.ranMs! / 1000)} s; restart policy is always: ${when} (a clean exit is no crash)`, ...(delayMs != null ? { delayMs } : {}) }
  }
  const recent = [...crashes.filter(t => now - t < CRASH_WINDOW_MS), now].slice(-CRASH_LIMIT)
  // a clean exit this soon counts as a crash (else a VM that exits 0 at once restarts for ever): said so
  const why = opts.clean === true && policy === 'always' ? `${what} within ${MIN_CLEAN_RUN_MS / 1000} s of its start, which counts as a crash` : what
  if (recent.length >= CRASH_LIMIT) return { action: 'stop', crashes: recent, reason: `${why}: ${CRASH_LIMIT} crashes within 24 h, left stopped` }
  const delay = RESTART_DELAYS_MS[Math.min(recent.length, RESTART_DELAYS_MS.length) - 1]! / 1000
  return { action: 'restart', crashes: recent, reason: `${why}: crash ${recent.length} within 24 h, restarting in ${delay} s (the ${CRASH_LIMIT === 3 ? '3rd' : `${CRASH_LIMIT}th`} leaves it stopped)` }
}
