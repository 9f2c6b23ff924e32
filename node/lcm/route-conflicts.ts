// Routes inside the cluster's overlay range that vgrid did not make, pure. Such a route
// (an ISP's carrier-grade NAT range on the LAN, another overlay's peers, Tailscale's
// table 52) wins over the tunnel for the addresses it covers: VM traffic would leave
// in clear, and the rules' reverse-path check would take a forged VM source arriving
// that way for a genuine one. The LCM reports them as a health problem.
import { isVmInterface } from './rules.ts'

/** One entry of `ip -j route show table all root PREFIX`. */
export interface RouteEntry {
  dst?: string
  type?: string
  dev?: string
  gateway?: string
  table?: string
  metric?: number
}

export interface OwnRoutes {
  /** this node's WireGuard interface */
  wgIf: string
  /** the metric of the LCM's own unreachable fallback route */
  fallbackMetric: number
}

const vmIf = isVmInterface

/** The foreign routes among `routes`, each as `ip route` would print it (for the status). */
export function foreignRoutes (routes: readonly RouteEntry[], own: OwnRoutes): string[] {
  return routes
    .filter(r => {
      if (r.dev === own.wgIf || (r.dev != null && vmIf(r.dev))) return false
      if (r.type === 'unreachable' && r.metric === own.fallbackMetric) return false
      return true
    })
    .map(r => [r.type != null && r.type !== 'unicast' ? r.type : '', r.dst ?? '?', r.gateway != null ? `via ${r.gateway}` : '', r.dev != null ? `dev ${r.dev}` : '', r.table != null && r.table !== 'main' ? `table ${r.table}` : '']
      .filter(x => x !== '').join(' '))
}
