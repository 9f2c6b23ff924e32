// Sequential reads a VM disk's node serves from its cache (node/gvs/local-cache.ts),
// against qemu-nbd serving a raw file of the same data: the NBD server and the cache
// alone, no replicas (the device under the cache is memory; every read after the first
// write is a cache hit). Rounds alternate qemu-nbd and vgrid; each prints MB/s, the
// ratio, and both servers' and nbdcopy's CPU seconds.
//   node_modules/node/bin/node bench/gvs-cache-read.ts [--mib 512] [--rounds 3]
import { mkdtemp, rm, open } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { NbdServer } from '../node/gvs/nbd/server.ts'
import { CachedVolume } from '../node/gvs/cached-volume.ts'
import { LocalCaches } from '../node/gvs/local-cache.ts'
import { silentLogger } from '../node/log.ts'
import type { BlockDevice } from '../node/gvs/block-device.ts'
import { nbdcopyTimed, qemuNbd } from './nbd-baseline.ts'

const MiB = 1024 * 1024
const { values } = parseArgs({ options: { mib: { type: 'string', default: '512' }, rounds: { type: 'string', default: '3' } } })
const SIZE = Number(values.mib) * MiB
const ROUNDS = Number(values.rounds)

/** CPU seconds a process has used (utime + stime, 100 ticks a second) */
const cpuOf = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

const dir = await mkdtemp(join(tmpdir(), 'vgrid-cache-read-'))
const stops: Array<() => Promise<void>> = []
try {
  // the device under the cache: memory, so only the cache and the NBD server are measured
  const mem = Buffer.alloc(SIZE)
  const dev: BlockDevice = {
    size: SIZE,
    readOnly: false,
    read: async (o, l) => mem.subarray(o, o + l),
    write: async (o, d) => { mem.set(d, o) },
    flush: async () => {},
    trim: async () => {},
    writeZeroes: async () => {}
  }
  const caches = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: 8 * 2 ** 30 })
  caches.start()
  stops.push(async () => { caches.close() })
  const cache = caches.of('v', 1)
  if (cache == null) throw new Error(`the cache is off: ${caches.failed ?? 'no budget'}`)
  const sock = join(dir, 'vgrid.sock')
  const server = new NbdServer({ log: silentLogger, exports: { get: n => n === 'v' ? new CachedVolume({}, dev, cache) : undefined, list: () => ['v'] } }, { socketPath: sock })
  await server.start()
  stops.push(async () => { await server.stop() })
  const src = join(dir, 'src.raw')
  const fh = await open(src, 'w')
  for (let off = 0; off < SIZE; off += 16 * MiB) await fh.write(randomBytes(16 * MiB), 0, Math.min(16 * MiB, SIZE - off), off)
  await fh.close()
  const base = await qemuNbd(dir, SIZE)
  stops.push(base.stop)
  const uri = `nbd+unix:///v?socket=${sock}`
  const quri = base.uri
  // both written once: every later read of vgrid's export is a cache hit
  await nbdcopyTimed(['--flush', src, uri])
  await nbdcopyTimed(['--flush', src, quri])
  const mbs = (ms: number): string => (SIZE / MiB / (ms / 1000)).toFixed(0)
  for (let r = 0; r < ROUNDS; r++) {
    const q0 = cpuOf(base.pid)
    const b = await nbdcopyTimed([quri, 'null:'])
    const qc = cpuOf(base.pid) - q0
    const u0 = process.cpuUsage()
    const v = await nbdcopyTimed([uri, 'null:'])
    const u = process.cpuUsage(u0)
    console.log(`round ${r + 1}: qemu-nbd ${mbs(b.ms)} MB/s (server ${qc.toFixed(2)} CPU s, nbdcopy ${b.cpu.toFixed(2)})  vgrid ${mbs(v.ms)} MB/s (server ${((u.user + u.system) / 1e6).toFixed(2)} CPU s, nbdcopy ${v.cpu.toFixed(2)})  ratio ${(b.ms / v.ms).toFixed(2)}`)
  }
} finally {
  for (const s of stops.reverse()) await s().catch(() => {})
  await rm(dir, { recursive: true, force: true })
}
