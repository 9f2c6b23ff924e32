// Membership benchmark: many agents in one process on the in-memory transport.
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
import { startGrid, until, percentile, fmtMs, type InProcessGrid } from './cluster.ts'
import { deadTimeoutMs, DEFAULT_MEMBERSHIP } from '../protocol/membership.ts'
import { DEFAULT_TIMING } from '../protocol/membership-service.ts'
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

async function advertPropagation (g: InProcessGrid, round: number): Promise<number[]> {
  const [origin, ...others] = g.agents
  const arrivals: number[] = []
  const start = performance.now()
  const handlers = others.map(a => {
    const h = (ad: { nodeId: string, reserved: { cpu: number } }): void => {
      if (ad.nodeId === origin!.id && ad.reserved.cpu === round) arrivals.push(performance.now() - start)
    }
    a.membership.on('advert', h as never)
    return () => a.membership.off('advert', h as never)
  })
  origin!.setReserved({ cpu: round, memoryBytes: 0, diskBytes: 0 })
  await until(() => arrivals.length === others.length, 5000)
  for (const off of handlers) off()
  return arrivals.map(a => a)
}

async function rawGossipPropagation (g: InProcessGrid, round: number): Promise<number[]> {
  const topic = 'bench-baseline'
  const [origin, ...others] = g.agents
  const arrivals: number[] = []
  const start = performance.now()
  const handlers = others.map(a => {
    const h = (evt: CustomEvent<{ topic: string, data: Uint8Array }>): void => {
      if (evt.detail.topic === topic && evt.detail.data[0] === round) arrivals.push(performance.now() - start)
    }
    a.host.services.pubsub.addEventListener('message', h as never)
    return () => a.host.services.pubsub.removeEventListener('message', h as never)
  })
  await origin!.host.services.pubsub.publish(topic, new Uint8Array(600).fill(round))
  await until(() => arrivals.length === others.length, 5000)
  for (const off of handlers) off()
  return arrivals
}

async function runGrid (n: number, idleSeconds: number): Promise<void> {
  global.gc?.()
  const rss0 = process.memoryUsage().rss
  const t0 = performance.now()
  const g = await startGrid(n, { run: `m${n}` })
  const started = performance.now() - t0
  const converged = await until(() => g.agents.every(a => [...a.membership.members.values()].filter(m => m.state === 'alive').length === n), 120_000, 50)
  row(`N=${n}`, 'start + converge', `${fmtMs(started)} + ${fmtMs(converged)}`, '', '')
  // subscribe the baseline topic everywhere, let the mesh form
  for (const a of g.agents) a.host.services.pubsub.subscribe('bench-baseline')
  await sleep(3000)

  // idle window: CPU, bytes, suspicions
  let bytes = 0
  let suspicions = 0
  const offs = g.agents.map(a => {
    const b = (x: number): void => { bytes += x }
    const s = (): void => { suspicions++ }
    a.membership.on('sent', b)
    a.membership.on('received', b)
    a.membership.on('suspected', s)
    return () => { a.membership.off('sent', b); a.membership.off('received', b); a.membership.off('suspected', s) }
  })
  const cpu0 = process.cpuUsage()
  await sleep(idleSeconds * 1000)
  const cpu = process.cpuUsage(cpu0)
  for (const off of offs) off()
  const rssPer = (process.memoryUsage().rss - rss0) / n
  row(`N=${n}`, 'idle: suspicions / gossip bytes per node per s', `${suspicions} / ${(bytes / n / idleSeconds).toFixed(0)} B`, suspicions === 0 ? 'ok' : 'FLAPPED', `${idleSeconds} s idle`)
  row(`N=${n}`, 'idle: CPU per agent / RSS per agent', `${((cpu.user + cpu.system) / 1e4 / idleSeconds / n).toFixed(2)} % core / ${(rssPer / 2 ** 20).toFixed(1)} MiB`, '', '')

  // propagation, advert vs raw gossip baseline, 5 rounds each
  const adv: number[][] = []
  const raw: number[][] = []
  for (let r = 1; r <= 5; r++) {
    raw.push(await rawGossipPropagation(g, r))
    await sleep(200)
    adv.push(await advertPropagation(g, r))
    await sleep(200)
  }
  const med = (xs: number[][], i: number): number => percentile(xs.map(x => spread(x, n - 1)[i]!).sort((a, b) => a - b), 50)
  for (const [i, label] of ['50%', '99%', '100%'].entries()) {
    const a = med(adv, i)
    const b = med(raw, i)
    const target = label === '99%' ? (a <= 500 ? 'ok (< 500 ms)' : 'MISSED (< 500 ms)') : ''
    row(`N=${n}`, `advert change reaches ${label}`, fmtMs(a), `x${(a / b).toFixed(2)} of raw gossip (${fmtMs(b)})`, target)
  }

  // a crashed agent: dead everywhere
  const victim = g.agents[n - 1]!
  const vid = victim.id
  const deadAt = new Map<string, number>()
  const t1 = performance.now()
  for (const a of g.agents.slice(0, -1)) a.membership.on('transition', t => { if (t.nodeId === vid && t.to === 'dead' && !deadAt.has(a.id)) deadAt.set(a.id, performance.now() - t1) })
  await victim.stop({ graceful: false })
  const bound = deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs)
  await until(() => deadAt.size === n - 1, bound + 10_000)
  const all = deadAt.size === n - 1 ? Math.max(...deadAt.values()) : NaN
  row(`N=${n}`, 'crashed agent dead on all', fmtMs(all), `x${(all / bound).toFixed(2)} of dead timeout (${bound} ms)`, all <= bound + 1000 ? 'ok (<= timeout + 1 s)' : 'MISSED')
  g.agents.pop()
  await g.stop()
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
    const agent = await idleProcess('agent', VGRID, ['agent', '--data-dir', dir, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${api}`],
      async () => (await fetch(`http://127.0.0.1:${api}/healthz`).catch(() => null))?.ok === true)
    const bare = await idleProcess('bare node', process.execPath, ['-e', 'setInterval(() => {}, 1000)'], async () => true)
    row('1 agent', 'idle RSS', `${(agent.rss / 2 ** 20).toFixed(0)} MiB`, `x${(agent.rss / bare.rss).toFixed(1)} of bare Node (${(bare.rss / 2 ** 20).toFixed(0)} MiB)`, agent.rss < 120 * 2 ** 20 ? 'ok (< 120 MB)' : 'MISSED')
    row('1 agent', 'idle CPU', `${agent.cpu.toFixed(2)} % core`, `bare Node ${bare.cpu.toFixed(2)} %`, agent.cpu < 2 ? 'ok (< 2 %)' : 'MISSED')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const sizes = process.argv.slice(2).map(Number).filter(n => n > 1)
const idle = Number(process.env.IDLE_SECONDS ?? 20)
for (const n of sizes.length > 0 ? sizes : [50, 200]) await runGrid(n, idle)
await oneIdleAgent()
const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
console.log('\n' + rows.map(r => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n'))
process.exit(0)
