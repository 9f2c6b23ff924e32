import test from 'ava'
import { mkdtemp, rm, open, readdir, mkdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ObjectStore, type DamageReport } from '../../node/gvs/object-store.ts'
import { OpenObjects } from '../../node/gvs/open-objects.ts'
import { LocalVolume, pieces } from '../../node/gvs/block-device.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { createLogger, silentLogger } from '../../node/log.ts'
import { smallDisk } from '../helpers/small-disk.ts'

const MiB = 1024 * 1024
/** byte equality without ava's deep diff, which is slow on megabytes */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
async function until (check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300 && !await check(); i++) await new Promise(resolve => setTimeout(resolve, 10))
}

// on a small disk the tests reach a real ENOSPC: the reserve kept for epochs (disk-room.ts) is told of no shortage
const noShortage = async (): Promise<{ bavail: number, bsize: number, blocks: number }> => ({ bavail: 2 ** 28, bsize: 4096, blocks: 2 ** 28 })

async function store (t: { teardown: (fn: () => Promise<void>) => void }, dir?: string): Promise<ObjectStore> {
  const d = dir ?? await mkdtemp(join(tmpdir(), 'gvs-store-'))
  if (dir == null) t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger, statfs: dir == null ? undefined : noShortage }, { dir: d })
  await s.start()
  // registered after the directory's removal, so it runs before it (teardowns run last first)
  t.teardown(async () => { await s.stop() })
  return s
}

test('write then read back; an absent object and unwritten bytes read as zeros', async t => {
  const s = await store(t)
  t.deepEqual(await s.read('v1', 3, 100, 10), new Uint8Array(10))
  const data = randomBytes(100_000)
  await s.write('v1', 0, 70_000, data, { epoch: 1 })
  t.true(same(await s.read('v1', 0, 70_000, 100_000), data))
  t.deepEqual(await s.read('v1', 0, 0, 70_000), new Uint8Array(70_000))
  t.deepEqual(await s.read('v1', 0, 4 * MiB - 10, 10), new Uint8Array(10))
  t.deepEqual(await s.list('v1'), [0])
  await s.flush()
})

test('bad names and ranges are refused with a clear error', async t => {
  const s = await store(t)
  await t.throwsAsync(s.read('../etc', 0, 0, 1), { message: /volume name "..\/etc" is not valid/ })
  await t.throwsAsync(s.write('v', 0, 4 * MiB - 1, new Uint8Array(2), { epoch: 1 }), { message: /outside an object/ })
  await t.throwsAsync(s.read('v', -1, 0, 1), { message: /not a non-negative integer/ })
})

test('a writer with an older epoch is rejected, also after a restart', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = await store(t, dir)
  await s.write('v', 0, 0, new Uint8Array([1]), { epoch: 5 })
  await s.write('v', 0, 0, new Uint8Array([2]), { epoch: 7 })
  const e = await t.throwsAsync(s.write('v', 0, 0, new Uint8Array([3]), { epoch: 6 }))
  t.true(isGvsError(e, 'stale-epoch'), String(e))
  t.regex(e?.message ?? '', /epoch 6 is older than 7/)
  const again = await store(t, dir)
  t.is(await again.epoch('v'), 7)
  await t.throwsAsync(again.zero('v', 0, 0, 1, { epoch: 1 }), { message: /older than 7/ })
  t.deepEqual(await again.read('v', 0, 0, 1), new Uint8Array([2]))
})

test('a damaged object is detected and reported, never served; scrub finds the block', async t => {
  const s = await store(t)
  const data = randomBytes(200_000)
  await s.write('v', 2, 0, data, { epoch: 1, fua: true })
  const file = join(s.dir, 'objects', 'v', '00000002')
  const fh = await open(file, 'r+')
  await fh.write(new Uint8Array([data[70_000]! ^ 0xff]), 0, 1, 70_000) // check block 17 (4 KiB blocks)
  await fh.close()
  const reports: DamageReport[] = []
  s.on('damaged', r => reports.push(r))
  const e = await t.throwsAsync(s.read('v', 2, 69_632, 10))
  t.true(isGvsError(e, 'damaged'))
  t.is(reports.length, 1)
  t.deepEqual(reports[0]?.blocks, [17])
  // the sound blocks still read
  t.true(same(await s.read('v', 2, 0, 1000), data.subarray(0, 1000)))
  t.deepEqual(await s.verify('v', 2), [17])
  // a partial write into the damaged block must not launder it
  await t.throwsAsync(s.write('v', 2, 70_001, new Uint8Array(4), { epoch: 1 }), { message: /damaged/ })
  // a whole-block rewrite (as repair does) heals it
  await s.write('v', 2, 69_632, data.subarray(69_632, 73_728), { epoch: 1 })
  t.deepEqual(await s.verify('v', 2), [])
})

test('zeroing a whole object frees its data (thin) and keeps its version; a part reads as zeros', async t => {
  const s = await store(t)
  await s.write('v', 0, 0, randomBytes(4 * MiB), { epoch: 1, version: { epoch: 1, seq: 1 } })
  await s.zero('v', 0, 1000, 5000, { epoch: 1, version: { epoch: 1, seq: 2 } })
  t.deepEqual(await s.read('v', 0, 1000, 5000), new Uint8Array(5000))
  await s.zero('v', 0, 0, 4 * MiB, { epoch: 1, fua: true, version: { epoch: 1, seq: 3 } })
  // a copy that missed the zeroing must not come back as the newer one: the version stays
  t.deepEqual(await s.stat('v', 0), { present: true, version: { epoch: 1, seq: 3 } })
  const file = await open(join(s.dir, 'objects', 'v', '00000000'), 'r')
  t.is((await file.stat()).blocks, 0, 'no data blocks left')
  await file.close()
  t.deepEqual(await s.read('v', 0, 0, 10), new Uint8Array(10))
  // zeroing an object that is not here leaves nothing behind
  await s.zero('v', 1, 0, 4 * MiB, { epoch: 1, version: { epoch: 1, seq: 1 } })
  t.deepEqual(await s.list('v'), [0])
})

test('versions: a write raises the object version; a copy replaces only an older one (with replace, also an equal one); inventory lists them', async t => {
  const s = await store(t)
  t.deepEqual(await s.stat('v', 0), { present: false, version: { epoch: 0, seq: 0 } })
  const a = randomBytes(4 * MiB)
  await s.write('v', 0, 0, a, { epoch: 2, version: { epoch: 2, seq: 5 } })
  // requests may land out of order: the version is the highest applied
  await s.write('v', 0, 0, a.subarray(0, 4096), { epoch: 2, version: { epoch: 2, seq: 4 } })
  t.deepEqual((await s.stat('v', 0)).version, { epoch: 2, seq: 5 })
  const older = new Uint8Array(4 * MiB).fill(7)
  t.true(await s.put('v', 0, { data: older, version: { epoch: 2, seq: 3 } }, { epoch: 2 }), 'an older copy is refused')
  t.true(await s.put('v', 0, { data: older, version: { epoch: 2, seq: 5 } }, { epoch: 2 }), 'so is an equal one')
  t.true(same(await s.read('v', 0, 0, 4 * MiB), a))
  // a newer copy replaces it, written sparse: zero blocks take no space
  const newer = new Uint8Array(4 * MiB)
  newer.fill(9, 8192, 12288)
  t.false(await s.put('v', 0, { data: newer, version: { epoch: 3, seq: 1 } }, { epoch: 1 }))
  t.true(same(await s.read('v', 0, 0, 4 * MiB), newer))
  t.is(await s.epoch('v'), 2, 'a copy teaches a newer epoch, never refuses for an older one')
  const file = await open(join(s.dir, 'objects', 'v', '00000000'), 'r')
  t.true((await file.stat()).blocks * 512 <= 64 * 1024, 'sparse')
  await file.close()
  // scrub's replace rewrites an equal version (a damaged copy is as new as the sound
  // one), never a newer copy with an older one (a write that landed after scrub's read)
  t.true(await s.put('v', 0, { data: a, version: { epoch: 2, seq: 9 } }, { epoch: 2, replace: true }))
  t.true(same(await s.read('v', 0, 0, 4 * MiB), newer))
  t.false(await s.put('v', 0, { data: a, version: { epoch: 3, seq: 1 } }, { epoch: 2, replace: true }))
  t.true(same(await s.read('v', 0, 0, 4 * MiB), a))
  t.deepEqual((await s.stat('v', 0)).version, { epoch: 3, seq: 1 })
  await s.write('v', 2, 0, a.subarray(0, 4096), { epoch: 2 })
  t.deepEqual(await s.inventory('v'), [{ index: 0, version: { epoch: 3, seq: 1 } }, { index: 2, version: { epoch: 0, seq: 0 } }])
  // the version survives a restart (read back from the side file)
  await s.stop()
  const again = await store(t, s.dir)
  t.deepEqual(await again.inventory('v'), [{ index: 0, version: { epoch: 3, seq: 1 } }, { index: 2, version: { epoch: 0, seq: 0 } }])
  t.deepEqual((await again.stat('v', 0)).version, { epoch: 3, seq: 1 })
})

test('versions: a side file from before versions (checksums only) reads as the oldest version', async t => {
  const s = await store(t)
  await s.write('v', 0, 0, randomBytes(8192), { epoch: 1, version: { epoch: 1, seq: 1 } })
  await s.stop()
  const sums = join(s.dir, 'objects', 'v', '00000000.sum')
  const fh = await open(sums, 'r+')
  await fh.truncate(4 * MiB / 4096 * 4)
  await fh.close()
  const again = await store(t, s.dir)
  t.deepEqual(await again.stat('v', 0), { present: true, version: { epoch: 0, seq: 0 } })
  t.deepEqual(await again.inventory('v'), [{ index: 0, version: { epoch: 0, seq: 0 } }])
  await again.write('v', 0, 0, new Uint8Array(4096), { epoch: 1, version: { epoch: 1, seq: 2 } })
  t.deepEqual((await again.stat('v', 0)).version, { epoch: 1, seq: 2 })
})

test('LocalVolume splits ranges across objects', async t => {
  const s = await store(t)
  const vol = new LocalVolume({ store: s }, { volume: 'lv', size: 16 * MiB, epoch: 1 })
  const data = randomBytes(9 * MiB)
  await vol.write(3 * MiB, data, false)
  t.true(same(await vol.read(3 * MiB, 9 * MiB), data))
  t.deepEqual(await s.list('lv'), [0, 1, 2])
  await t.throwsAsync(vol.read(15 * MiB, 2 * MiB), { message: /outside the 16777216-byte volume/ })
  t.deepEqual(pieces(4 * MiB - 1, 2, 4 * MiB), [{ index: 0, offset: 4 * MiB - 1, length: 1, at: 0 }, { index: 1, offset: 0, length: 1, at: 1 }])
})

test('a full disk fails the write cleanly and loses nothing written before', async t => {
  const mnt = await smallDisk(t)
  if (mnt == null) return
  await mkdir(join(mnt, 'gvs'))
  const s = await store(t, join(mnt, 'gvs'))
  const first = randomBytes(MiB)
  await s.write('v', 0, 0, first, { epoch: 1, fua: true })
  const e = await t.throwsAsync(s.write('v', 1, 0, randomBytes(2 * MiB), { epoch: 1, fua: true }))
  t.true(isGvsError(e, 'no-space'), String(e))
  t.regex(e?.message ?? '', /disk full/)
  t.true(same(await s.read('v', 0, 0, MiB), first))
  // what did land of the failed write is consistent: no block reads as damaged
  t.deepEqual(await s.verify('v', 1), [])
  t.true((await readdir(join(mnt, 'gvs', 'objects', 'v'))).length >= 2)
})

test('large reads (in place, and over 1 MiB on worker threads): many at once read back right, a sparse tail reads as zeros, a damaged block fails only the reads over it', async t => {
  const s = await store(t)
  const data = randomBytes(3 * MiB)
  await s.write('big', 0, 0, data, { epoch: 1 })
  // 48 reads of 256 KiB and of 1.5 MiB at once, unaligned ones too, each over many check blocks
  for (const size of [256 * 1024, 1536 * 1024]) {
    const offsets = Array.from({ length: 48 }, (_, i) => (i * 61_440 + (i % 3) * 1000) % (3 * MiB - size))
    const got = await Promise.all(offsets.map(async off => await s.read('big', 0, off, size)))
    for (const [i, off] of offsets.entries()) t.true(same(got[i]!, data.subarray(off, off + size)), `read of ${size} at ${off}`)
  }
  const whole = await s.readObject('big', 0)
  t.true(same(whole!.data.subarray(0, 3 * MiB), data) && whole!.data.subarray(3 * MiB).every(x => x === 0), 'a whole object: the data, then zeros')
  // past the data file's end (never written): zeros, from a large read that starts in the data
  const tail = await s.read('big', 0, 3 * MiB - 100_000, 300_000)
  t.true(same(tail.subarray(0, 100_000), data.subarray(3 * MiB - 100_000)))
  t.true(tail.subarray(100_000).every(x => x === 0))
  // one byte of block 300 damaged
  const fh = await open(join(s.dir, 'objects', 'big', '00000000'), 'r+')
  await fh.write(new Uint8Array([data[300 * 4096 + 5]! ^ 1]), 0, 1, 300 * 4096 + 5)
  await fh.close()
  const reports: DamageReport[] = []
  s.on('damaged', r => reports.push(r))
  const e = await t.throwsAsync(s.read('big', 0, 280 * 4096, 256 * 1024))
  t.true(isGvsError(e, 'damaged'))
  await t.throwsAsync(s.read('big', 0, 4096, 2 * MiB), { message: /damaged/ })
  t.deepEqual(reports.map(r => r.blocks), [[300], [300]])
  await t.throwsAsync(s.readObject('big', 0), { message: /damaged/ })
  t.is(reports.length, 3)
  t.true(same(await s.read('big', 0, 0, 256 * 1024), data.subarray(0, 256 * 1024)), 'sound blocks still read')
  t.deepEqual(await s.verify('big', 0), [300])
})

test('a read made after a write to the same blocks, before the write returned, sees the write (an open object read without awaiting only while no write to it is pending)', async t => {
  const s = await store(t)
  const a = randomBytes(256 * 1024)
  const b = randomBytes(256 * 1024)
  await s.write('ord', 0, 0, a, { epoch: 1 })
  t.true(same(await s.read('ord', 0, 0, a.length), a), 'the object is open: the next read is the one without awaits')
  const w = s.write('ord', 0, 4096, b, { epoch: 1 })
  const r = s.read('ord', 0, 0, 8192)
  const w2 = s.write('ord', 0, 0, a.subarray(0, 4096), { epoch: 1, fua: true })
  const other = s.read('ord', 0, 512 * 1024, 4096)
  await w
  t.true(same(await r, Buffer.concat([a.subarray(0, 4096), b.subarray(0, 4096)])), 'the read waited for the write before it')
  await w2
  t.true(same(await other, new Uint8Array(4096)), 'unwritten blocks of the object read as zeros meanwhile')
  t.true(same(await s.read('ord', 0, 0, 8192), Buffer.concat([a.subarray(0, 4096), b.subarray(0, 4096)])))
})

test('an open object dropped while in use stays open until its last user releases it (a worker thread reads its raw descriptor)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-open-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = await store(t, dir)
  await s.write('v', 0, 0, randomBytes(8192), { epoch: 1 })
  await s.stop()
  const objects = new OpenObjects()
  const vdir = join(dir, 'objects', 'v')
  const p = { dir: vdir, data: join(vdir, '00000000'), sums: join(vdir, '00000000.sum') }
  t.deepEqual((await readdir(vdir)).sort(), ['00000000', '00000000.sum'])
  const o = (await objects.acquire(p, 4 * MiB / 4096 * 4))!
  const fd = o.data.fd
  await objects.drop(p.data)
  t.is(o.data.fd, fd, 'still open while in use')
  t.is((await o.data.read(new Uint8Array(16), 0, 16, 0)).bytesRead, 16)
  t.is(objects.peek(p.data), undefined, 'forgotten: the next user opens the file again')
  await objects.release(o)
  t.is(o.data.fd, -1, 'closed by the last release')
  t.is(o.sums.fd, -1)
})

test('a paged inventory reads the versions of its page only, and fills the page past an object removed meanwhile', async t => {
  const s = await store(t)
  for (const i of [1, 3, 5, 7, 9]) await s.write('p', i, 0, randomBytes(4096), { epoch: 1 })
  t.deepEqual((await s.inventory('p', { from: 2, limit: 2 })).map(o => o.index), [3, 5])
  t.deepEqual((await s.inventory('p', { from: 9, limit: 2 })).map(o => o.index), [9])
  // a side file that went between the listing and its read is skipped, and the page still fills
  await s.stop()
  const again = await store(t, s.dir)
  await rm(join(s.dir, 'objects', 'p', '00000003.sum'))
  t.deepEqual((await again.inventory('p', { from: 2, limit: 2 })).map(o => o.index), [5, 7])
})

test('an object whose creation a power loss cut short: fresh again when no data landed; else reported damaged, and a whole copy replaces it', async t => {
  const s = await store(t)
  const obj = (i: number, ext = ''): string => join(s.dir, 'objects', 'v', `0000000${i}${ext}`)
  for (const i of [0, 1, 2]) await s.write('v', i, 0, randomBytes(4096), { epoch: 1 })
  await s.stop()
  // 0: both files made, nothing reached the disk; 1: data landed, the side file did not; 2: no side file at all
  await (await open(obj(0), 'r+')).truncate(0)
  await (await open(obj(0, '.sum'), 'r+')).truncate(0)
  await (await open(obj(1, '.sum'), 'r+')).truncate(0)
  await rm(obj(2, '.sum'))
  const again = await store(t, s.dir)
  const reports: DamageReport[] = []
  again.on('damaged', r => reports.push(r))
  const a = randomBytes(4096)
  await again.write('v', 0, 4096, a, { epoch: 1 })
  t.true(same(await again.read('v', 0, 4096, 4096), a), 'a fresh object takes writes')
  t.true(same(await again.read('v', 0, 0, 4096), new Uint8Array(4096)))
  for (const i of [1, 2]) {
    t.true(isGvsError(await t.throwsAsync(again.read('v', i, 0, 4096)), 'damaged'), `object ${i}: not served`)
    t.true(isGvsError(await t.throwsAsync(again.write('v', i, 0, a, { epoch: 1 })), 'damaged'))
  }
  t.deepEqual([...new Set(reports.map(r => r.index))].sort(), [1, 2], 'reported, so a heal copies them in')
  const whole = randomBytes(4 * MiB)
  for (const i of [1, 2]) {
    t.false(await again.put('v', i, { data: whole, version: { epoch: 1, seq: 5 } }, { epoch: 1 }), `object ${i}: the copy replaces it`)
    t.true(same(await again.read('v', i, 0, 4 * MiB), whole))
    await again.write('v', i, 0, a, { epoch: 1 })
  }
})

test('a power loss between an object\'s data and its checksums: the objects the write-intent log names are made true to their data at start; others still read as damaged', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const first = new ObjectStore({ log: silentLogger }, { dir })
  await first.start()
  const a = randomBytes(8192)
  await first.write('v', 0, 0, a, { epoch: 1 })
  await first.write('v', 1, 0, a, { epoch: 1 })
  await first.flush()
  const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
  const log = async (): Promise<string> => (await readFile(join(dir, 'intents'), 'utf8')).replace(/\n+/g, '\n').trim()
  t.is(await log(), `boot ${boot}`, 'a flush leaves nothing named: the server\'s boot id heads the log')
  const b = randomBytes(4096)
  await first.write('v', 0, 4096, b, { epoch: 1 })
  t.is(await log(), `boot ${boot}\nv/00000000 0.0`, 'named before the write, durably, with its version before it')
  // the power goes: the new data reached the disk, its checksum did not (object 0, named);
  // object 1's checksum goes bad too, though nothing wrote it since its sync: damage
  const spoil = async (i: number): Promise<void> => {
    const f = await open(join(dir, 'objects', 'v', `0000000${i}.sum`), 'r+')
    await f.write(new Uint8Array([0xde, 0xad, 0xbe, 0xef]), 0, 4, 4)
    await f.close()
  }
  await spoil(0)
  await spoil(1)
  const reports: DamageReport[] = []
  const again = new ObjectStore({ log: silentLogger }, { dir })
  again.on('damaged', r => reports.push(r))
  await again.start()
  t.teardown(async () => { await again.stop() })
  t.deepEqual(reports.map(r => [r.index, r.blocks]), [[0, [1]]], 'reported: a copy elsewhere with its version is the sound one')
  t.true(same(await again.read('v', 0, 4096, 4096), b), 'the data the disk kept, served')
  t.true(same(await again.read('v', 0, 0, 4096), a.subarray(0, 4096)))
  t.true(isGvsError(await t.throwsAsync(again.read('v', 1, 4096, 4096)), 'damaged'), 'an object not written since its sync is not made true: its damage is reported')
  t.is(await log(), `boot ${boot}`, 'a fresh log once recovered')
  await first.stop().catch(() => {})
})

test('a server restart (a power loss) between writes and their sync: a named object\'s version is lowered to what its last sync made sure of, so a copy elsewhere with the writes it lacks is the newer; an agent restart alone keeps it', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const first = new ObjectStore({ log: silentLogger, bootId: async () => 'boot-1' }, { dir, writebackMs: 0 })
  await first.start()
  const a = randomBytes(4096)
  const b = randomBytes(4096)
  for (const i of [0, 1]) await first.write('v', i, 0, a, { epoch: 1, version: { epoch: 1, seq: 1 } })
  await first.flush()
  // the log is emptied after a flush (at most once a second): object 0's next write names it again, at 1.1
  await until(async () => (await readFile(join(dir, 'intents'), 'utf8')).trim() === 'boot boot-1')
  await first.write('v', 0, 0, b, { epoch: 1, version: { epoch: 1, seq: 2 } })
  t.regex(await readFile(join(dir, 'intents'), 'utf8'), /\nv\/00000000 1\.1\n/)
  // the power goes: the side file's new version reached the disk, the data did not
  const f = await open(join(dir, 'objects', 'v', '00000000'), 'r+')
  await f.write(a, 0, 4096, 0)
  await f.close()
  const lines: string[] = []
  const again = new ObjectStore({ log: createLogger({ write: l => lines.push(l) }), bootId: async () => 'boot-2' }, { dir })
  await again.start()
  t.deepEqual(await again.stat('v', 0), { present: true, version: { epoch: 1, seq: 1 } }, 'lowered: a copy at 1.2 elsewhere replaces it')
  t.deepEqual(await again.stat('v', 1), { present: true, version: { epoch: 1, seq: 1 } }, 'an object not named keeps its version')
  t.true(lines.some(l => l.includes('version lowered from 1.2 to 1.1')), lines.join('\n'))
  t.false(await again.put('v', 0, { data: Buffer.concat([b, new Uint8Array(4 * MiB - 4096)]), version: { epoch: 1, seq: 2 } }, { epoch: 1 }), 'the copy with the write it lacked replaces it')
  t.true(same(await again.read('v', 0, 0, 4096), b))
  // the same server, the agent alone restarted (the kernel kept its writes): versions stay
  await again.write('v', 1, 0, b, { epoch: 1, version: { epoch: 1, seq: 2 } })
  // as if killed: not stopped (a stop would flush and empty the log), so the log still names object 1
  const third = new ObjectStore({ log: silentLogger, bootId: async () => 'boot-2' }, { dir })
  await third.start()
  t.teardown(async () => { await third.stop() })
  t.deepEqual(await third.stat('v', 1), { present: true, version: { epoch: 1, seq: 2 } })
  t.true(same(await third.read('v', 1, 0, 4096), b))
  await again.stop().catch(() => {})
  await first.stop().catch(() => {})
})

test('an object whose recovery failed at start stays named in the fresh write-intent log, and the next start tries it again, lowering its version even after an agent restart alone; other objects keep theirs (rv38, rv39)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const log = join(dir, 'intents')
  const first = new ObjectStore({ log: silentLogger, bootId: async () => 'boot-1' }, { dir, writebackMs: 0 })
  await first.start()
  const a = randomBytes(4096)
  await first.write('v', 0, 0, a, { epoch: 1, version: { epoch: 1, seq: 1 } })
  await first.flush()
  await until(async () => (await readFile(log, 'utf8')).trim() === 'boot boot-1')
  await first.write('v', 0, 0, randomBytes(4096), { epoch: 1, version: { epoch: 1, seq: 2 } })
  // the server goes down with the write unsynced; when it is back, the object's side file cannot be opened
  const sums = join(dir, 'objects', 'v', '00000000.sum')
  const kept = await readFile(sums)
  await rm(sums)
  await mkdir(sums)
  const lines: string[] = []
  const second = new ObjectStore({ log: createLogger({ write: l => lines.push(l) }), bootId: async () => 'boot-2' }, { dir, writebackMs: 0 })
  await second.start()
  t.true(lines.some(l => l.includes('could not have its version lowered')), lines.join('\n'))
  t.true(lines.some(l => l.includes('1 object the write intents log named could not be recovered: still named in it')), lines.join('\n'))
  t.is(await readFile(log, 'utf8'), 'boot boot-2\nlower v/00000000 1.1\n', 'still named, to be lowered whatever the boot')
  // another object written, flushed, and the store stopped: the log keeps only the carried name
  await second.write('w', 5, 0, a, { epoch: 1, version: { epoch: 1, seq: 20 } })
  await second.flush()
  await second.stop()
  t.is(await readFile(log, 'utf8'), 'boot boot-2\nlower v/00000000 1.1\n')
  // mended; the agent alone restarts (the same boot)
  await rm(sums, { recursive: true })
  const { writeFile } = await import('node:fs/promises')
  await writeFile(sums, kept)
  const third = new ObjectStore({ log: silentLogger, bootId: async () => 'boot-2' }, { dir })
  await third.start()
  t.teardown(async () => { await third.stop() })
  t.deepEqual(await third.stat('v', 0), { present: true, version: { epoch: 1, seq: 1 } }, 'lowered now')
  t.deepEqual(await third.stat('w', 5), { present: true, version: { epoch: 1, seq: 20 } }, 'an object written since keeps its version (rv39: the whole log was taken for a server restart)')
  t.is(await readFile(log, 'utf8'), 'boot boot-2\n', 'recovered: no longer named')
  await first.stop().catch(() => {})
})

test('a write-intent log entry naming an object that cannot exist (a volume name no run could write) is skipped: the store starts', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(dir, 'intents'), `${'a'.repeat(300)}/00000000\nv/00000001\n`)
  const lines: string[] = []
  const s = new ObjectStore({ log: createLogger({ write: l => lines.push(l) }) }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  t.true(lines.some(l => l.includes('cannot exist: skipped')))
  await s.write('v', 1, 0, new Uint8Array([1]), { epoch: 1 })
  t.deepEqual([...await s.read('v', 1, 0, 1)], [1])
})
