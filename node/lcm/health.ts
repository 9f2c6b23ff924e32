// The LCM's health problems, pure, from its status: what /v1/status lists for it.
import type { HealthProblem } from '../api/types.ts'
import type { MemberTable } from '../../protocol/membership.ts'
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

/**
 * Other members alive whose overlay is down, as their adverts say (pure): every other
 * node said ok while one node's links carried nothing (a tester). Placement puts such a
 * node last for VMs with connections, and the node moves those it runs once it has
 * been down a while (dvmm/overlay-moves.ts).
 */
export function membersOverlayDown (table: MemberTable, self: string): HealthProblem[] {
  const down = [...table.values()].filter(m => m.nodeId !== self && m.state === 'alive' && m.advert.overlayDown != null)
    .sort((a, b) => a.advert.name < b.advert.name ? -1 : 1)
  if (down.length === 0) return []
  return [{
    service: 'lcm',
    cause: 'members-overlay-down',
    message: `the overlay (WireGuard) of ${down.length} member(s) is down: ${down.map(m => `${m.advert.name} (${m.advert.overlayDown!})`).join(', ')}; the connections of their VMs to VMs on other nodes carry nothing, and those VMs move to nodes whose overlay is up, where one fits`
  }]
}
