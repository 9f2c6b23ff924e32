// The LCM's health problems, pure, from its status: what /v1/status lists for it.
import type { HealthProblem } from '../api/types.ts'
import type { LcmStatus } from './types.ts'

/**
 * The LCM's health problems from its status: WireGuard not running (`overlay-down`),
 * a plan not applied (`connections-not-applied`), foreign routes in the overlay range
 * (`overlay-route-conflict`), and one `tunnel-down` per needed tunnel without handshakes.
 */
export function lcmProblems (s: LcmStatus): HealthProblem[] {
  const problems: HealthProblem[] = []
  if (!s.ok) problems.push({ service: 'lcm', cause: 'overlay-down', message: s.error ?? 'the overlay is not running', ...(s.errorSince != null ? { since: s.errorSince } : {}) })
  if (s.applyError != null) problems.push({ service: 'lcm', cause: 'connections-not-applied', message: `routes, tunnel peers or link rules could not be applied (trying again): ${s.applyError}`, ...(s.applyErrorSince != null ? { since: s.applyErrorSince } : {}) })
  if (s.routeConflict != null) problems.push({ service: 'lcm', cause: 'overlay-route-conflict', message: s.routeConflict, ...(s.routeConflictSince != null ? { since: s.routeConflictSince } : {}) })
  for (const d of s.tunnelsDown ?? []) problems.push({ service: 'lcm', cause: 'tunnel-down', message: d.message, since: d.since })
  return problems
}

/**
 * Why no tunnel of this node carries anything while its own WireGuard is not running
 * (null while it runs): its links to other nodes say so, not "up" (a tester read the
 * tunnel as up on the very node whose overlay was down).
 */
export function overlayDownReason (s: Pick<LcmStatus, 'ok' | 'error'>): string | null {
  return s.ok ? null : `this node's overlay is down: ${s.error ?? 'WireGuard is not running'}`
}
