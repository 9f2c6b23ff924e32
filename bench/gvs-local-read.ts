// The local-volume rows of bench/gvs.ts alone, repeated and alternated, with CPU time.
// One file of random data is written once through every server: qemu-nbd on a raw
// file, a vgrid export of a local volume served by this checkout, and, with
// GVS_LR_OLD=<checkout>[,<checkout>...], the same served by older checkouts (each vgrid server in a
// process of its own, bench/gvs-local-server.ts). Then each round reads each whole with
// nbdcopy, in an order that rotates from round to round (a trend in the machine's load
// hits all alike), and prints MB/s, the ratio to qemu-nbd in that round, the CPU
// seconds and minor faults of the server, and nbdcopy's CPU seconds.
//   node_modules/node/bin/node bench/gvs-local-read.ts
//   GVS_LR_MIB=1024 GVS_LR_ROUNDS=3 GVS_LR_OLD=/tmp/gvs-base GVS_LR_FIO=1 ...
// GVS_LR_FIO=1 adds 4 KiB random read and write IOPS (fio, nbd engine, qd16) each round.
// GVS_LR_PERF=<prefix> records `perf record -g` of this checkout's server over its reads
// (its node runs with --perf-basic-prof). GVS_LR_NODE_ARGS adds node flags to the vgrid servers.
// Needs qemu-utils (qemu-nbd), libnbd-bin (nbdcopy), fio for GVS_LR_FIO.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, open, stat, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'

const run = promisify(execFile)
const MiB = 1024 * 1024
const SIZE = Number(process.env.GVS_LR_MIB ?? 1024) * MiB
const ROUNDS = Number(process.env.GVS_LR_ROUNDS ?? 3)
const OLD = process.env.GVS_LR_OLD
const FIO = process.env.GVS_LR_FIO === '1'
const PERF = process.env.GVS_LR_PERF
const NODE_ARGS = (process.env.GVS_LR_NODE_ARGS ?? '').split(' ').filter(s => s !== '')
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const loadavg = async (): Promise<string> => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')

/** user+system CPU seconds (/proc/PID/stat fields 14, 15) and minor faults (10) of a process */
async function usage (pid: number): Promise<{ cpu: number, faults: number }> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return { cpu: (Number(f[11]) + Number(f[12])) / 100, faults: Number(f[7]) }
}

/** CPU seconds of a process's main thread (its first task) */
async function mainThreadCpu (pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

/** runs a command under /usr/bin/time: wall ms and its CPU seconds */
async function timedCmd (cmd: string, args: string[]): Promise<{ ms: number, cpu: number }> {
  const t0 = performance.now()
  const { stderr } = await run('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], { maxBuffer: 16 * MiB })
  const ms = performance.now() - t0
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(stderr)
  return { ms, cpu: m == null ? NaN : Number(m[1]) + Number(m[2]) }
}

async function fio (uri: string, rw: string): Promise<number> {
  const { stdout } = await run('fio', ['--name=gvs', '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', '--iodepth=16',
    `--size=${Math.min(SIZE, 256 * MiB)}`, '--runtime=5', '--time_based', '--output-format=json'], { maxBuffer: 16 * MiB })
  const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number }, write: { iops: number } }> }).jobs[0]
  return rw === 'randread' ? job?.read.iops ?? 0 : job?.write.iops ?? 0
}

interface Server { name: string, uri: string, pid: number, stop: () => Promise<void> }

async function waitFor (path: string): Promise<void> {
  for (let i = 0; i < 100; i++) { if (await stat(path).then(() => true, () => false)) return; await sleep(50) }
  throw new Error(`${path} did not appear`)
}

async function qemuNbd (dir: string): Promise<Server> {
  const raw = join(dir, 'base.raw')
  await (await open(raw, 'w')).close()
  await run('truncate', ['-s', String(SIZE), raw])
  const sock = join(dir, 'qemu.sock')
  const q = spawn('qemu-nbd', ['-f', 'raw', '-x', 'base', '-k', sock, '--persistent', '--shared=16', '--cache=writeback', raw], { stdio: 'ignore' })
  const exited = new Promise(resolve => q.once('exit', resolve))
  await waitFor(sock)
  return { name: 'qemu-nbd', uri: `nbd+unix:///base?socket=${sock}`, pid: q.pid!, stop: async () => { q.kill('SIGTERM'); await exited } }
}

async function vgrid (dir: string, name: string, root: string, extra: string[]): Promise<Server> {
  const sock = join(dir, `${name}.sock`)
  const child: ChildProcess = spawn(process.execPath, [...extra, '--disable-warning=ExperimentalWarning', join(import.meta.dirname, 'gvs-local-server.ts'),
    root, join(dir, name), sock, String(SIZE)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise(resolve => child.once('exit', resolve))
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve)
    child.once('exit', code => { reject(new Error(`${name} server exited (${code})`)) })
  })
  if (line !== 'ready') throw new Error(`${name} server: ${line}`)
  return {
    name,
    uri: `nbd+unix:///local?socket=${sock}`,
    pid: child.pid!,
    stop: async () => { child.stdin!.end(); await Promise.race([exited, sleep(10_000).then(() => { child.kill('SIGKILL') })]); await exited }
  }
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-lr-'))
  const servers: Server[] = []
  try {
    const src = join(dir, 'src.raw')
    const fh = await open(src, 'w')
    for (let off = 0; off < SIZE; off += 16 * MiB) await fh.write(randomBytes(Math.min(16 * MiB, SIZE - off)), 0, Math.min(16 * MiB, SIZE - off), off)
    await fh.close()
    servers.push(await qemuNbd(dir))
    servers.push(await vgrid(dir, 'new', join(import.meta.dirname, '..'), [...NODE_ARGS, ...(PERF != null ? ['--perf-basic-prof'] : [])]))
    // several older checkouts: GVS_LR_OLD=/a,/b (named old, old2, ...)
    for (const [i, root] of (OLD ?? '').split(',').filter(r => r !== '').entries()) servers.push(await vgrid(dir, i === 0 ? 'old' : `old${i + 1}`, root, NODE_ARGS))

    for (const s of servers) {
      const w = await timedCmd('nbdcopy', ['--flush', src, s.uri])
      console.log(`write ${s.name}: ${(SIZE / MiB / (w.ms / 1000)).toFixed(0)} MB/s, nbdcopy cpu ${w.cpu.toFixed(2)} s`)
    }
    const ratios = new Map<string, number[]>()
    const cpu = new Map<string, Array<[number, number]>>()
    for (let r = 0; r < ROUNDS; r++) {
      const order = servers.map((_, i) => servers[(i + r) % servers.length]!)
      const res = new Map<string, { mbs: number, cpu: number, server: number, main: number, faults: number }>()
      for (const s of order) {
        const u0 = await usage(s.pid)
        const m0 = await mainThreadCpu(s.pid)
        const perf = PERF != null && s.name === 'new' ? spawn('perf', ['record', '-g', '-o', `${PERF}.${r + 1}.data`, '-p', String(s.pid)], { stdio: 'ignore' }) : null
        if (perf != null) await sleep(500)
        const c = await timedCmd('nbdcopy', [s.uri, 'null:'])
        if (perf != null) { perf.kill('SIGINT'); await new Promise(resolve => perf.once('exit', resolve)) }
        const u1 = await usage(s.pid)
        res.set(s.name, { mbs: SIZE / MiB / (c.ms / 1000), cpu: c.cpu, server: u1.cpu - u0.cpu, main: await mainThreadCpu(s.pid) - m0, faults: u1.faults - u0.faults })
      }
      const base = res.get('qemu-nbd')!
      const cells = servers.map(s => {
        const x = res.get(s.name)!
        if (s.name !== 'qemu-nbd') { const l = ratios.get(s.name) ?? []; l.push(x.mbs / base.mbs); ratios.set(s.name, l) }
        const c = cpu.get(s.name) ?? []
        c.push([x.server, x.main])
        cpu.set(s.name, c)
        return `${s.name} ${x.mbs.toFixed(0)} MB/s (${(x.mbs / base.mbs).toFixed(2)}x; server ${x.server.toFixed(2)} s, main thread ${x.main.toFixed(2)} s, ${x.faults} faults, nbdcopy ${x.cpu.toFixed(2)} s)`
      })
      console.log(`round ${r + 1} [load ${await loadavg()}] seq read: ${cells.join('; ')}`)
      if (FIO) {
        for (const rw of ['randread', 'randwrite']) {
          const iops = new Map<string, number>()
          for (const s of order) iops.set(s.name, await fio(s.uri, rw))
          const b = iops.get('qemu-nbd')!
          console.log(`  4K ${rw} IOPS: ${servers.map(s => `${s.name} ${iops.get(s.name)!.toFixed(0)} (${(iops.get(s.name)! / b).toFixed(2)}x)`).join('; ')}`)
        }
      }
    }
    for (const [name, l] of ratios) {
      const sorted = [...l].sort((a, b) => a - b)
      console.log(`seq read ${name}/qemu-nbd: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} (${l.map(x => x.toFixed(2)).join(' ')})`)
    }
    const median = (l: number[]): number => [...l].sort((a, b) => a - b)[Math.floor(l.length / 2)]!
    for (const [name, l] of cpu) {
      console.log(`${name}: CPU s per GiB read, median: server ${(median(l.map(x => x[0])) * 1024 * MiB / SIZE).toFixed(2)}, its main thread ${(median(l.map(x => x[1])) * 1024 * MiB / SIZE).toFixed(2)}`)
    }
    console.log(`load ${await loadavg()}`)
  } finally {
    for (const s of servers.reverse()) await s.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
