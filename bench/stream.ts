// Throughput of one libp2p stream between two vgrid hosts (TCP | pnet | Noise | yamux,
// as protocol/host.ts assembles them), each host in a process of its own, over loopback:
// STREAM_BENCH_MIB (default 1024) MiB sent one way in 64 KiB writes, then the same
// amount the other way, after a warm-up. Prints MB/s and the CPU seconds per GiB that
// sender and receiver spent (steadier than MB/s on a machine shared with other work).
//   node_modules/node/bin/node bench/stream.ts
//   STREAM_BENCH_BEFORE=/path/to/older/checkout node_modules/node/bin/node bench/stream.ts
// With STREAM_BENCH_BEFORE (a checkout whose node_modules resolve, e.g. `git archive`
// of an older commit with a node_modules symlink), the same run also measures two hosts
// of that checkout in alternating rounds (STREAM_BENCH_ROUNDS, default 3), prints
// after/before ratios of the medians, and streams between an older and a newer host both ways
// (agents of the previous version must still connect and agree on every byte).
// Profile a side with STREAM_BENCH_PROF=DIR (node --cpu-prof into DIR for both hosts).
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { createHash } from 'node:crypto'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const MiB = 1024 * 1024
const CHUNK = 64 * 1024
const PROTOCOL = '/vgrid-bench/stream/1'
const WARMUP = 64 * MiB
const HERE = resolve(import.meta.dirname, '..')

// what is sent: chunk n of a pattern 17 chunks long (distinct chunks, so a reordering
// shows; never written to, so the stream may keep references to it)
const PATTERN = (() => {
  const p = new Uint8Array(17 * CHUNK)
  let x = 0x9e3779b9
  for (let i = 0; i < p.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; p[i] = x & 0xff }
  return p
})()
const chunkAt = (n: number): Uint8Array => PATTERN.subarray((n % 17) * CHUNK, (n % 17 + 1) * CHUNK)

function expectedSha256 (bytes: number): string {
  const hash = createHash('sha256')
  for (let off = 0, n = 0; off < bytes; off += CHUNK, n++) hash.update(chunkAt(n))
  return hash.digest('hex')
}

/** user + system CPU time since `since`, in ms */
const cpuMs = (since: NodeJS.CpuUsage): number => { const u = process.cpuUsage(since); return (u.user + u.system) / 1000 }

/** one host: prints its address, then obeys "send <addr> <bytes>" / "sink" lines on stdin */
async function host (root: string): Promise<void> {
  const { createHost } = await import(pathToFileURL(`${root}/protocol/host.ts`).href) as typeof import('../protocol/host.ts')
  const { clusterKeyFromHex } = await import(pathToFileURL(`${root}/protocol/cluster-key.ts`).href) as typeof import('../protocol/cluster-key.ts')
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { multiaddr } = await import('@multiformats/multiaddr')
  const h = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: clusterKeyFromHex(process.env.STREAM_BENCH_KEY ?? ''), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  // the receiving side hashes what arrives and reports it when the sender closes
  await h.handle(PROTOCOL, (stream) => {
    stream.inactivityTimeout = 0
    const hash = createHash('sha256')
    let bytes = 0
    const cpu0 = process.cpuUsage()
    stream.addEventListener('message', (e) => {
      for (const b of e.data instanceof Uint8Array ? [e.data] : e.data) { hash.update(b); bytes += b.byteLength }
    })
    stream.addEventListener('remoteCloseWrite', () => {
      console.log(JSON.stringify({ received: bytes, sha256: hash.digest('hex'), cpuMs: cpuMs(cpu0) }))
      void stream.close()
    })
  })
  console.log(JSON.stringify({ addr: h.getMultiaddrs()[0]!.toString() }))
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, addr, size] = line.split(' ')
    if (cmd === 'quit') break
    if (cmd !== 'send' || addr == null) continue
    const stream = await h.dialProtocol(multiaddr(addr), PROTOCOL)
    stream.inactivityTimeout = 0
    const cpu0 = process.cpuUsage()
    for (let off = 0, n = 0; off < Number(size); off += CHUNK, n++) {
      if (!stream.send(chunkAt(n))) await stream.onDrain()
    }
    await stream.close()
    console.log(JSON.stringify({ cpuMs: cpuMs(cpu0) }))
  }
  await h.stop()
}

interface Side { proc: ChildProcess, next: () => Promise<Record<string, unknown>>, addr: string }

async function start (root: string, key: string, prof: string | undefined): Promise<Side> {
  const args = ['--disable-warning=ExperimentalWarning', ...(prof != null ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), `${HERE}/bench/stream.ts`, 'host', root]
  const proc = spawn(process.execPath, args, { cwd: root, env: { ...process.env, STREAM_BENCH_KEY: key }, stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]()
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next()
    if (r.done === true) throw new Error(`host in ${root} ended`)
    return JSON.parse(r.value as string) as Record<string, unknown>
  }
  const addr = (await next()).addr as string
  return { proc, next, addr }
}

interface Result { mbs: number, sendCpu: number, recvCpu: number }

/** MB/s of `bytes` from a to b, and the CPU seconds per GiB either side spent; fails if b got other bytes than a sent */
async function oneWay (a: Side, b: Side, bytes: number): Promise<Result> {
  const t0 = performance.now()
  a.proc.stdin!.write(`send ${b.addr} ${bytes}\n`)
  const [sent, got] = await Promise.all([a.next(), b.next()])
  const ms = performance.now() - t0
  const want = expectedSha256(bytes)
  if (got.received !== bytes || got.sha256 !== want) throw new Error(`stream corrupted: sent ${bytes} bytes ${want}, got ${String(got.received)} ${String(got.sha256)}`)
  const perGiB = (cpu: unknown): number => (cpu as number) / 1000 / (bytes / 1024 / MiB)
  return { mbs: bytes / MiB / (ms / 1000), sendCpu: perGiB(sent.cpuMs), recvCpu: perGiB(got.cpuMs) }
}

async function pair (rootA: string, rootB: string, bytes: number): Promise<[Result, Result]> {
  const key = createHash('sha256').update(String(Math.random())).digest('hex')
  const prof = process.env.STREAM_BENCH_PROF
  const [a, b] = await Promise.all([start(rootA, key, prof), start(rootB, key, prof)])
  try {
    await oneWay(a, b, WARMUP) // JIT and yamux's window growth
    return [await oneWay(a, b, bytes), await oneWay(b, a, bytes)]
  } finally {
    for (const s of [a, b]) s.proc.stdin!.end('quit\n')
    await Promise.all([a, b].map(async s => await new Promise(resolve => s.proc.once('exit', resolve))))
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }

async function main (): Promise<void> {
  const bytes = Number(process.env.STREAM_BENCH_MIB ?? 1024) * MiB
  const before = process.env.STREAM_BENCH_BEFORE
  // rounds alternate this checkout and the older one, so a load that comes and goes
  // (others' tests on the same machine) falls on both
  const rounds = Number(process.env.STREAM_BENCH_ROUNDS ?? (before == null ? 1 : 3))
  const f = (r: Result): string => `${r.mbs.toFixed(1)} MB/s (CPU s/GiB: send ${r.sendCpu.toFixed(2)}, receive ${r.recvCpu.toFixed(2)})`
  console.log(`${bytes / MiB} MiB each way, after ${WARMUP / MiB} MiB of warm-up; ${rounds} round(s)`)
  const now: Result[] = []
  const old: Result[] = []
  for (let r = 0; r < rounds; r++) {
    const n = await pair(HERE, HERE, bytes)
    now.push(...n)
    console.log(`this checkout  a->b ${f(n[0])}  b->a ${f(n[1])}`)
    if (before == null) continue
    const o = await pair(before, before, bytes)
    old.push(...o)
    console.log(`before         a->b ${f(o[0])}  b->a ${f(o[1])}`)
  }
  if (before == null) return
  const ratio = (k: keyof Result): string => (median(now.map(r => r[k])) / median(old.map(r => r[k]))).toFixed(2) + 'x'
  console.log(`after/before (medians)  MB/s ${ratio('mbs')}  CPU per byte (lower is better): send ${ratio('sendCpu')} receive ${ratio('recvCpu')}`)
  const mixed = await pair(HERE, before, bytes)
  console.log(`new<->old      new->old ${f(mixed[0])}  old->new ${f(mixed[1])}  (same bytes arrived)`)
}

if (process.argv[2] === 'host') await host(process.argv[3] ?? HERE)
else await main()
