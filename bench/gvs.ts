// GVS benchmark. In one run, against baselines measured in the same run:
//   sequential write and read of GVS_BENCH_MIB (default 1024) MiB with nbdcopy through
//     a vgrid export of a local volume, vs qemu-nbd serving a local raw file;
//   the same through a replicated volume (R=2 over 3 in-process agents on loopback
//     TCP libp2p) with GVS_BENCH_REPL_MIB (default 128) MiB;
//   4 KiB random read and write IOPS with fio's nbd engine, likewise;
//   placement balance (max/mean objects per node) and movement on node add/remove
//     against the ideal;
//   repair throughput after a node loss, and the random-read IOPS a client keeps
//     while repair runs against those without it.
//   node_modules/node/bin/node bench/gvs.ts
// Needs qemu-utils (qemu-nbd), libnbd-bin (nbdcopy) and fio.
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, open, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { ObjectStore } from '../node/gvs/object-store.ts'
import { LocalVolume, type BlockDevice } from '../node/gvs/block-device.ts'
import { ReplicaService } from '../node/gvs/replication.ts'
import { ReplicatedVolume } from '../node/gvs/replicated-volume.ts'
import { Repairer } from '../node/gvs/repair.ts'
import { Placement, objectKey } from '../node/gvs/placement.ts'
import { NbdServer } from '../node/gvs/nbd/server.ts'
import { silentLogger } from '../node/log.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const SIZE = Number(process.env.GVS_BENCH_MIB ?? 1024) * MiB
const REPL_SIZE = Number(process.env.GVS_BENCH_REPL_MIB ?? 128) * MiB
const FIO_SECONDS = Number(process.env.GVS_BENCH_FIO_SECONDS ?? 8)

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

async function seq (uri: string, src: string, size: number): Promise<{ writeMBs: number, readMBs: number }> {
  const w = await timed(async () => await run('nbdcopy', ['--flush', src, uri]))
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

async function qemuNbd (dir: string, size: number): Promise<{ uri: string, stop: () => Promise<void> }> {
  const file = join(dir, 'base.raw')
  const fh = await open(file, 'w')
  await fh.truncate(size)
  await fh.close()
  const sock = join(dir, 'qemu-nbd.sock')
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

interface BenchNode { id: string, host: VgridHost, store: ObjectStore, svc: ReplicaService, alive: boolean }

async function replicatedGrid (dir: string, n: number): Promise<BenchNode[]> {
  const clusterKey = generateClusterKey()
  const nodes: BenchNode[] = []
  for (let i = 0; i < n; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, transport: 'tcp' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `agent${i}`) })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 120_000 })
    await svc.start()
    nodes.push({ id: host.peerId.toString(), host, store, svc, alive: true })
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.host.dial(b.host.getMultiaddrs()[0]!)
  return nodes
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-bench-'))
  const stops: Array<() => Promise<void>> = []
  try {
    placementRows()
    const src = join(dir, 'src.raw')
    await randomFile(src, SIZE)

    // ---- local volume through the vgrid NBD server vs qemu-nbd on a raw file
    const base = await qemuNbd(dir, SIZE)
    stops.push(base.stop)
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, 'local') })
    await store.start()
    const local = await serve(dir, 'local', new LocalVolume({ store }, { volume: 'local', size: SIZE, epoch: 1 }))
    stops.push(async () => { await local.server.stop() })
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

    // ---- replicated volume: R=2 over 3 agents on loopback TCP, served by the first
    const nodes = await replicatedGrid(dir, 3)
    stops.push(async () => { for (const x of nodes) if (x.alive) await x.host.stop() })
    const live = (): string[] => nodes.filter(x => x.alive).map(x => x.id)
    const holders = (key: string, r: number): string[] => new Placement(live().map(id => ({ id, weight: 1 }))).holders(key, r)
    const rv = new ReplicatedVolume({ transport: nodes[0]!.svc, holders, nodes: live }, { volume: 'repl', size: REPL_SIZE, replicas: 2, minReplicas: 1, epoch: 1 })
    const repl = await serve(dir, 'repl', rv)
    stops.push(async () => { await repl.server.stop() })
    const rsrc = join(dir, 'rsrc.raw')
    await randomFile(rsrc, REPL_SIZE)
    const rb = await seq(base.uri, rsrc, REPL_SIZE)
    const rs = await seq(repl.uri, rsrc, REPL_SIZE)
    row(`seq write ${REPL_SIZE / MiB} MiB, R=2 (MB/s)`, f1(rs.writeMBs), f1(rb.writeMBs), (rs.writeMBs / rb.writeMBs).toFixed(2), 'replicated over libp2p vs qemu-nbd raw file; target >= 0.5')
    row(`seq read ${REPL_SIZE / MiB} MiB, R=2 (MB/s)`, f1(rs.readMBs), f1(rb.readMBs), (rs.readMBs / rb.readMBs).toFixed(2), 'target >= 1.0')
    const fioSecs = Math.max(3, Math.floor(FIO_SECONDS / 2))
    const bRead = await fio(base.uri, 'randread', REPL_SIZE, fioSecs)
    const idleRead = await fio(repl.uri, 'randread', REPL_SIZE, fioSecs)
    row('4 KiB randread IOPS, R=2', idleRead.toFixed(0), bRead.toFixed(0), (idleRead / bRead).toFixed(2), 'target >= 1.0')
    const bWrite = await fio(base.uri, 'randwrite', REPL_SIZE, fioSecs)
    const rWrite = await fio(repl.uri, 'randwrite', REPL_SIZE, fioSecs)
    row('4 KiB randwrite IOPS, R=2', rWrite.toFixed(0), bWrite.toFixed(0), (rWrite / bWrite).toFixed(2), 'target >= 0.5')

    // ---- repair after a node loss, and the client I/O kept meanwhile
    const gone = nodes[2]!
    gone.alive = false
    await gone.host.stop()
    const rep = new Repairer({ transport: nodes[0]!.svc, holders, nodes: live }, { volume: 'repl', replicas: 2, bytesPerSecond: Number(process.env.GVS_BENCH_REPAIR_BPS ?? 20e6) })
    const t0 = performance.now()
    const repairing = rep.run()
    const duringRead = await fio(repl.uri, 'randread', REPL_SIZE, fioSecs)
    const report = await repairing
    const ms = performance.now() - t0
    row('repair throughput (MB/s)', f1(mbps(report.bytes, ms)), f1(Number(process.env.GVS_BENCH_REPAIR_BPS ?? 20e6) / MiB), (report.bytes / (ms / 1000) / Number(process.env.GVS_BENCH_REPAIR_BPS ?? 20e6)).toFixed(2), `${report.done} objects copied, ${report.failed} failed; vs the rate cap`)
    row('4 KiB randread IOPS during repair', duringRead.toFixed(0), idleRead.toFixed(0), (duringRead / idleRead).toFixed(2), 'client I/O kept while repair runs, vs idle')
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  console.log(rows.map(r => r.map((c, i) => c.padEnd(w[i] ?? 0)).join('  ')).join('\n'))
}

await main()
