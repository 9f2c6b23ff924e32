// The fencing times the agent runs DVMM with, in one place: the CLI's watchdog bridge
// (watchdog/bridge.ts) reads them before the agent loads. The fence timeout is the
// node's `fenceTimeout` setting (default 5 s); the watchdog's follows from it.

/** a node that cannot see a majority of the roll this long kills its VMs; a dead holder's VMs move after this plus a margin */
export const FENCE_TIMEOUT_MS = 5000
/** the watchdog kills this node's VMs when the agent stopped feeding it this long: before the fence timeout ends */
export const WATCHDOG_TIMEOUT_MS = 3000
/** the bounds of the setting: below, a loaded machine's pauses fire the watchdog; above, a dead server's VMs wait too long */
export const MIN_FENCE_TIMEOUT_MS = 3000
export const MAX_FENCE_TIMEOUT_MS = 600_000

/**
 * The watchdog's timeout for a fence timeout: 3/5 of it (3 s of the default 5 s). The
 * rest is the time the supervisor has to kill the VMs before any takeover may start
 * (takeovers wait the fence timeout plus a margin from the holder's last sign of life).
 */
export function watchdogTimeoutFor (fenceTimeoutMs: number): number {
  return Math.round(fenceTimeoutMs * WATCHDOG_TIMEOUT_MS / FENCE_TIMEOUT_MS)
}

/** The fence timeout that goes with a watchdog timeout (the inverse of watchdogTimeoutFor, rounded up). */
export function fenceTimeoutFor (watchdogMs: number): number {
  return Math.ceil(watchdogMs * FENCE_TIMEOUT_MS / WATCHDOG_TIMEOUT_MS)
}

/**
 * How long a node's VMs run on without their agent while it restarts (SIGTERM), once
 * every member has confirmed (restart-grace.ts): the next run must be back within it
 * to adopt them. Others wait fenceTimeoutFor(it) plus the margin before taking them over.
 */
export const RESTART_GRACE_MS = 30_000
/**
 * What a restarted agent takes from its process's start to its first feed of the
 * previous run's watchdog (watchdog/bridge.ts: Node starting, the CLI loading; about 2 s
 * on a loaded machine): the watchdog's timeout in a grace is the grace plus this, so an
 * agent started again within the grace adopts its VMs
 */
export const RESTART_STARTUP_MS = 5000
/** the longest restart grace: its fence (for its watchdog's timeout, startup included) stays within the longest fence timeout */
export const MAX_RESTART_GRACE_MS = 5 * 60_000
