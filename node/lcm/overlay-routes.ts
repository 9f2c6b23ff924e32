// The overlay range's routes beside the tunnel's own: the fallback that keeps VM traffic
// from leaving in clear while there is no tunnel, and the watch for routes others made
// inside the range (judged by the pure route-conflicts.ts).
import type { Logger } from '../log.ts'
import { ip } from '../netns/netns.ts'
import type { OverlayPrefix } from './overlay.ts'
import { foreignRoutes, type RouteEntry } from './route-conflicts.ts'
import { Condition } from './condition.ts'

/** the fallback route's metric: the lowest priority there is, under every real route */
export const FALLBACK_METRIC = 4294967295

export class OverlayRoutes {
  /** foreign routes inside the range, as the status says it */
  readonly conflict = new Condition()

  private readonly c: { log: Logger, prefix: OverlayPrefix, wgIf: string }

  constructor (components: { log: Logger, prefix: OverlayPrefix, wgIf: string }) {
    this.c = components
  }

  /**
   * The VM range is unreachable at the lowest priority, under the route to the WireGuard
   * interface, from start on and after stop: whenever there is no tunnel (it cannot
   * start, wireguard-go just died, the agent stopped) traffic to remote VMs does not
   * leave in clear along the default route, and a packet arriving on the underlay with a
   * remote VM's address as its source fails the rules' reverse-path check.
   */
  async fallback (how: 'replace' | 'del'): Promise<void> {
    await ip(['route', how, 'unreachable', this.c.prefix.vmV4, 'metric', String(FALLBACK_METRIC)]).catch(err => {
      if (how === 'replace') this.c.log.warn('could not route the VM range as unreachable under the tunnel', { error: (err as Error).message })
    })
  }

  /** Looks for routes inside the overlay range that vgrid did not make; said once per change. */
  async check (): Promise<void> {
    let routes: RouteEntry[]
    try {
      routes = JSON.parse(await ip(['-j', 'route', 'show', 'table', 'all', 'root', this.c.prefix.v4])) as RouteEntry[]
    } catch {
      return
    }
    const foreign = foreignRoutes(routes, { wgIf: this.c.wgIf, fallbackMetric: FALLBACK_METRIC })
    const conflict = foreign.length === 0 ? null : `routes inside the overlay range ${this.c.prefix.v4} that vgrid did not make win over its tunnel (VM traffic may leave unencrypted): ${foreign.join('; ')}`
    if (!this.conflict.set(conflict)) return
    if (conflict != null) this.c.log.error('foreign routes inside the overlay range', { routes: foreign.join('; ') })
    else this.c.log.info('no foreign routes inside the overlay range any more')
  }
}
