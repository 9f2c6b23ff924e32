// `/vgrid/gvs/placement/1.0.0`: how a node places objects now, as the signature of the
// live nodes and weights its placement is made over (service.ts). Repair frees a
// surplus copy only when every alive or suspect member answers with this node's own
// signature (repair.ts freeSurplus): then no member takes the copy's node for a holder,
// so none writes to the copy or reads it as one. A member that does not answer within
// 2 s, or answers otherwise, keeps every surplus copy for a later pass.
import { request, serve, type RequestHost } from '../p2p/request.ts'

export const PLACEMENT_PROTOCOL = '/vgrid/gvs/placement/1.0.0'
const TIMEOUT_MS = 2000

export interface PlacementCheckComponents {
  host: RequestHost
  /** this node's placement now */
  signature: () => string
  /** the other members that may read or write volumes: alive or suspect */
  others: () => string[]
}

export class PlacementCheck {
  private readonly c: PlacementCheckComponents
  constructor (components: PlacementCheckComponents) { this.c = components }

  async start (): Promise<void> {
    await serve(this.c.host, PLACEMENT_PROTOCOL, async () => ({ signature: this.c.signature() }), { maxRequestBytes: 64, maxInboundStreams: 8 })
  }

  async stop (): Promise<void> { await this.c.host.unhandle(PLACEMENT_PROTOCOL).catch(() => {}) }

  /** whether every other alive or suspect member places as this node does, and this node still does after asking */
  async agreed (): Promise<boolean> {
    const mine = this.c.signature()
    const same = await Promise.all(this.c.others().map(async node => {
      try {
        const a = await request(this.c.host, node, PLACEMENT_PROTOCOL, {}, { timeoutMs: TIMEOUT_MS, maxAnswerBytes: 1 << 20 })
        return (a as { signature?: unknown } | null)?.signature === mine
      } catch { return false }
    }))
    return same.every(x => x) && this.c.signature() === mine
  }
}
