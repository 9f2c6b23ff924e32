// R=2 through NBD, before and after: the replicated part of bench/gvs.ts (3 agents on
// loopback TCP libp2p, the first serving NBD; nbdcopy and fio against qemu-nbd on a
// raw file) run in rounds that alternate between this checkout and an older one, so a
// change is measured against its predecessor under the same load of a shared machine.
//   GVS_REPL_BEFORE=/path/to/older/checkout node_modules/node/bin/node bench/gvs-repl.ts
// The older checkout needs this file, bench/gvs-agent.ts and (if its file imports it) bench/nbd-baseline.ts, and node_modules that
// resolve (e.g. `git archive` of a commit with a node_modules symlink). Without
// GVS_REPL_BEFORE it measures this checkout alone. GVS_REPL_ROUNDS (default 2),
// GVS_BENCH_REPL_MIB (default 128), GVS_BENCH_FIO_SECONDS (default 4),
// GVS_REPL_CONNECTIONS (nbdcopy --connections; default nbdcopy's own: up to 4 with
// multi-conn, at most one per thread, one thread per core), GVS_REPL_NBDCOPY (more
// nbdcopy options, e.g. "--threads=4 --requests=64").
// The serving node caches the volume as an agent does for its writer (local-cache.ts):
// "read" reads what it wrote (its cache), "cold read" the same once the cache was
// emptied (through the replicas, as a node that holds no local copy reads);
// GVS_REPL_CACHE=0 serves without a cache.
// Each line also gives the CPU seconds of the sequential write and read through vgrid
// (server + both agents + nbdcopy) and the MB moved per CPU second: on a shared 2-core
// machine that is steadier than MB/s, and says whether the path waits or computes.
// Diagnostics (in a child run, GVS_REPL_CHILD=1, which prints one JSON line of results):
// GVS_REPL_TRACE=1 prints each second the device's and the replica calls' counts, mean
// latency and requests in flight (local or remote); GVS_REPL_DIRECT=1 first writes and
// reads the volume without NBD (GVS_REPL_DIRECT_QD, default 32, requests of 256 KiB in
// flight); GVS_REPL_FIO=0 skips fio; GVS_REPL_MARK=1 prints when each phase starts (to
// cut a --cpu-prof into phases; in brackets CLOCK_MONOTONIC, to cut a `perf record`
// with `perf report --time`); GVS_REPL_LANES sets the serving agent's streams per
// peer for large requests (ReplicaServiceInit.lanes); GVS_REPL_REWRITE=1 writes both
// exports once before the timed writes, which then rewrite what is there (on VMs with
// free page reporting a first write pays the host's faults for every new page of cache).
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createHost } from '../protocol/host.ts'
import { generateClusterKey, keyHex } from '../protocol/cluster-key.ts'
import { ObjectStore } from '../node/gvs/object-store.ts'
import type { BlockDevice } from '../node/gvs/block-device.ts'
import { ReplicaService, type ReplicaTransport } from '../node/gvs/replication.ts'
import { ReplicatedVolume } from '../node/gvs/replicated-volume.ts'
import { Placement } from '../node/gvs/placement.ts'
import { NbdServer } from '../node/gvs/nbd/server.ts'
import { CachedVolume } from '../node/gvs/cached-volume.ts'
import { LocalCaches } from '../node/gvs/local-cache.ts'
import { silentLogger } from '../node/log.ts'
import { nbdcopyTimed, qemuNbd } from './nbd-baseline.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const SIZE = Number(process.env.GVS_BENCH_REPL_MIB ?? 128) * MiB
const FIO_SECONDS = Number(process.env.GVS_BENCH_FIO_SECONDS ?? 4)
const CONNS = process.env.GVS_REPL_CONNECTIONS
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000)
/** GVS_REPL_MARK=1: a phase starts (seconds since start, and CLOCK_MONOTONIC, which perf timestamps use) */
const mark = (what: string): void => {
  if (process.env.GVS_REPL_MARK === '1') console.error(`marks: ${what} at ${(performance.now() / 1000).toFixed(1)} s [${(Number(process.hrtime.bigint()) / 1e9).toFixed(3)}]`)
}

interface Result {
  write: number, read: number, readCold?: number, randread: number, randwrite: number, bWrite: number, bRead: number, bRandread: number, bRandwrite: number
  /** CPU seconds of the seq write and read through vgrid: this process (the server), the two agents, nbdcopy */
  cpuWrite: Phase['cpu'], cpuRead: Phase['cpu']
}

async function timed (f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

/** CPU seconds used so far by this process and by the given ones (the agents) */
function cpuSeconds (pids: number[]): { self: number, agents: number } {
  const u = process.cpuUsage()
  let agents = 0
  for (const pid of pids) {
    // utime and stime, fields 14 and 15, in clock ticks (100 a second)
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    agents += (Number(f[11]) + Number(f[12])) / 100
  }
  return { self: (u.user + u.system) / 1e6, agents }
}

/** one nbdcopy with this run's options, timed, with its own CPU seconds */
async function nbdcopy (args: string[]): Promise<{ ms: number, cpu: number }> {
  const c = [...(CONNS != null ? [`--connections=${CONNS}`] : []), ...(process.env.GVS_REPL_NBDCOPY ?? '').split(' ').filter(x => x !== '')]
  return await nbdcopyTimed([...c, ...args])
}

interface Phase { mbs: number, cpu: { server: number, agents: number, nbdcopy: number } }

async function seq (uri: string, src: string, pids: number[] = [], readOnly = false): Promise<{ write: Phase, read: Phase }> {
  const phase = async (args: string[]): Promise<Phase> => {
    const c0 = cpuSeconds(pids)
    const r = await nbdcopy(args)
    const c1 = cpuSeconds(pids)
    return { mbs: mbps(SIZE, r.ms), cpu: { server: c1.self - c0.self, agents: c1.agents - c0.agents, nbdcopy: r.cpu } }
  }
  const write = readOnly ? { mbs: NaN, cpu: { server: 0, agents: 0, nbdcopy: 0 } } : await phase(['--flush', src, uri])
  mark('nbdcopy read starts')
  return { write, read: await phase([uri, 'null:']) }
}

async function fio (uri: string, rw: 'randread' | 'randwrite'): Promise<number> {
  const { stdout } = await run('fio', ['--name=gvs', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16',
    `--size=${Math.min(SIZE, 256 * MiB)}`, `--runtime=${FIO_SECONDS}`, '--time_based', '--output-format=json'], { maxBuffer: 16 * MiB })
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number }, write: { iops: number } }> }).jobs[0]
  return rw === 'randread' ? job?.read.iops ?? 0 : job?.write.iops ?? 0
}


/** three agents: this process (serving NBD) and two children (bench/gvs-agent.ts) */
async function grid (dir: string): Promise<{ svc: ReplicaService, ids: string[], pids: number[], stop: () => Promise<void> }> {
  const clusterKey = generateClusterKey()
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, transport: 'tcp' })
  const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, 'agent0') })
  await store.start()
  const lanes = process.env.GVS_REPL_LANES != null ? Number(process.env.GVS_REPL_LANES) : undefined
  const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 120_000, lanes })
  await svc.start()
  const ids = [host.peerId.toString()]
  const stops: Array<() => Promise<void>> = []
  const addrs: string[] = []
  const pids: number[] = []
  for (let i = 1; i < 3; i++) {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'gvs-agent.ts')], {
      env: { ...process.env, VGRID_BENCH_KEY: keyHex(clusterKey), VGRID_BENCH_DIR: join(dir, `agent${i}`) },
      stdio: ['pipe', 'pipe', 'inherit']
    })
    const exited = new Promise(resolve => child.once('exit', resolve))
    pids.push(child.pid!)
    const lines = createInterface({ input: child.stdout })
    const next = async (): Promise<string> => await new Promise((resolve, reject) => {
      lines.once('line', resolve)
      child.once('exit', code => { reject(new Error(`bench agent ${i} exited (${code})`)) })
    })
    const hello = JSON.parse(await next()) as { id: string, addr: string }
    stops.push(async () => { child.stdin.end(); await Promise.race([exited, sleep(5000).then(() => { child.kill('SIGKILL') })]); await exited })
    await host.dial(multiaddr(hello.addr))
    for (const a of addrs) {
      child.stdin.write(`dial ${a}\n`)
      if (await next() !== 'dialled') throw new Error(`bench agent ${i} could not dial`)
    }
    addrs.push(hello.addr)
    ids.push(hello.id)
  }
  return { svc, ids, pids, stop: async () => { for (const s of stops) await s(); await svc.stop(); await host.stop() } }
}

/** GVS_REPL_TRACE=1: requests at once and their mean latency, per kind, on stderr */
function traced (dev: BlockDevice): BlockDevice {
  let now = 0
  const st = new Map<string, { n: number, ms: number, conc: number, bytes: number }>()
  const wrap = <A extends unknown[], R>(kind: string, f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    const s = st.get(kind) ?? { n: 0, ms: 0, conc: 0, bytes: 0 }
    const b = a[1]
    s.bytes += typeof b === 'number' ? b : b instanceof Uint8Array ? b.length : 0
    st.set(kind, s)
    now++
    s.conc += now
    const t0 = performance.now()
    try { return await f(...a) } finally { now--; s.n++; s.ms += performance.now() - t0 }
  }
  setInterval(() => {
    const parts = [...st].map(([k, s]) => `${k} ${s.n} (${(s.bytes / MiB).toFixed(1)} MiB started) mean ${(s.ms / Math.max(1, s.n)).toFixed(1)} ms at ${(s.conc / Math.max(1, s.n)).toFixed(1)} in flight`)
    if (parts.length > 0) console.error(parts.join('; '))
    st.clear()
  }, 1000).unref()
  return {
    size: dev.size,
    readOnly: dev.readOnly,
    read: wrap('read', dev.read.bind(dev)),
    write: wrap('write', dev.write.bind(dev)),
    flush: wrap('flush', dev.flush.bind(dev)),
    trim: wrap('trim', dev.trim.bind(dev)),
    writeZeroes: wrap('zero', dev.writeZeroes.bind(dev))
  }
}

/** GVS_REPL_TRACE=1: replica calls by op and peer (local or remote), likewise */
function tracedTransport (t: ReplicaService): ReplicaTransport {
  let now = 0
  const st = new Map<string, { n: number, ms: number, conc: number }>()
  setInterval(() => {
    const parts = [...st].map(([k, s]) => `${k} ${s.n} mean ${(s.ms / Math.max(1, s.n)).toFixed(1)} ms at ${(s.conc / Math.max(1, s.n)).toFixed(1)}`)
    if (parts.length > 0) console.error('  calls: ' + parts.join('; '))
    st.clear()
  }, 1000).unref()
  return {
    self: t.self,
    call: async (peer, req, data) => {
      const kind = `${req.op}@${peer === t.self ? 'local' : 'remote'}`
      const s = st.get(kind) ?? { n: 0, ms: 0, conc: 0 }
      st.set(kind, s)
      now++
      s.conc += now
      const t0 = performance.now()
      try { return await t.call(peer, req, data) } finally { now--; s.n++; s.ms += performance.now() - t0 }
    }
  }
}

async function child (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-repl-'))
  const stops: Array<() => Promise<void>> = []
  try {
    const g = await grid(dir)
    stops.push(g.stop)
    const holders = (key: string, r: number): string[] => new Placement(g.ids.map(id => ({ id, weight: 1 }))).holders(key, r)
    const transport = process.env.GVS_REPL_TRACE === '1' ? tracedTransport(g.svc) : g.svc
    const replicated: BlockDevice = new ReplicatedVolume({ transport, holders, nodes: () => g.ids }, { volume: 'repl', size: SIZE, replicas: 2, minReplicas: 1, epoch: 1 })
    // the serving node's cache of the volume, as an agent serves a VM's disk on its holder
    // (exports.ts); GVS_REPL_CACHE=0 serves it without
    const caches = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: process.env.GVS_REPL_CACHE === '0' ? 0 : 8 * 2 ** 30 })
    stops.push(async () => { caches.close() })
    const cache = caches.of('repl', 1)
    const inner: BlockDevice = cache == null ? replicated : new CachedVolume({}, replicated, cache)
    const rv = process.env.GVS_REPL_TRACE === '1' ? traced(inner) : inner
    const sock = join(dir, 'repl.sock')
    const server = new NbdServer({ log: silentLogger, exports: { get: n => n === 'repl' ? rv : undefined, list: () => ['repl'] } }, { socketPath: sock })
    await server.start()
    stops.push(async () => { await server.stop() })
    if (process.env.GVS_REPL_TRACE === '1') setInterval(() => { console.error(`  nbd sessions ${(server as unknown as { sessions: Set<unknown> }).sessions.size}`) }, 1000).unref()
    const uri = `nbd+unix:///repl?socket=${sock}`
    const src = join(dir, 'src.raw')
    const fh = await open(src, 'w')
    for (let off = 0; off < SIZE; off += 16 * MiB) await fh.write(randomBytes(16 * MiB), 0, Math.min(16 * MiB, SIZE - off), off)
    await fh.close()
    const base = await qemuNbd(dir, SIZE)
    stops.push(base.stop)
    if (process.env.GVS_REPL_DIRECT === '1') {
      // the same volume without NBD: 32 requests of 256 KiB in flight, as nbdcopy keeps
      // (GVS_REPL_DIRECT=1; its objects are then written and settled before nbdcopy runs)
      const data = readFileSync(src)
      const direct = async (f: (off: number) => Promise<unknown>): Promise<Phase> => {
        const c0 = cpuSeconds(g.pids)
        let next = 0
        const ms = await timed(async () => await Promise.all(Array.from({ length: Number(process.env.GVS_REPL_DIRECT_QD ?? 32) }, async () => {
          while (next < SIZE) { const off = next; next += 256 * 1024; await f(off) }
        })))
        const c1 = cpuSeconds(g.pids)
        return { mbs: mbps(SIZE, ms), cpu: { server: c1.self - c0.self, agents: c1.agents - c0.agents, nbdcopy: 0 } }
      }
      const w = await direct(async off => { await inner.write(off, data.subarray(off, off + 256 * 1024), false) })
      await inner.flush()
      mark('direct read starts')
      const r = await direct(async off => await inner.read(off, 256 * 1024))
      mark('direct done')
      console.error(`direct: write ${w.mbs.toFixed(1)} MB/s CPU s ${cpuText(w.cpu)}; read ${r.mbs.toFixed(1)} MB/s CPU s ${cpuText(r.cpu)}`)
    }
    if (process.env.GVS_REPL_REWRITE === '1') {
      // both written once first: the timed writes then rewrite data that is there
      await nbdcopy(['--flush', src, base.uri])
      await nbdcopy(['--flush', src, uri])
    }
    const b = await seq(base.uri, src)
    const v = await seq(uri, src, g.pids)
    // and once more with the cache emptied: what a node that holds no local copy yet reads
    cache?.drop()
    mark('cold read starts')
    const cold = cache == null ? v.read : (await seq(uri, '', g.pids, true)).read
    mark('written and read')
    // GVS_REPL_FIO=0: nbdcopy alone (e.g. for a profile of the sequential path)
    const withFio = process.env.GVS_REPL_FIO !== '0'
    const bRandread = withFio ? await fio(base.uri, 'randread') : NaN
    const randread = withFio ? await fio(uri, 'randread') : NaN
    const bRandwrite = withFio ? await fio(base.uri, 'randwrite') : NaN
    const randwrite = withFio ? await fio(uri, 'randwrite') : NaN
    const r: Result = { write: v.write.mbs, read: v.read.mbs, readCold: cold.mbs, randread, randwrite, bWrite: b.write.mbs, bRead: b.read.mbs, bRandread, bRandwrite, cpuWrite: v.write.cpu, cpuRead: v.read.cpu }
    process.stdout.write(JSON.stringify(r) + '\n')
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

async function runIn (checkout: string): Promise<Result> {
  const { stdout } = await run(process.execPath, ['--disable-warning=ExperimentalWarning', join(checkout, 'bench', 'gvs-repl.ts')],
    { env: { ...process.env, GVS_REPL_CHILD: '1' }, maxBuffer: 16 * MiB, cwd: checkout })
  // JSON writes the NaN of a skipped fio as null
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>
  for (const k of ['randread', 'randwrite', 'bRandread', 'bRandwrite']) r[k] ??= NaN
  return r as unknown as Result
}

const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
const cpuText = (c: Phase['cpu']): string => {
  const total = c.server + c.agents + c.nbdcopy
  return `${c.server.toFixed(2)}+${c.agents.toFixed(2)}+${c.nbdcopy.toFixed(2)} (${(SIZE / MiB / total).toFixed(0)} MB/CPU s)`
}
const line = (tag: string, r: Result): string =>
  `${tag.padEnd(6)} write ${r.write.toFixed(1)} MB/s (${(r.write / r.bWrite).toFixed(2)}x)  read ${r.read.toFixed(1)} MB/s (${(r.read / r.bRead).toFixed(2)}x)  ` +
  (r.readCold == null ? '' : `cold read ${r.readCold.toFixed(1)} MB/s (${(r.readCold / r.bRead).toFixed(2)}x)  `) +
  `randread ${r.randread.toFixed(0)} (${(r.randread / r.bRandread).toFixed(2)}x)  randwrite ${r.randwrite.toFixed(0)} (${(r.randwrite / r.bRandwrite).toFixed(2)}x)  ` +
  `[qemu-nbd: ${r.bWrite.toFixed(0)}/${r.bRead.toFixed(0)} MB/s, ${r.bRandread.toFixed(0)}/${r.bRandwrite.toFixed(0)} IOPS]  ` +
  `CPU s write ${cpuText(r.cpuWrite)} read ${cpuText(r.cpuRead)}`

if (process.env.GVS_REPL_CHILD === '1') await child()
else {
  const before = process.env.GVS_REPL_BEFORE
  const rounds = Number(process.env.GVS_REPL_ROUNDS ?? 2)
  const here = join(import.meta.dirname, '..')
  for (let i = 0; i < rounds; i++) {
    if (before != null) console.log(`${line('before', await runIn(before))}  load ${loadavg()}`)
    console.log(`${line('after', await runIn(here))}  load ${loadavg()}`)
  }
}
