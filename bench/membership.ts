// Membership benchmark: many agents per process. Up to 50 agents share one process
// on the in-memory transport; larger grids are spread over ceil(N/50) processes
// that talk over loopback TCP (BENCH_PROCS=k overrides the split).
//   node_modules/node/bin/node bench/membership.ts [N ...]   (default: 50 200)
//   IDLE_SECONDS=300 ... for the 5-minute no-suspicion check (default 20 s)
// Prints, per N: convergence, advert propagation (p50/p99/p100) with the same
// measurement for a raw gossipsub message as the baseline, detection time of a
// crashed agent against the dead timeout, gossip bytes and memory per agent,
// suspicions while idle; then one idle agent process (RSS, CPU) against a bare Node.
import { spawn } from 'node:child_process'
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { until, percentile, fmtMs } from './cluster.ts'
import { GridShard, type IdleStats } from './grid-shard.ts'
import { startShardProcess, type RemoteShard } from './shard-process.ts'
import { writeClusterKey } from '../node/cluster-key-store.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { deadTimeoutMs, DEFAULT_MEMBERSHIP } from '../protocol/membership.ts'
import { DEFAULT_TIMING } from '../protocol/membership-service.ts'
import { refreshFor } from '../protocol/own-advert.ts'
import { freePort, VGRID, waitFor } from '../test/helpers/agent-process.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const rows: string[][] = []
const row = (...cells: string[]): void => { rows.push(cells); console.error(cells.join('  ')) }

/** Time for one event to reach 50/99/100 % of the others, from `start`. */
function spread (arrivals: number[], total: number): [number, number, number] {
  const s = [...arrivals].sort((a, b) => a - b)
  const at = (p: number): number => s.length >= Math.ceil(p / 100 * total) ? percentile(s, p * s.length / total) : NaN
  return [at(50), at(99), at(100)]
}

type Awaitable<T> = T | Promise<T>
/** a GridShard here (memory transport) or in a child process (loopback TCP) */
type Shard = { [K in keyof GridShard]: (...args: Parameters<GridShard[K]>) => Awaitable<Awaited<ReturnType<GridShard[K]>>> }

const all = async <T>(shards: Shard[], f: (s: Shard) => Awaitable<T>): Promise<T[]> => await Promise.all(shards.map(async s => await f(s)))

/** Collects the hits of every shard until `want` arrived or `ms` passed; returns them relative to `t0`. */
async function collect (shards: Shard[], t0: number, want: number, ms: number): Promise<number[]> {
  let hits: number[] = []
  await until(() => hits.length >= want, ms, 50, async () => { hits = (await all(shards, s => s.hitTimes())).flat() })
  return hits.map(t => t - t0)
}

/** Starts the grid: one shard in this process (memory transport) or `procs` child processes (loopback TCP). */
async function startShards (n: number, procs: number, run: string): Promise<{ shards: Shard[], cleanup: () => Promise<void> }> {
  if (procs <= 1) {
    const s = await GridShard.start({ count: n, first: 0, transport: 'memory', run })
    return { shards: [s], cleanup: async () => {} }
  }
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-bench-key-'))
  const keyFile = join(dir, 'cluster.key')
  await writeClusterKey(keyFile, generateClusterKey())
  const sizes = Array.from({ length: procs }, (_, i) => Math.floor(n / procs) + (i < n % procs ? 1 : 0))
  const shards: RemoteShard[] = []
  const cleanup = async (): Promise<void> => {
    await Promise.all(shards.map(async s => await s.stop()))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    shards.push(await startShardProcess({ count: sizes[0]!, first: 0, transport: 'tcp', run, keyFile }))
    const seed = await shards[0]!.seedAddr()
    let first = sizes[0]!
    const rest = sizes.slice(1).map(count => { const f = first; first += count; return { count, first: f } })
    for (const r of rest) shards.push(await startShardProcess({ ...r, transport: 'tcp', run, keyFile, seed }))
  } catch (err) {
    await cleanup()
    throw err
  }
  return { shards, cleanup }
}

async function runGrid (n: number, procs: number, idleSeconds: number): Promise<void> {
  const t0 = performance.now()
  const { shards, cleanup } = await startShards(n, procs, `m${n}`)
  try {
    const started = performance.now() - t0
    let alive = 0
    const converged = await until(() => alive === n, 180_000, 200, async () => { alive = Math.min(...await all(shards, s => s.aliveMin())) })
    const where = procs <= 1 ? '1 process, memory transport' : `${procs} processes, loopback TCP`
    row(`N=${n}`, 'start + converge', `${fmtMs(started)} + ${fmtMs(converged)}`, where, '')
    if (converged == null) row(`N=${n}`, 'not converged: fewest members seen alive', `${alive} of ${n}`, '', 'MISSED')
    // subscribe the baseline topic everywhere, let the mesh form
    await all(shards, s => s.subscribe('bench-baseline'))
    await sleep(3000)

    // idle window: CPU, bytes, suspicions
    await all(shards, s => s.beginIdle())
    await sleep(idleSeconds * 1000)
    const idle = await all(shards, s => s.endIdle())
    const sum = (f: (x: IdleStats) => number): number => idle.reduce((acc, x) => acc + f(x), 0)
    const suspicions = sum(x => x.suspicions)
    const raised: Record<string, number> = {}
    for (const x of idle) for (const [k, v] of Object.entries(x.raised)) raised[k] = (raised[k] ?? 0) + v
    const why = Object.entries(raised).map(([k, v]) => `${v} ${k}`).join(', ')
    row(`N=${n}`, 'idle: suspicions / gossip bytes per node per s', `${suspicions} / ${(sum(x => x.bytes) / n / idleSeconds).toFixed(0)} B`, suspicions === 0 ? 'ok' : `FLAPPED (raised: ${why})`,
      `${idleSeconds} s idle; each agent refreshes its advert every ${refreshFor(n, DEFAULT_TIMING.advertRefreshMs) / 1000} s from its last one`)
    row(`N=${n}`, 'idle: connections opened / closed', `${sum(x => x.opened)} / ${sum(x => x.closed)}`, 'each end counts', '')
    const conns = await all(shards, s => s.connStats())
    const peers = conns.flatMap(c => c.peers).sort((a, b) => a - b)
    row(`N=${n}`, 'peers per agent: min / median / max', `${peers[0]} / ${percentile(peers, 50)} / ${peers.at(-1)}`, `${conns.reduce((acc, c) => acc + c.duplicates, 0)} duplicate connections`, '')
    row(`N=${n}`, 'idle: CPU per agent / RSS per agent', `${(sum(x => x.cpuMicros) / 1e4 / idleSeconds / n).toFixed(2)} % core / ${(sum(x => x.rssBytes) / n / 2 ** 20).toFixed(1)} MiB`, '', '')

    // propagation, advert vs raw gossip baseline, 5 rounds each
    const origin = (await shards[0]!.ids())[0]!
    const adv: number[][] = []
    const raw: number[][] = []
    for (let r = 1; r <= 5; r++) {
      await all(shards, s => s.watchRaw(origin, 'bench-baseline', r))
      raw.push(await collect(shards, await shards[0]!.publishRaw('bench-baseline', r), n - 1, 5000))
      await sleep(200)
      await all(shards, s => s.watchAdvert(origin, r))
      adv.push(await collect(shards, await shards[0]!.changeAdvert(r), n - 1, 5000))
      await sleep(200)
    }
    const med = (xs: number[][], i: number): number => percentile(xs.map(x => spread(x, n - 1)[i]!).sort((a, b) => a - b), 50)
    for (const [i, label] of ['50%', '99%', '100%'].entries()) {
      const a = med(adv, i)
      const b = med(raw, i)
      const target = label === '99%' ? (a <= 500 ? 'ok (< 500 ms)' : 'MISSED (< 500 ms)') : ''
      row(`N=${n}`, `advert change reaches ${label}`, fmtMs(a), `x${(a / b).toFixed(2)} of raw gossip (${fmtMs(b)})`, target)
    }
    // rounds where some agents were still waiting after 5 s (and how many had it)
    const short = (xs: number[][]): string => xs.map(x => x.length).filter(k => k < n - 1).join(', ') || 'none'
    row(`N=${n}`, 'rounds not complete in 5 s: advert / raw', `${short(adv)} / ${short(raw)}`, `of ${n - 1} agents, 5 rounds each`, '')

    // a crashed agent: dead everywhere
    const last = shards[shards.length - 1]!
    const victim = (await last.ids()).at(-1)!
    await all(shards, s => s.watchDead(victim))
    const bound = deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs)
    const crashedAt = await last.crashLast()
    const deaths = await collect(shards, crashedAt, n - 1, bound + 10_000)
    const worst = deaths.length === n - 1 ? Math.max(...deaths) : NaN
    const doubts = (await all(shards, s => s.doubtTimes())).flat().map(t => t - crashedAt).sort((a, b) => a - b)
    row(`N=${n}`, 'crashed agent doubted (suspect) by 50/100 %', `${fmtMs(percentile(doubts, 50))} / ${fmtMs(doubts.length === n - 1 ? doubts.at(-1) : NaN)}`, 'a watcher sees its connections drop, then gossip', '')
    row(`N=${n}`, 'crashed agent dead on all', fmtMs(worst), `x${(worst / bound).toFixed(2)} of dead timeout (${bound} ms)`, worst <= bound + 1000 ? 'ok (<= timeout + 1 s)' : 'MISSED')
    if (shards.length > 1) {
      const per = await all(shards, async s => {
        const h = (await s.hitTimes()).map(t => t - crashedAt).sort((a, b) => a - b)
        return h.length === 0 ? 'none' : `${h.length}: ${fmtMs(percentile(h, 50))}/${fmtMs(h.at(-1))}`
      })
      row(`N=${n}`, 'dead on all, per process (count: median/max)', per.join(', '), 'the first process holds the seed agent', '')
    }
  } finally {
    await all(shards, s => s.stop())
    await cleanup()
  }
}

async function procStats (pid: number): Promise<{ rss: number, cpuTicks: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return { rss, cpuTicks: Number(stat[11]) + Number(stat[12]) }
}

async function idleProcess (label: string, cmd: string, args: string[], ready: () => Promise<boolean>): Promise<{ rss: number, cpu: number }> {
  const p = spawn(cmd, args, { stdio: 'ignore' })
  try {
    await waitFor(ready, 30_000, `${label} ready`)
    await sleep(5000)
    const a = await procStats(p.pid!)
    await sleep(20_000)
    const b = await procStats(p.pid!)
    return { rss: b.rss, cpu: (b.cpuTicks - a.cpuTicks) / 100 / 20 * 100 }
  } finally {
    p.kill('SIGKILL')
  }
}

async function oneIdleAgent (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-bench-idle-'))
  const api = await freePort()
  try {
    const agent = await idleProcess('agent', VGRID, ['agent', '--data-dir', dir, '--no-mdns', '--no-overlay', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${api}`],
      async () => (await fetch(`http://127.0.0.1:${api}/healthz`).catch(() => null))?.ok === true)
    const bare = await idleProcess('bare node', process.execPath, ['-e', 'setInterval(() => {}, 1000)'], async () => true)
    // the target is in decimal megabytes: 120 MB is 114.4 MiB
    row('1 agent', 'idle RSS', `${(agent.rss / 2 ** 20).toFixed(0)} MiB (${(agent.rss / 1e6).toFixed(0)} MB)`, `x${(agent.rss / bare.rss).toFixed(1)} of bare Node (${(bare.rss / 2 ** 20).toFixed(0)} MiB)`, agent.rss < 120e6 ? 'ok (< 120 MB)' : 'MISSED')
    row('1 agent', 'idle CPU', `${agent.cpu.toFixed(2)} % core`, `bare Node ${bare.cpu.toFixed(2)} %`, agent.cpu < 2 ? 'ok (< 2 %)' : 'MISSED')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const sizes = process.argv.slice(2).map(Number).filter(n => n > 1)
const idle = Number(process.env.IDLE_SECONDS ?? 20)
// one process can host about 50 agents with headroom (each idles at about 0.5 % of a
// core); larger grids are spread over processes so that every core works
const procsFor = (n: number): number => process.env.BENCH_PROCS != null ? Number(process.env.BENCH_PROCS) : Math.ceil(n / 50)
for (const n of sizes.length > 0 ? sizes : [50, 200]) await runGrid(n, procsFor(n), idle)
await oneIdleAgent()
const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
console.log('\n' + rows.map(r => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n'))
process.exit(0)
