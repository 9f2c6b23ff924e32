// The fencing times the agent runs DVMM with, in one place: the CLI's watchdog bridge
// (watchdog/bridge.ts) reads them before the agent loads.

/** a node that cannot see a majority of the roll this long kills its VMs; a dead holder's VMs move after this plus a margin */
export const FENCE_TIMEOUT_MS = 5000
/** the watchdog kills this node's VMs when the agent stopped feeding it this long: before the fence timeout ends */
export const WATCHDOG_TIMEOUT_MS = 3000
