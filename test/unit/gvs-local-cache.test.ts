// A node's cache of the volumes its writers use (node/gvs/local-cache.ts, cached-volume.ts)
// over a device in memory whose requests the test ends in any order: a cached block is
// served only while it holds what the device holds, whatever the order writes, reads
// and fills end in; a damaged block is read from the device, never served; the budget
// bounds what all caches hold.
import test from 'ava'
import { mkdtempSync, mkdirSync, openSync, writeSync, closeSync, rmSync, existsSync, readdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BlockDevice } from '../../node/gvs/block-device.ts'
import { CachedVolume } from '../../node/gvs/cached-volume.ts'
import { LocalCaches, VolumeCache } from '../../node/gvs/local-cache.ts'
import { CacheBudget } from '../../node/gvs/cache-budget.ts'

const KiB = 1024
const SIZE = 8 * 1024 * KiB

/** a disk in memory; with `hold`, each request waits until the test releases it */
class MemoryDisk implements BlockDevice {
  readonly size = SIZE
  readonly readOnly = false
  readonly bytes = new Uint8Array(SIZE)
  reads = 0
  hold = false
  failWrites = false
  readonly held: Array<() => void> = []
  private async gate (): Promise<void> { if (this.hold) await new Promise<void>(resolve => this.held.push(resolve)) }
  async read (offset: number, length: number): Promise<Uint8Array> {
    this.reads++
    // the data is taken when the request is served on the "replica", before the answer travels back
    const data = this.bytes.slice(offset, offset + length)
    await this.gate()
    return data
  }

  async write (offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice()
    await this.gate()
    if (this.failWrites) throw new Error('EIO: a replica failed the write')
    this.bytes.set(copy, offset)
  }

  async flush (): Promise<void> {}
  async trim (offset: number, length: number): Promise<void> { await this.writeZeroes(offset, length) }
  async writeZeroes (offset: number, length: number): Promise<void> { await this.gate(); this.bytes.fill(0, offset, offset + length) }
}

function setup (t: import('ava').ExecutionContext, budgetBytes = 64 * 1024 * KiB): { disk: MemoryDisk, dev: CachedVolume, caches: LocalCaches, gen: { n: number } } {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cache-'))
  const caches = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes })
  t.teardown(() => { caches.close(); rmSync(dir, { recursive: true, force: true }) })
  const disk = new MemoryDisk()
  const gen = { n: 0 }
  const dev = new CachedVolume({ generation: () => gen.n }, disk, caches.of('vol', 1)!)
  return { disk, dev, caches, gen }
}

const fill = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v)
/** as plain bytes: the cache answers in pooled Buffers, the disk in Uint8Arrays */
const plain = async (p: Promise<Uint8Array>): Promise<Uint8Array> => Uint8Array.from(await p)
const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

test('what was written is read back from the cache, not the replicas; partial blocks at a write\'s ends are not cached', async t => {
  const { disk, dev, caches } = setup(t)
  await dev.write(0, fill(64 * KiB, 1), false)
  t.deepEqual(await plain(dev.read(4 * KiB, 8 * KiB)), fill(8 * KiB, 1))
  t.deepEqual(await plain(dev.read(1000, 3000)), fill(3000, 1), 'an unaligned read of cached blocks')
  t.is(disk.reads, 0)
  t.is(caches.stats().hits, 2)
  await dev.write(100 * KiB + 512, fill(8 * KiB, 2), false)
  t.deepEqual(await plain(dev.read(100 * KiB, 4 * KiB)), disk.bytes.slice(100 * KiB, 104 * KiB), 'a block written in part reads from the replicas')
  t.is(disk.reads, 1)
  t.deepEqual(await plain(dev.read(104 * KiB, 4 * KiB)), fill(4 * KiB, 2), 'a whole block of it was cached')
  t.is(disk.reads, 1)
  t.is(caches.sizes().bytes, (16 + 1 + 1) * 4 * KiB, 'the 16 blocks of the first write, the one whole block of the second, the block the read brought')
})

test('a read of blocks not cached goes to the replicas and caches them', async t => {
  const { disk, dev } = setup(t)
  disk.bytes.fill(9, 0, 64 * KiB)
  t.deepEqual(await plain(dev.read(0, 64 * KiB)), fill(64 * KiB, 9))
  t.deepEqual(await plain(dev.read(0, 64 * KiB)), fill(64 * KiB, 9))
  t.is(disk.reads, 1)
})

test('a read answered by the replicas before a write landed does not cache its old data over the write', async t => {
  const { disk, dev } = setup(t)
  disk.hold = true
  const read = dev.read(0, 8 * KiB) // takes the old bytes (zeros); its answer is held
  await tick()
  const write = dev.write(0, fill(8 * KiB, 5), false)
  await tick()
  disk.held[1]!() // the write lands and is cached
  await write
  disk.held[0]!() // then the read's answer arrives
  disk.held.length = 0
  t.deepEqual(await plain(read), fill(8 * KiB, 0), 'the read overlapped the write: either answer is right, it got the old one')
  disk.hold = false
  t.deepEqual(await plain(dev.read(0, 8 * KiB)), fill(8 * KiB, 5), 'what the write put there, not the old read\'s data')
})

test('a read that began while a write was in flight does not cache either', async t => {
  const { disk, dev } = setup(t)
  disk.hold = true
  const write = dev.write(0, fill(8 * KiB, 6), false)
  await tick()
  const read = dev.read(0, 8 * KiB) // takes the old bytes: the write has not landed
  await tick()
  disk.held[0]!() // the write lands and is cached
  await write
  disk.held[1]!() // then the read's answer arrives
  disk.held.length = 0
  t.deepEqual(await plain(read), fill(8 * KiB, 0))
  disk.hold = false
  t.deepEqual(await plain(dev.read(0, 8 * KiB)), fill(8 * KiB, 6))
})

test('overlapping writes land in the order issued, in the cache as on the replicas, whatever order the replicas answer in', async t => {
  const { disk, dev } = setup(t)
  disk.hold = true
  const first = dev.write(0, fill(16 * KiB, 1), false)
  const second = dev.write(8 * KiB, fill(16 * KiB, 2), false)
  const third = dev.write(64 * KiB, fill(4 * KiB, 3), false) // overlaps neither: runs beside them
  for (let i = 0; i < 10 && disk.held.length < 2; i++) await tick()
  t.is(disk.held.length, 2, 'the first and the third are at the replicas; the second waits for the first')
  disk.held.splice(1, 1)[0]!() // the third ends first
  await third
  disk.held.splice(0, 1)[0]!()
  await first
  for (let i = 0; i < 10 && disk.held.length < 1; i++) await tick()
  disk.held.splice(0)[0]!()
  await second
  disk.hold = false
  const want = disk.bytes.slice(0, 24 * KiB)
  t.deepEqual(want.slice(8 * KiB), fill(16 * KiB, 2))
  const reads = disk.reads
  t.deepEqual(await plain(dev.read(0, 24 * KiB)), want)
  t.is(disk.reads, reads, 'from the cache')
})

test('a failed write leaves its blocks out of the cache; trim and write-zeroes too', async t => {
  const { disk, dev } = setup(t)
  await dev.write(0, fill(16 * KiB, 1), false)
  disk.failWrites = true
  await t.throwsAsync(dev.write(0, fill(8 * KiB, 2), false), { message: /EIO/ })
  disk.failWrites = false
  disk.bytes.fill(7, 0, 4 * KiB) // what a replica may hold after a write that failed elsewhere
  t.deepEqual(await plain(dev.read(0, 4 * KiB)), fill(4 * KiB, 7), 'read from the replicas')
  await dev.writeZeroes(8 * KiB, 4 * KiB, false)
  await dev.trim(12 * KiB, 4 * KiB, false)
  const reads = disk.reads
  t.deepEqual(await plain(dev.read(8 * KiB, 8 * KiB)), fill(8 * KiB, 0))
  t.is(disk.reads, reads + 1)
})

test('a damaged block of the cache file is read from the replicas, never served, and counted', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cache-'))
  const caches = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: 1024 * KiB })
  t.teardown(() => { caches.close(); rmSync(dir, { recursive: true, force: true }) })
  const disk = new MemoryDisk()
  const dev = new CachedVolume({}, disk, caches.of('vol', 1)!)
  await dev.write(0, fill(8 * KiB, 4), false)
  const files = readdirSync(join(dir, 'cache'))
  t.is(files.length, 1)
  const fd = openSync(join(dir, 'cache', files[0]!), 'r+')
  writeSync(fd, Buffer.from([0xff]), 0, 1, 4 * KiB + 17)
  closeSync(fd)
  t.deepEqual(await plain(dev.read(0, 8 * KiB)), fill(8 * KiB, 4))
  t.is(disk.reads, 1)
  t.is(caches.stats().damaged, 1)
  t.deepEqual(await plain(dev.read(0, 4 * KiB)), fill(4 * KiB, 4), 'the sound block is still served from the cache')
  t.is(disk.reads, 1)
})

test('the budget bounds what all caches hold; a dropped cache gives its bytes back', async t => {
  const { dev, caches } = setup(t, 12 * KiB)
  const other = new CachedVolume({}, new MemoryDisk(), caches.of('other', 1)!)
  await dev.write(0, fill(8 * KiB, 1), false)
  await other.write(0, fill(8 * KiB, 2), false)
  t.is(caches.sizes().bytes, 12 * KiB)
  await dev.write(0, fill(8 * KiB, 3), false) // rewrites of cached blocks stay cached
  t.is(caches.sizes().bytes, 12 * KiB)
  caches.fence('vol', 2)
  await caches.removed()
  t.is(caches.sizes().bytes, 4 * KiB)
  await other.write(4 * KiB, fill(4 * KiB, 2), false)
  t.is(caches.sizes().bytes, 8 * KiB)
})

test('a change of the live nodes empties the cache; a newer epoch closes the older ones (LocalCaches)', async t => {
  const { disk, dev, caches, gen } = setup(t)
  await dev.write(0, fill(8 * KiB, 1), false)
  gen.n++
  disk.bytes.fill(2, 0, 8 * KiB) // another writer, let in by a partition
  t.deepEqual(await plain(dev.read(0, 8 * KiB)), fill(8 * KiB, 2))
  const newer = caches.of('vol', 2)!
  t.not(newer, caches.of('vol', 1))
  caches.fence('vol', 2)
  t.is(caches.sizes().caches, 1, 'the epoch-1 cache is gone, the epoch-2 one stays')
  t.is(caches.of('vol', 2), newer)
  t.is(caches.of('vol', 1), null, 'and none is made below the fence again (a session of the old epoch reads through)')
  caches.retain(new Set())
  t.is(caches.sizes().caches, 0)
})

test('caching off: no cache is made; close removes the directory', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cache-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const off = new LocalCaches({ dir: join(dir, 'off'), budgetBytes: 0 })
  t.is(off.of('vol', 1), null)
  const on = new LocalCaches({ dir: join(dir, 'on'), budgetBytes: 1024 * KiB })
  const dev = new CachedVolume({}, new MemoryDisk(), on.of('vol', 1)!)
  await dev.write(0, fill(4 * KiB, 1), false)
  t.true(existsSync(join(dir, 'on')))
  on.close()
  t.false(existsSync(join(dir, 'on')))
  await on.removed()
  t.deepEqual(readdirSync(dir), ['off'].filter(n => existsSync(join(dir, n))), 'moved aside and removed')
  t.is(on.of('vol', 1), null, 'no cache after close')
})

test('a start moves what an earlier run left aside and removes it; a crashed run\'s leftovers too', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cache-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const first = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: 1024 * KiB })
  await new CachedVolume({}, new MemoryDisk(), first.of('vol', 1)!).write(0, fill(64 * KiB, 1), false)
  // the run crashes: nothing is closed; a later one starts over the same directory
  mkdirSync(join(dir, 'cache.old-1'))
  const second = new LocalCaches({ dir: join(dir, 'cache'), budgetBytes: 1024 * KiB })
  second.start()
  t.deepEqual(readdirSync(join(dir, 'cache')), [], 'empty')
  await second.removed()
  t.deepEqual(readdirSync(dir), ['cache'])
  second.close()
  first.close()
})

test('a device rebuilt over the same cache (a snapshot, a resize) after a change of the live nodes it never saw does not serve the old fill', async t => {
  const { disk, caches, gen } = setup(t)
  const d1 = new CachedVolume({ generation: () => gen.n }, disk, caches.of('vol', 1)!)
  await d1.write(0, fill(8 * KiB, 1), false)
  gen.n++ // a partition: another writer may have come in
  disk.bytes.fill(2, 0, 8 * KiB)
  const d2 = new CachedVolume({ generation: () => gen.n }, disk, caches.of('vol', 1)!)
  t.deepEqual(await plain(d2.read(0, 8 * KiB)), fill(8 * KiB, 2))
})

test('blocks dropped by trims and writes keep their place in the budget until the file is emptied: the file never outgrows it', async t => {
  const budget = 1024 * KiB
  const { dev, caches } = setup(t, budget)
  const dir = (caches as unknown as { dir: string }).dir
  const allocated = (): number => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).blocks * 512, 0)
  await dev.write(0, fill(budget, 1), false)
  await dev.trim(0, budget, false)
  t.is(caches.sizes().bytes, budget, 'trimmed blocks keep their place')
  for (let i = 1; i < 6; i++) {
    // the spent budget empties the cache (CacheBudget.full); its file goes off the event loop
    await dev.write(i * budget, fill(budget, 1), false)
    await dev.trim(i * budget, budget, false)
    t.true(allocated() <= budget + 64 * KiB, 'the files allocate about the budget at most')
    t.true(caches.sizes().bytes <= budget)
    await caches.removed()
  }
  const files = readdirSync(dir)
  caches.dropAll()
  await caches.removed()
  t.is(caches.sizes().bytes, 0, 'emptied, the file gives its space back')
  t.false(readdirSync(dir).some(f => files.includes(f)), 'removed')
})

test('a node that does not hold the volume reads through to the replicas, cached blocks or not', async t => {
  const { disk, caches } = setup(t)
  let holds = true
  const dev = new CachedVolume({ holds: () => holds }, disk, caches.of('other', 1)!)
  await dev.write(0, fill(8 * KiB, 1), false)
  await dev.read(0, 8 * KiB)
  t.is(disk.reads, 0)
  holds = false
  disk.bytes.fill(3, 0, 8 * KiB) // a writer that did not ask this node (its claim was lost)
  t.deepEqual(await plain(dev.read(0, 8 * KiB)), fill(8 * KiB, 3))
  t.is(disk.reads, 1)
})

test('the disk short of room: every cache is emptied and nothing is cached until there is room again', async t => {
  const { dev, caches } = setup(t, 64 * KiB)
  await dev.write(0, fill(8 * KiB, 1), false)
  t.is(caches.sizes().bytes, 8 * KiB)
  caches.room(100 * KiB) // less than 1 GiB free
  await caches.removed()
  t.is(caches.sizes().bytes, 0)
  await dev.write(0, fill(8 * KiB, 1), false)
  t.is(caches.sizes().bytes, 0, 'paused')
  caches.room(10 * 1024 * 1024 * KiB)
  await dev.write(0, fill(8 * KiB, 1), false)
  t.is(caches.sizes().bytes, 8 * KiB)
})

test('the index is bounded by the budget: at most one indexed object per MiB of it (at least 64)', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-cache-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const budget = new CacheBudget(64 * 1024 * KiB)
  t.is(budget.maxObjects, 64)
  let n = 0
  const cache = new VolumeCache(budget, { file: () => join(dir, `c${n++}`), volume: 'v', epoch: 1, objectSize: 16 * KiB })
  // 4 KiB in each of 100 objects, as random reads over a large volume bring
  for (let i = 0; i < 100; i++) { cache.beginWrite(i * 16 * KiB, 4 * KiB); cache.endWrite(i * 16 * KiB, 4 * KiB, fill(4 * KiB, 1)) }
  t.is(budget.objects, 64)
  t.not(cache.read(0, 4 * KiB), null)
  t.is(cache.read(99 * 16 * KiB, 4 * KiB), null, 'past the bound: not cached')
  cache.close()
  t.is(budget.objects, 0)
})

test('a spent budget empties the fullest cache, so what is written now is cached again; the smaller cache keeps its blocks', async t => {
  const { dev, caches } = setup(t, 16 * KiB)
  const other = new CachedVolume({}, new MemoryDisk(), caches.of('other', 1)!)
  await other.write(0, fill(4 * KiB, 2), false)
  await dev.write(0, fill(12 * KiB, 1), false)
  t.is(caches.sizes().bytes, 16 * KiB, 'the budget spent')
  await dev.write(64 * KiB, fill(4 * KiB, 3), false) // a block never cached: no room
  await caches.removed()
  t.is(caches.sizes().bytes, 4 * KiB, 'the fullest cache (12 KiB) was emptied, the other kept')
  const hits = caches.stats().hits
  t.deepEqual(await plain(other.read(0, 4 * KiB)), fill(4 * KiB, 2))
  t.is(caches.stats().hits, hits + 1, 'the smaller cache still serves')
  await dev.write(64 * KiB, fill(4 * KiB, 4), false)
  t.is(caches.sizes().bytes, 8 * KiB, 'and the emptied one caches again')
})
