// Shared bench plumbing: many agents in one process on the in-memory transport.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
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
  // verbose: suspicions raised by reason, deaths seen and event-loop lag, to tell a
  // storm as it starts (and in which process)
  const monitor = process.env.BENCH_VERBOSE != null ? new StormMonitor(`agents ${first}-${first + n - 1}`) : undefined
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
    const a = new Agent(cfg, { logger: silentLogger, without: ['dvmm', 'gvs'] })
    await a.start({ api: false })
    monitor?.watch(a)
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
    monitor?.report(agents, `started ${agents.length}/${n}`)
  }
  monitor?.start(agents)
  return {
    agents,
    root,
    stop: async () => {
      monitor?.stop()
      await Promise.all(agents.map(async a => await a.stop().catch(() => {})))
      await rm(root, { recursive: true, force: true })
    }
  }
}

/**
 * Verbose bench output (BENCH_VERBOSE=1): per start batch, and then every 2 s while
 * anything happens, what this process's agents saw: connections, deaths (and of
 * whom), suspicions they raised by reason, suspicions heard, and the worst event-loop
 * lag. A saturated process shows as lag before its watchers miss heartbeats.
 */
class StormMonitor {
  private readonly label: string
  private readonly lag = monitorEventLoopDelay({ resolution: 20 })
  private readonly seen = { deaths: 0, heard: 0, raised: {} as Record<string, number>, dead: new Map<string, number>() }
  private last = ''
  private timer?: NodeJS.Timeout
  private readonly t0 = Date.now()

  constructor (label: string) {
    this.label = label
    this.lag.enable()
  }

  watch (a: Agent): void {
    a.membership.on('transition', t => {
      if (t.to !== 'dead') return
      this.seen.deaths++
      const who = t.member?.name ?? t.nodeId.slice(-6)
      this.seen.dead.set(who, (this.seen.dead.get(who) ?? 0) + 1)
    })
    a.membership.on('suspected', (_t, by, why) => {
      if (by === a.id) this.seen.raised[why] = (this.seen.raised[why] ?? 0) + 1
      else this.seen.heard++
    })
  }

  report (agents: Agent[], what: string): void {
    const conns = agents.reduce((acc, a) => acc + a.host.getConnections().length, 0)
    const dead = [...this.seen.dead].sort((x, y) => y[1] - x[1]).slice(0, 4).map(([k, v]) => `${k}:${v}`).join(' ')
    const line = `deaths ${this.seen.deaths}${dead === '' ? '' : ` (${dead})`}, raised ${JSON.stringify(this.seen.raised)}, heard ${this.seen.heard}`
    const lagMs = this.lag.max / 1e6
    this.lag.reset()
    if (what === 'tick' && line === this.last && lagMs < 300) return
    this.last = line
    console.error(`[${this.label} +${((Date.now() - this.t0) / 1000).toFixed(0)} s] ${what}: ${conns} connections, fewest alive seen ${Math.min(...agents.map(aliveSeen))}, ${line}, max lag ${lagMs.toFixed(0)} ms`)
  }

  start (agents: Agent[]): void {
    this.timer = setInterval(() => { this.report(agents, 'tick') }, 2000)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.lag.disable()
  }
}

/** How many members this agent sees alive, itself included. */
export function aliveSeen (a: Agent): number {
  let alive = 0
  for (const m of a.membership.members.values()) if (m.state === 'alive') alive++
  return alive
}

/** Polls `check` (after `refresh`, if given) until it holds; the time it took, or undefined after `ms`. */
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

/** Prints a benchmark's rows (measure, value, baseline, ratio, notes) as an aligned table. */
export function printTable (rows: string[][]): void {
  const head = ['measure', 'value', 'baseline (same run)', 'ratio', 'notes']
  const w = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()
  console.log([line(head), line(w.map(n => '-'.repeat(n))), ...rows.map(line)].join('\n'))
}
