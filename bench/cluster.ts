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

/** Starts n agents (memory transport, no HTTP API), each joining through the first. */
export async function startGrid (n: number, opts: { run?: string, flags?: Record<string, string> } = {}): Promise<InProcessGrid> {
  const run = opts.run ?? `b${process.pid}`
  const root = await mkdtemp(join(tmpdir(), 'vgrid-bench-'))
  const keyFile = join(root, 'cluster.key')
  await writeClusterKey(keyFile, generateClusterKey())
  const agents: Agent[] = []
  const seedAddr = `/memory/${run}-0`
  const batch = 10
  for (let i = 0; i < n; i += batch) {
    const started = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, async (_, j) => {
      const k = i + j
      const cfg = await resolveConfig({
        name: `a${k}`,
        dataDir: join(root, `a${k}`),
        listen: `/memory/${run}-${k}`,
        join: k === 0 ? [] : [seedAddr],
        key: keyFile,
        mdns: false,
        capacity: 'cpu=4,mem=8G,disk=100G',
        transport: 'memory',
        ...opts.flags
      })
      const a = new Agent(cfg, { logger: silentLogger })
      await a.start({ api: false })
      return a
    }))
    agents.push(...started)
    if (process.env.BENCH_VERBOSE != null) console.error(`started ${agents.length}/${n}`)
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

export async function until (check: () => boolean, ms: number, stepMs = 10): Promise<number | undefined> {
  const start = performance.now()
  while (performance.now() - start < ms) {
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
