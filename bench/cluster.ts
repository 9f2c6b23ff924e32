// Shared bench plumbing: many agents in one process on the in-memory transport.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent } from '../node/agent.ts'
import { resolveConfig } from '../node/config.ts'
import { silentLogger } from '../node/log.ts'
import { writeClusterKey } from '../node/cluster-key-store.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'

export interface InProcessGrid {
  agents: Agent[]
  root: string
  stop: () => Promise<void>
}

export interface GridOptions {
  run?: string
  flags?: Record<string, string>
  /** memory (default: one process only) or loopback TCP (agents in several processes) */
  transport?: 'memory' | 'tcp'
  /** address every agent joins through; default: this grid's first agent */
  seed?: string
  /** number of the first agent (names a0, a1, ... continue across processes) */
  first?: number
  /** cluster key file shared by every process of one grid; default: a new key */
  keyFile?: string
}

/** Starts n agents (no HTTP API), each joining through the seed (by default the first). */
export async function startGrid (n: number, opts: GridOptions = {}): Promise<InProcessGrid> {
  const run = opts.run ?? `b${process.pid}`
  const tcp = opts.transport === 'tcp'
  const first = opts.first ?? 0
  const root = await mkdtemp(join(tmpdir(), 'vgrid-bench-'))
  const keyFile = opts.keyFile ?? join(root, 'cluster.key')
  if (opts.keyFile == null) await writeClusterKey(keyFile, generateClusterKey())
  const agents: Agent[] = []
  let seed = opts.seed ?? (tcp ? undefined : `/memory/${run}-${first}`)
  // verbose: suspicions raised by reason and deaths seen, to tell a storm as it starts
  const verbose = process.env.BENCH_VERBOSE != null
  const seen = { deaths: 0, raised: {} as Record<string, number> }
  const startOne = async (k: number): Promise<Agent> => {
    const cfg = await resolveConfig({
      name: `a${k}`,
      dataDir: join(root, `a${k}`),
      listen: tcp ? '/ip4/127.0.0.1/tcp/0' : `/memory/${run}-${k}`,
      join: seed == null || (opts.seed == null && k === first) ? [] : [seed],
      key: keyFile,
      mdns: false,
      capacity: 'cpu=4,mem=8G,disk=100G',
      transport: opts.transport ?? 'memory',
      ...opts.flags
    })
    const a = new Agent(cfg, { logger: silentLogger })
    await a.start({ api: false })
    if (verbose) {
      a.membership.on('transition', t => { if (t.to === 'dead') seen.deaths++ })
      a.membership.on('suspected', (_t, by, why) => { if (by === a.id) seen.raised[why] = (seen.raised[why] ?? 0) + 1 })
    }
    return a
  }
  // a TCP grid's seed address is known only once its first agent listens
  if (seed == null && n > 0) {
    const a = await startOne(first)
    agents.push(a)
    seed = `${a.addrs()[0]!}`
  }
  // agents join in batches of 10, each batch once the one before sees the grid: a host
  // running dozens of agents cannot absorb hundreds of handshakes at once (a real rack
  // spreads them over as many machines), and the benchmark measures the grid, not that
  const batch = 10
  for (let i = agents.length; i < n; i += batch) {
    const started = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, async (_, j) => await startOne(first + i + j)))
    agents.push(...started)
    const expected = first + agents.length
    await until(() => started.every(a => aliveSeen(a) >= expected), 30_000, 100)
    if (verbose) {
      const conns = agents.reduce((acc, a) => acc + a.host.getConnections().length, 0)
      console.error(`started ${agents.length}/${n} (agents ${first}-${first + n - 1}): ${conns} connections, fewest alive seen ${Math.min(...agents.map(aliveSeen))}, deaths ${seen.deaths}, raised ${JSON.stringify(seen.raised)}`)
    }
  }
  return {
    agents,
    root,
    stop: async () => {
      await Promise.all(agents.map(async a => await a.stop().catch(() => {})))
      await rm(root, { recursive: true, force: true })
    }
  }
}

/** Polls `check` (after `refresh`, if given) until it holds; the time it took, or undefined after `ms`. */
export function aliveSeen (a: Agent): number {
  let alive = 0
  for (const m of a.membership.members.values()) if (m.state === 'alive') alive++
  return alive
}

export async function until (check: () => boolean, ms: number, stepMs = 10, refresh?: () => Promise<void>): Promise<number | undefined> {
  const start = performance.now()
  while (performance.now() - start < ms) {
    await refresh?.()
    if (check()) return performance.now() - start
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
  return undefined
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]!
}

export const fmtMs = (v: number | undefined): string => v == null || Number.isNaN(v) ? 'n/a' : `${v.toFixed(0)} ms`
