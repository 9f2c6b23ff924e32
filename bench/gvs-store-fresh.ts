// The object store alone, new objects against rewritten ones: 128 MiB in 256 KiB
// writes, 64 in flight, into a volume's new objects, then the same writes again over
// them, then reads; with this process's CPU seconds (user and system: the kernel's
// share is what a write of new blocks adds).
//   node_modules/node/bin/node bench/gvs-store-fresh.ts
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ObjectStore } from '../node/gvs/object-store.ts'
import { readBuffers } from '../node/gvs/buffer-pool.ts'
import { silentLogger } from '../node/log.ts'

const MiB = 1024 * 1024
const SIZE = 128 * MiB
const CHUNK = 256 * 1024
const OBJECT = 4 * MiB
const QD = Number(process.env.QD ?? 64)

const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
const store = new ObjectStore({ log: silentLogger }, { dir })
await store.start()
const data = randomBytes(SIZE)
let seq = 0

/** runs f over the volume, QD at once; MB/s and CPU seconds */
async function pass (f: (off: number) => Promise<unknown>): Promise<string> {
  let next = 0
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: QD }, async () => { while (next < SIZE) { const off = next; next += CHUNK; await f(off) } }))
  const ms = performance.now() - t0
  const c = process.cpuUsage(c0)
  return `${(SIZE / MiB / (ms / 1000)).toFixed(0)} MB/s, CPU user ${(c.user / 1e6).toFixed(2)} s system ${(c.system / 1e6).toFixed(2)} s`
}

const write = async (off: number): Promise<void> => {
  await store.write('v', Math.floor(off / OBJECT), off % OBJECT, data.subarray(off, off + CHUNK), { epoch: 1, version: { epoch: 1, seq: ++seq } })
}
try {
  console.log(`new objects:       ${await pass(write)}`)
  await store.flush()
  console.log(`rewritten objects: ${await pass(write)}`)
  await store.flush()
  // each buffer back to the pool once read, as the NBD session does
  console.log(`read:              ${await pass(async off => { readBuffers.give(await store.read('v', Math.floor(off / OBJECT), off % OBJECT, CHUNK)) })}`)
} finally {
  await store.stop()
  await rm(dir, { recursive: true, force: true })
}
