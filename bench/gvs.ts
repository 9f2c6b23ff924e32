// GVS benchmark. In one run, against baselines measured in the same run:
//   sequential write and read of GVS_BENCH_MIB (default 1024) MiB with nbdcopy through
//     a vgrid export of a local volume (its server in a process of its own,
//     bench/gvs-local-server.ts, as qemu-nbd is), vs qemu-nbd serving a local raw file;
//   the same through a replicated volume (R=2 over 3 agents on loopback TCP libp2p:
//     the first in this process, serving NBD; two in processes of their own,
//     bench/gvs-agent.ts) with GVS_BENCH_REPL_MIB (default 128) MiB, served with the
//     serving node's cache in front as an agent serves a VM's disk on its holder
//     (local-cache.ts), and read again without it (from the replicas);
//   4 KiB random read and write IOPS with fio's nbd engine, likewise;
//   placement balance (max/mean objects per node) and movement on node add/remove
//     against the ideal;
//   repair throughput after a node is SIGKILLed (at the default rate cap, or
//     GVS_BENCH_REPAIR_BPS; 0: none), and the random-read IOPS a client keeps while
//     repair runs against those before the node loss.
//   node_modules/node/bin/node bench/gvs.ts
//   GVS_BENCH_ONLY=repl,repair node_modules/node/bin/node bench/gvs.ts   (parts: placement, local, repl, repair)
//   (repair runs after the replicated rows, which it needs; repl alone stops before it)
// bench/gvs-repl.ts measures the replicated rows alone, alternating with an older
// checkout, with the CPU seconds each process spends.
// Needs qemu-utils (qemu-nbd), libnbd-bin (nbdcopy) and fio.
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, open, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../protocol/host.ts'
import { generateClusterKey, keyHex } from '../protocol/cluster-key.ts'
import { createInterface } from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'
import { ObjectStore } from '../node/gvs/object-store.ts'
import type { BlockDevice } from '../node/gvs/block-device.ts'
import { ReplicaService } from '../node/gvs/replication.ts'
import { ReplicatedVolume } from '../node/gvs/replicated-volume.ts'
import { Repairer, DEFAULT_REPAIR_RATE } from '../node/gvs/repair.ts'
import { Placement, objectKey } from '../node/gvs/placement.ts'
import { NbdServer } from '../node/gvs/nbd/server.ts'
import { CachedVolume } from '../node/gvs/cached-volume.ts'
import { LocalCaches } from '../node/gvs/local-cache.ts'
import { silentLogger } from '../node/log.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const SIZE = Number(process.env.GVS_BENCH_MIB ?? 1024) * MiB
const REPL_SIZE = Number(process.env.GVS_BENCH_REPL_MIB ?? 128) * MiB
const FIO_SECONDS = Number(process.env.GVS_BENCH_FIO_SECONDS ?? 8)
/** which parts to run (comma-separated: placement, local, repl, repair); default all */
const ONLY = new Set((process.env.GVS_BENCH_ONLY ?? 'placement,local,repl,repair').split(','))

const rows: string[][] = [['metric', 'vgrid', 'baseline', 'ratio', 'note']]
const row = (...cells: string[]): void => { rows.push(cells); console.error(cells.join('  ')) }
const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000)
const f1 = (x: number): string => x.toFixed(1)
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function timed (f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

/** a file of `size` random bytes, written in 16 MiB chunks */
async function randomFile (path: string, size: number): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for (let off = 0; off < size; off += 16 * MiB) await fh.write(randomBytes(Math.min(16 * MiB, size - off)), 0, Math.min(16 * MiB, size - off), off)
  } finally { await fh.close() }
}

/** nbdcopy writes `src` to the export (null: no write), then reads it all */
async function seq (uri: string, src: string | null, size: number): Promise<{ writeMBs: number, readMBs: number }> {
  const w = src == null ? NaN : await timed(async () => await run('nbdcopy', ['--flush', src, uri]))
  const r = await timed(async () => await run('nbdcopy', [uri, 'null:']))
  return { writeMBs: mbps(size, w), readMBs: mbps(size, r) }
}

async function fio (uri: string, rw: 'randread' | 'randwrite', size: number, seconds = FIO_SECONDS): Promise<number> {
  const { stdout } = await run('fio', ['--name=gvs', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16',
    `--size=${Math.min(size, 256 * MiB)}`, `--runtime=${seconds}`, '--time_based', '--output-format=json'], { maxBuffer: 16 * MiB })
  // fio's nbd engine prints a line before the JSON
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number }, write: { iops: number } }> }).jobs[0]
  return rw === 'randread' ? job?.read.iops ?? 0 : job?.write.iops ?? 0
}

async function serve (dir: string, name: string, dev: BlockDevice): Promise<{ uri: string, server: NbdServer }> {
  const sock = join(dir, `${name}.sock`)
  const server = new NbdServer({ log: silentLogger, exports: { get: n => n === name ? dev : undefined, list: () => [name] } }, { socketPath: sock })
  await server.start()
  return { uri: `nbd+unix:///${name}?socket=${sock}`, server }
}

/**
 * The vgrid NBD server of a local volume in a process of its own, as qemu-nbd and as
 * an agent are (bench/gvs-local-server.ts): served from this process, every fork that
 * starts nbdcopy or fio made its pages copy-on-write, and the server paid the faults.
 */
async function localServer (dir: string, size: number): Promise<{ uri: string, stop: () => Promise<void> }> {
  const sock = join(dir, 'local.sock')
  const root = join(import.meta.dirname, '..')
  const p = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'gvs-local-server.ts'), root, join(dir, 'local'), sock, String(size)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const [line] = await new Promise<[string]>((resolve, reject) => {
    createInterface({ input: p.stdout! }).once('line', l => { resolve([l]) })
    p.once('exit', code => { reject(new Error(`the local vgrid server exited (${code}) before it was ready`)) })
  })
  if (line !== 'ready') throw new Error(`the local vgrid server said "${line}", not ready`)
  return {
    uri: `nbd+unix:///local?socket=${sock}`,
    stop: async () => { if (p.exitCode == null) { p.stdin!.end(); await new Promise(resolve => p.once('exit', resolve)) } }
  }
}

async function qemuNbd (dir: string, size: number, name: string): Promise<{ uri: string, stop: () => Promise<void> }> {
  const file = join(dir, `${name}.raw`)
  const fh = await open(file, 'w')
  await fh.truncate(size)
  await fh.close()
  const sock = join(dir, `${name}-qemu-nbd.sock`)
  const p = spawn('qemu-nbd', ['-f', 'raw', '-x', 'base', '-k', sock, '--persistent', '--shared=16', '--cache=writeback', file], { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) { if (await stat(sock).then(() => true, () => false)) break; await sleep(50) }
  return { uri: `nbd+unix:///base?socket=${sock}`, stop: async () => { p.kill('SIGTERM'); await new Promise(resolve => p.once('exit', resolve)) } }
}

function placementRows (): void {
  const nodes = Array.from({ length: 10 }, (_, i) => ({ id: `node-${i}`, weight: 1 }))
  const objects = 100_000
  const r = 2
  const assign = (ns: typeof nodes): string[][] => { const p = new Placement(ns); return Array.from({ length: objects }, (_, i) => p.holders(objectKey('bench', i), r)) }
  const before = assign(nodes)
  const counts = new Map<string, number>()
  for (const hs of before) for (const h of hs) counts.set(h, (counts.get(h) ?? 0) + 1)
  const c = [...counts.values()]
  const balance = Math.max(...c) / (c.reduce((a, b) => a + b, 0) / c.length)
  row('placement balance, max/mean objects per node', balance.toFixed(4), '1.0000', balance.toFixed(4), `10 nodes, ${objects} objects, R=2; target <= 1.05`)
  const moved = (a: string[][], b: string[][]): number => a.reduce((n, hs, i) => n + hs.filter(h => !(b[i] ?? []).includes(h)).length, 0)
  const grown = assign([...nodes, { id: 'node-new', weight: 1 }])
  const idealAdd = objects * r / 11
  const mAdd = moved(before, grown)
  row('movement on node add (replica slots)', String(mAdd), idealAdd.toFixed(0), (mAdd / idealAdd).toFixed(4), 'ideal = share of the new node; target <= 1.1')
  const shrunk = assign(nodes.filter(n => n.id !== 'node-3'))
  const held = counts.get('node-3') ?? 0
  const mRm = moved(before, shrunk)
  row('movement on node remove (replica slots)', String(mRm), String(held), (mRm / held).toFixed(4), 'ideal = what the removed node held; target 1.0')
}

interface BenchNode { id: string, alive: boolean, addr?: string, svc?: ReplicaService, kill: () => Promise<void>, stop: () => Promise<void> }

/**
 * The first agent runs here (it serves NBD and coordinates repair); the others each in
 * a process of their own (bench/gvs-agent.ts), as on servers of their own: in one
 * process, one event loop would do the work of all three (every byte encrypted by
 * one and decrypted by another, every replica's store writes), which no grid does.
 */
async function replicatedGrid (dir: string, n: number): Promise<BenchNode[]> {
  const clusterKey = generateClusterKey()
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, transport: 'tcp' })
  const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, 'agent0') })
  await store.start()
  const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 120_000 })
  await svc.start()
  const nodes: BenchNode[] = [{ id: host.peerId.toString(), alive: true, svc, kill: async () => { await svc.stop(); await host.stop() }, stop: async () => { await svc.stop(); await host.stop() } }]
  for (let i = 1; i < n; i++) {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'gvs-agent.ts')], {
      env: { ...process.env, VGRID_BENCH_KEY: keyHex(clusterKey), VGRID_BENCH_DIR: join(dir, `agent${i}`) },
      stdio: ['pipe', 'pipe', 'inherit']
    })
    const lines = createInterface({ input: child.stdout! })
    const next = async (): Promise<string> => await new Promise((resolve, reject) => {
      lines.once('line', resolve)
      child.once('exit', code => { reject(new Error(`bench agent ${i} exited (${code}) before answering`)) })
    })
    const hello = JSON.parse(await next()) as { id: string, addr: string }
    const exited = new Promise(resolve => child.once('exit', resolve))
    nodes.push({
      id: hello.id,
      alive: true,
      kill: async () => { child.kill('SIGKILL'); await exited },
      // stdin closed: the agent stops its service and host and exits
      stop: async () => { child.stdin!.end(); await Promise.race([exited, sleep(5000).then(() => { child.kill('SIGKILL') })]); await exited }
    })
    await host.dial(multiaddr(hello.addr))
    // the others dial each other too, so repair between them needs no new connection
    for (const m of nodes.slice(1, -1)) {
      child.stdin!.write(`dial ${m.addr}\n`)
      const r = await next()
      if (r !== 'dialled') throw new Error(`bench agent ${i}: ${r}`)
    }
    nodes[nodes.length - 1]!.addr = hello.addr
  }
  return nodes
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-bench-'))
  const stops: Array<() => Promise<void>> = []
  try {
    if (ONLY.has('placement')) placementRows()
    if (ONLY.has('local')) await localRows(dir, stops)
    if (ONLY.has('repl') || ONLY.has('repair')) await replicatedRows(dir, stops)
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  console.log(rows.map(r => r.map((c, i) => c.padEnd(w[i] ?? 0)).join('  ')).join('\n'))
}

/** a local volume through the vgrid NBD server vs qemu-nbd on a raw file */
async function localRows (dir: string, stops: Array<() => Promise<void>>): Promise<void> {
  const src = join(dir, 'src.raw')
  await randomFile(src, SIZE)
  const base = await qemuNbd(dir, SIZE, 'base')
  stops.push(base.stop)
  const local = await localServer(dir, SIZE)
  stops.push(local.stop)
  const b = await seq(base.uri, src, SIZE)
  const v = await seq(local.uri, src, SIZE)
  const mib = SIZE / MiB
  row(`seq write ${mib} MiB, nbdcopy (MB/s)`, f1(v.writeMBs), f1(b.writeMBs), (v.writeMBs / b.writeMBs).toFixed(2), 'vgrid local volume vs qemu-nbd raw file; target >= 0.5')
  row(`seq read ${mib} MiB, nbdcopy (MB/s)`, f1(v.readMBs), f1(b.readMBs), (v.readMBs / b.readMBs).toFixed(2), 'target >= 1.0')
  for (const rw of ['randread', 'randwrite'] as const) {
    const bi = await fio(base.uri, rw, SIZE)
    const vi = await fio(local.uri, rw, SIZE)
    row(`4 KiB ${rw} IOPS, fio nbd qd16`, vi.toFixed(0), bi.toFixed(0), (vi / bi).toFixed(2), `local volume; target ${rw === 'randread' ? '>= 1.0' : '>= 0.5'}`)
  }
}

/** R=2 over 3 agents on loopback TCP, served by the first; then repair after a node loss */
async function replicatedRows (dir: string, stops: Array<() => Promise<void>>): Promise<void> {
  const nodes = await replicatedGrid(dir, 3)
  stops.push(async () => { for (const x of nodes) if (x.alive) await x.stop() })
  const live = (): string[] => nodes.filter(x => x.alive).map(x => x.id)
  const holders = (key: string, r: number): string[] => new Placement(live().map(id => ({ id, weight: 1 }))).holders(key, r)
  const replicated = new ReplicatedVolume({ transport: nodes[0]!.svc!, holders, nodes: live }, { volume: 'repl', size: REPL_SIZE, replicas: 2, minReplicas: 1, epoch: 1 })
  // served as an agent serves a VM's disk on its holder, with this node's cache in front
  // (local-cache.ts); and the same volume without it, as a node that holds no local
  // copy reads it (the cold read, and the reads kept during repair)
  const caches = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: 8 * 2 ** 30 })
  stops.push(async () => { caches.close() })
  const rv = new CachedVolume({ generation: () => live().length }, replicated, caches.of('repl', 1)!)
  const repl = await serve(dir, 'repl', rv)
  stops.push(async () => { await repl.server.stop() })
  const cold = await serve(dir, 'repl-cold', replicated)
  stops.push(async () => { await cold.server.stop() })
  const rsrc = join(dir, 'rsrc.raw')
  await randomFile(rsrc, REPL_SIZE)
  // the baseline is a raw file of the same size (nbdcopy reads a whole export)
  const base = await qemuNbd(dir, REPL_SIZE, 'rbase')
  stops.push(base.stop)
  const rb = await seq(base.uri, rsrc, REPL_SIZE)
  const rs = await seq(repl.uri, rsrc, REPL_SIZE)
  row(`seq write ${REPL_SIZE / MiB} MiB, R=2 (MB/s)`, f1(rs.writeMBs), f1(rb.writeMBs), (rs.writeMBs / rb.writeMBs).toFixed(2), 'replicated over libp2p vs qemu-nbd raw file; target >= 0.5')
  row(`seq read ${REPL_SIZE / MiB} MiB, R=2 (MB/s)`, f1(rs.readMBs), f1(rb.readMBs), (rs.readMBs / rb.readMBs).toFixed(2), 'on the writer\'s node (its cache); target >= 1.0')
  const rc = await seq(cold.uri, null, REPL_SIZE)
  row(`seq read ${REPL_SIZE / MiB} MiB, R=2, no cache (MB/s)`, f1(rc.readMBs), f1(rb.readMBs), (rc.readMBs / rb.readMBs).toFixed(2), 'from the replicas, as a node without a local copy reads')
  const fioSecs = Math.max(3, Math.floor(FIO_SECONDS / 2))
  const bRead = await fio(base.uri, 'randread', REPL_SIZE, fioSecs)
  const cachedRead = await fio(repl.uri, 'randread', REPL_SIZE, fioSecs)
  row('4 KiB randread IOPS, R=2', cachedRead.toFixed(0), bRead.toFixed(0), (cachedRead / bRead).toFixed(2), 'on the writer\'s node (its cache); target >= 1.0')
  const idleRead = await fio(cold.uri, 'randread', REPL_SIZE, fioSecs)
  row('4 KiB randread IOPS, R=2, no cache', idleRead.toFixed(0), bRead.toFixed(0), (idleRead / bRead).toFixed(2), 'from the replicas')
  const bWrite = await fio(base.uri, 'randwrite', REPL_SIZE, fioSecs)
  const rWrite = await fio(repl.uri, 'randwrite', REPL_SIZE, fioSecs)
  row('4 KiB randwrite IOPS, R=2', rWrite.toFixed(0), bWrite.toFixed(0), (rWrite / bWrite).toFixed(2), 'target >= 0.5')

  // the repair part needs the volume written above and the idle IOPS, not the reverse
  if (!ONLY.has('repair')) return

  // ---- repair after a node loss, and the client I/O kept meanwhile: fio reads
  // through the export all along; the reads the server answered while repair ran,
  // over the time it ran, against the idle IOPS above
  const gone = nodes[2]!
  gone.alive = false
  await gone.kill()
  const rate = Number(process.env.GVS_BENCH_REPAIR_BPS ?? DEFAULT_REPAIR_RATE)
  const reader = spawn('fio', ['--name=gvs', '--ioengine=nbd', `--uri=${cold.uri}`, '--rw=randread', '--bs=4k', '--iodepth=16',
    `--size=${REPL_SIZE}`, '--runtime=300', '--time_based', '--output-format=json'], { stdio: 'ignore' })
  const readerDone = new Promise(resolve => reader.once('exit', resolve))
  await sleep(1000)
  const rep = new Repairer({ transport: nodes[0]!.svc!, holders, nodes: live }, { volume: 'repl', replicas: 2, bytesPerSecond: rate })
  const reads0 = cold.server.stats.read
  const t0 = performance.now()
  const report = await rep.run()
  const ms = performance.now() - t0
  const duringRead = (cold.server.stats.read - reads0) / (ms / 1000)
  reader.kill('SIGTERM')
  await readerDone
  const capped = rate > 0 && Number.isFinite(rate)
  row('repair throughput (MB/s)', f1(mbps(report.bytes, ms)), capped ? f1(rate / MiB) : 'no cap', capped ? (report.bytes / (ms / 1000) / rate).toFixed(2) : '-',
    `${report.done} objects copied, ${report.failed} failed, in ${(ms / 1000).toFixed(1)} s; vs the rate cap (GVS_BENCH_REPAIR_BPS, 0: none)`)
  row('4 KiB randread IOPS during repair', duringRead.toFixed(0), idleRead.toFixed(0), (duringRead / idleRead).toFixed(2), 'client I/O kept while repair runs (no cache), vs before the node loss')
}

await main()
