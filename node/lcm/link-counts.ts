// A link's counts as the grid sees them, not as the asking node does. Every node counts
// what its own rules pass and drop; a link's traffic is counted where its FROM end runs
// (packets leave the VM there, the first rules they meet are that node's, and an
// undeclared packet is dropped there). So `link ls` on any node asks that node:
// `/vgrid/lcm/counts/1.0.0`, a request `{links: [ids]}`, an answer `{id: {packets,
// drops, down?}}` (p2p/request.ts framing; `down`: why that node's tunnel for the link
// carries nothing now, so that a node holding neither end can say so too; agents before
// it sent none). What one node counts of a link is pure (`countsOf`).
import type { RequestHost } from '../p2p/request.ts'
import { request, serve } from '../p2p/request.ts'
import type { Addressing } from './plan.ts'
import type { Ruleset } from './rules.ts'
import type { TableCounters } from './nft.ts'

export const LINK_COUNTS_PROTOCOL = '/vgrid/lcm/counts/1.0.0'
export const MAX_COUNT_LINKS = 4096
/** how long `link ls` waits for a node's counts */
export const COUNTS_TIMEOUT_MS = 2000

export interface LinkCounts {
  packets: number
  drops: number
  /** why the counting node's tunnel for the link is down (tunnel-health.ts), absent while up */
  down?: string
}

/** what a node counts of each link: packets its rules passed, and drops between its two ends that no one forged (pure) */
export function countsOf (ids: readonly string[], links: ReadonlyMap<string, { from: { vm: string }, to: { vm: string } }>, last: { rules: Pick<Ruleset, 'flows'>, addr: Pick<Addressing, 'vms'> } | null, c: TableCounters): Map<string, LinkCounts> {
  const out = new Map<string, LinkCounts>()
  const place = new Map((last?.addr.vms ?? []).map(v => [v.vm, v.address]))
  const flows = new Map((last?.rules.flows ?? []).map(f => [f.link, f.counter]))
  for (const id of ids) {
    const l = links.get(id)
    const s = l == null ? undefined : place.get(l.from.vm)
    const d = l == null ? undefined : place.get(l.to.vm)
    const counter = flows.get(id)
    // a forged packet carries a link end's address but came from elsewhere: not the link's drop (a tester saw an innocent link's count rise)
    const drops = s == null || d == null
      ? 0
      : c.drops.filter(x => (x.src === s && x.dst === d) || (x.src === d && x.dst === s)).reduce((n, x) => n + x.packets - (x.spoofed ?? 0), 0)
    out.set(id, { packets: counter == null ? 0 : c.counters.get(counter)?.packets ?? 0, drops })
  }
  return out
}

/** The link ids of a request, or why it is not one. */
export function parseCountsRequest (raw: unknown): string[] {
  const ids = (raw as { links?: unknown } | null)?.links
  if (!Array.isArray(ids) || ids.length > MAX_COUNT_LINKS || !ids.every(i => typeof i === 'string' && i.length > 0 && i.length <= 256)) {
    throw new Error(`a counts request is {"links": [ids]} with at most ${MAX_COUNT_LINKS} ids`)
  }
  return ids as string[]
}

const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/** An answer as far as it has the expected shape (entries of another are left out); throws when it is no answer at all. */
export function parseCountsAnswer (raw: unknown): Map<string, LinkCounts> {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('a counts answer is a JSON object')
  const err = (raw as { error?: unknown }).error
  if (typeof err === 'string') throw new Error(err)
  const out = new Map<string, LinkCounts>()
  for (const [id, v] of Object.entries(raw as Record<string, unknown>)) {
    const x = v as Partial<LinkCounts> | null
    if (x == null || !count(x.packets) || !count(x.drops)) continue
    // a reason is shown to users: a short string or none
    const down = typeof x.down === 'string' && x.down.length > 0 ? x.down.slice(0, 512) : undefined
    out.set(id, down == null ? { packets: x.packets, drops: x.drops } : { packets: x.packets, drops: x.drops, down })
  }
  return out
}

/** Serves this node's counts, and asks other nodes for theirs. */
export class LinkCountsService {
  private readonly host: RequestHost
  private readonly local: (ids: readonly string[]) => Promise<Map<string, LinkCounts>>

  constructor (components: { host: RequestHost, local: (ids: readonly string[]) => Promise<Map<string, LinkCounts>> }) {
    this.host = components.host
    this.local = components.local
  }

  async start (): Promise<void> {
    await serve(this.host, LINK_COUNTS_PROTOCOL, async req => Object.fromEntries(await this.local(parseCountsRequest(req))))
  }

  async stop (): Promise<void> {
    await this.host.unhandle(LINK_COUNTS_PROTOCOL).catch(() => {})
  }

  /** `node`'s counts of `ids`; throws when it does not answer in time (or runs an agent that does not know the question) */
  async ask (node: string, ids: readonly string[]): Promise<Map<string, LinkCounts>> {
    return parseCountsAnswer(await request(this.host, node, LINK_COUNTS_PROTOCOL, { links: ids }, { timeoutMs: COUNTS_TIMEOUT_MS }))
  }
}
