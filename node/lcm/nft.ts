// Applies a node's link ruleset (rules.ts) with `nft -f` in one transaction, in its
// own table, and reads its counters back as JSON (`nft -j`), never screen output.
import { nsRun, run, which } from '../netns/netns.ts'
import { DROP_SETS, type Ruleset } from './rules.ts'
import { foreignTables } from './leftovers.ts'

export class NftError extends Error {
  override name = 'NftError'
}

export interface Counter { packets: number, bytes: number }

export interface TableCounters {
  /** named counters (one per allowed link) */
  counters: Map<string, Counter>
  /**
   * drops per "src dst" address pair, whatever the reason; `spoofed` (present when
   * some were) is the packets of them that came in on an interface their source
   * address is not routed to (a forged source)
   */
  drops: Array<{ src: string, dst: string, spoofed?: number, sets?: string[] } & Counter>
}

function nftPath (): string {
  const p = which('nft')
  if (p == null) throw new NftError('`nft` not found (install nftables)')
  return p
}

async function nft (netns: string | null, args: string[], input?: string): Promise<string> {
  return netns == null
    ? await run(nftPath(), args, { input })
    : await nsRun(netns, nftPath(), args, { input })
}

function asCounter (v: unknown): Counter | null {
  if (v == null || typeof v !== 'object') return null
  const o = v as Record<string, unknown>
  return typeof o.packets === 'number' && typeof o.bytes === 'number' ? { packets: o.packets, bytes: o.bytes } : null
}

/** Parses `nft -j list table inet T`: named counters and the drop sets' elements, one entry per pair. */
export function parseTableJson (text: string): TableCounters {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new NftError(`nft -j gave no JSON: ${(err as Error).message}`)
  }
  const items = (doc as { nftables?: unknown }).nftables
  if (!Array.isArray(items)) throw new NftError('nft -j output has no "nftables" array')
  const counters = new Map<string, Counter>()
  const drops = new Map<string, TableCounters['drops'][number]>()
  for (const it of items as Array<Record<string, unknown>>) {
    if (it.counter != null) {
      const c = it.counter as Record<string, unknown>
      const v = asCounter(c)
      if (typeof c.name === 'string' && v != null) counters.set(c.name, v)
    }
    const set = it.set as Record<string, unknown> | undefined
    const spoofed = set?.name === DROP_SETS.spoofed
    if ((spoofed || set?.name === DROP_SETS.undeclared) && Array.isArray(set?.elem)) {
      for (const e of set.elem as unknown[]) {
        // an element with a counter is {"elem": {"val": {"concat": [a, b]}, "counter": {...}}}
        const inner = (e as { elem?: Record<string, unknown> }).elem
        const val = (inner?.val as { concat?: unknown } | undefined)?.concat
        const c = asCounter(inner?.counter)
        if (Array.isArray(val) && typeof val[0] === 'string' && typeof val[1] === 'string' && c != null) {
          const key = `${val[0]} ${val[1]}`
          const d = drops.get(key) ?? { src: val[0], dst: val[1], packets: 0, bytes: 0 }
          d.packets += c.packets
          d.bytes += c.bytes
          d.sets = [...d.sets ?? [], set.name as string]
          if (spoofed) d.spoofed = (d.spoofed ?? 0) + c.packets
          drops.set(key, d)
        }
      }
    }
  }
  return { counters, drops: [...drops.values()] }
}

/** The table's counters and drops; an empty result when the table does not exist. */
export async function readCounters (netns: string | null, table: string): Promise<TableCounters> {
  let text: string
  try {
    text = await nft(netns, ['-j', 'list', 'table', 'inet', table])
  } catch (err) {
    if (/No such file or directory/.test((err as Error).message)) return { counters: new Map(), drops: [] }
    throw err
  }
  return parseTableJson(text)
}

/**
 * Applies the ruleset in one transaction: rules replaced, counters of links that no
 * longer exist deleted, everything else (counts, drop set) kept. Either all of it
 * takes effect or none (nft -f is atomic).
 */
export async function applyRuleset (netns: string | null, rs: Ruleset, former: ReadonlySet<string> = new Set()): Promise<void> {
  const have = await readCounters(netns, rs.table)
  const stale = [...have.counters.keys()].filter(c => !rs.counters.includes(c))
  const script = rs.script + stale.map(c => `delete counter inet ${rs.table} ${c}\n`).join('') +
    formerVmDrops(have.drops, former).map(d => `delete element inet ${rs.table} ${d.set} { ${d.src} . ${d.dst} }\n`).join('')
  await nft(netns, ['-f', '-'], script)
}

/**
 * The drop records of `former` addresses (pure): those a VM held at the last apply and
 * no VM, or another VM, holds now. An address goes to the next VM made (the same
 * address, often, for a VM made again under its name), which would start with the
 * former one's drops (bb27: a new link showed DROPS before it sent a packet). Records
 * of other addresses stay: a host beyond the grid's, a forged source no VM holds
 * (rv33: evidence of a VM scanning or forging would have gone at the next apply).
 */
export function formerVmDrops (drops: TableCounters['drops'], former: ReadonlySet<string>): Array<{ set: string, src: string, dst: string }> {
  return drops.filter(d => former.has(d.src) || former.has(d.dst)).flatMap(d => (d.sets ?? []).map(set => ({ set, src: d.src, dst: d.dst })))
}

/** Removes the table (and every rule, counter and drop record in it). */
export async function removeRuleset (netns: string | null, table: string): Promise<void> {
  try {
    await nft(netns, ['delete', 'table', 'inet', table])
  } catch (err) {
    if (!/No such file or directory/.test((err as Error).message)) throw err
  }
}

/**
 * Removes the LCM tables in the namespace other than `own` (leftovers.ts): an earlier
 * agent's of another identity, whose drop set would go on dropping link traffic the
 * new rules pass. Returns the tables removed.
 */
export async function removeForeignTables (netns: string | null, own: string): Promise<string[]> {
  const tables = foreignTables(await nft(netns, ['-j', 'list', 'tables']), own)
  for (const t of tables) await removeRuleset(netns, t)
  return tables
}
