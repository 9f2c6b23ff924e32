// The object store's durability edges (review of 2026-11-30): overlapping flushes, a
// copy racing a write, new directories' entries, failed fsyncs and removals.
// fsyncs are the real ones, watched (or, to fail one, replaced) through the store's
// `fsync` component: a disk that fails an fsync cannot be had here otherwise.
import test from 'ava'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore, type DamageReport } from '../../node/gvs/object-store.ts'
import { StoreSyncs } from '../../node/gvs/store-syncs.ts'
import { syncPath } from '../../node/gvs/file-io.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'
import { smallDisk } from '../helpers/small-disk.ts'

const MiB = 1024 * 1024
type Fsync = (path: string) => Promise<void>

// on a small disk the tests reach a real ENOSPC: the reserve kept for epochs (disk-room.ts) is told of no shortage
const noShortage = async (): Promise<{ bavail: number, bsize: number, blocks: number }> => ({ bavail: 2 ** 28, bsize: 4096, blocks: 2 ** 28 })

async function store (t: { teardown: (fn: () => Promise<void>) => void }, fsync: Fsync = syncPath, dir?: string, writebackMs = 0): Promise<ObjectStore> {
  const d = dir ?? await mkdtemp(join(tmpdir(), 'gvs-store-'))
  if (dir == null) t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger, fsync, statfs: dir == null ? undefined : noShortage }, { dir: d, writebackMs })
  await s.start()
  t.teardown(async () => { await s.stop().catch(() => {}) })
  return s
}

/** fsyncs of paths matching `held` wait until released; every completed fsync is recorded */
function heldSyncs (held: (path: string) => boolean): { fsync: Fsync, done: string[], release: () => void } {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  const done: string[] = []
  return { fsync: async path => { if (held(path)) await gate; await syncPath(path); done.push(path) }, done, release }
}

/** what `p` resolved with, once it did or after a while (then `then` runs first, e.g. releasing what it waits for) */
async function settleOrRelease<T> (p: Promise<T>, then: () => void): Promise<T> {
  await Promise.race([p, new Promise(resolve => setTimeout(resolve, 300))])
  then()
  return await p
}

test("a flush returns only once the writes before it are synced, also those another flush in progress took", async t => {
  const h = heldSyncs(path => path.includes('/objects/y/'))
  const s = await store(t, h.fsync)
  await s.write('x', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1 })
  await s.write('y', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1 }) // Y's write, acknowledged
  const f1 = s.flush() // X's flush takes Y's paths too; their fsyncs are held
  const syncedAtF2 = await settleOrRelease(s.flush().then(() => [...h.done]), h.release)
  await f1
  const y = join(s.dir, 'objects', 'y', '00000000')
  t.true(syncedAtF2.includes(y) && syncedAtF2.includes(`${y}.sum`) && syncedAtF2.includes(join(s.dir, 'objects', 'y') + '/'), `synced when Y's flush returned: ${syncedAtF2.join(', ')}`)
})

test("a FUA write and syncObject sync a new object's directory entry while a flush that took it is still syncing it", async t => {
  const dirOf = (s: ObjectStore): string => join(s.dir, 'objects', 'y') + '/'
  for (const how of ['fua', 'syncObject'] as const) {
    const h = heldSyncs(path => path.endsWith('/objects/y/'))
    const s = await store(t, h.fsync)
    await s.write('y', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1 }) // creates y/00000000
    const f1 = s.flush() // takes the directory; its fsync is held
    const op = how === 'fua'
      ? s.write('y', 0, 8192, new Uint8Array(4096).fill(3), { epoch: 1, fua: true })
      : s.syncObject('y', 0)
    const synced = await settleOrRelease(op.then(() => [...h.done]), h.release)
    await f1
    t.true(synced.includes(dirOf(s)), `${how}: synced when it returned: ${synced.join(', ')}`)
  }
})

test("a replacing copy (scrub) never puts an older version over a newer one; it still rewrites an equal one", async t => {
  const s = await store(t)
  const size = s.objectSize
  await s.write('v', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: { epoch: 1, seq: 10 } })
  const readByScrub = { data: new Uint8Array(size).fill(1), version: { epoch: 1, seq: 10 } }
  await s.write('v', 0, 8192, new Uint8Array(4096).fill(9), { epoch: 1, version: { epoch: 1, seq: 11 } }) // acknowledged
  t.true(await s.put('v', 0, readByScrub, { epoch: 1, replace: true }), 'the newer copy here is kept')
  t.deepEqual((await s.stat('v', 0)).version, { epoch: 1, seq: 11 })
  t.is((await s.read('v', 0, 8192, 1))[0], 9)
  // an equal version is rewritten (a damaged copy's version is as new as the sound one's)
  t.false(await s.put('v', 0, { data: new Uint8Array(size).fill(4), version: { epoch: 1, seq: 11 } }, { epoch: 1, replace: true }))
  t.is((await s.read('v', 0, 8192, 1))[0], 4)
})

test("a new volume's directory entry in objects/ is synced by the next flush and by a FUA write", async t => {
  const done: string[] = []
  const s = await store(t, async path => { await syncPath(path); done.push(path) })
  const objects = join(s.dir, 'objects') + '/'
  await s.write('a', 0, 0, new Uint8Array(4096), { epoch: 1 })
  await s.flush()
  t.true(done.includes(objects), done.join(', '))
  done.length = 0
  await s.write('b', 0, 0, new Uint8Array(4096), { epoch: 1, fua: true })
  t.true(done.includes(objects), done.join(', '))
})

test("a new object's directory entry is synced by the next flush even when the write that created it failed", async t => {
  const mnt = await smallDisk(t)
  if (mnt == null) return
  await mkdir(join(mnt, 'gvs'))
  const done: string[] = []
  const s = await store(t, async path => { await syncPath(path); done.push(path) }, join(mnt, 'gvs'))
  await s.write('v', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1 })
  await s.flush()
  done.length = 0
  // creates object 1, then fails: the disk is full
  const e = await t.throwsAsync(s.write('v', 1, 0, new Uint8Array(3 * MiB).fill(2), { epoch: 1 }))
  t.true(isGvsError(e, 'no-space'), String(e))
  t.true((await s.list('v')).includes(1), 'the object was created')
  await s.flush()
  t.true(done.includes(join(s.dir, 'objects', 'v') + '/'), `synced: ${done.join(', ')}`)
})

test.serial('a store on a full disk starts all the same, and serves the copies it holds (bb33: the agent exited with a bare ENOSPC)', async t => {
  const mnt = await smallDisk(t)
  if (mnt == null) return
  await mkdir(join(mnt, 'gvs'))
  const d = join(mnt, 'gvs')
  const first = new ObjectStore({ log: silentLogger, statfs: noShortage }, { dir: d, writebackMs: 0 })
  await first.start()
  await first.write('v', 0, 0, new Uint8Array(4096).fill(7), { epoch: 1 })
  await first.flush()
  await first.stop()
  // the disk filled up by something else while the agent was down
  await writeFile(join(mnt, 'filler'), new Uint8Array(4 * MiB)).catch(() => {})
  const again = await store(t, syncPath, d)
  t.deepEqual(await again.read('v', 0, 0, 4096), new Uint8Array(4096).fill(7))
  // and writes fail cleanly until there is room
  const e = await t.throwsAsync(again.write('v', 1, 0, new Uint8Array(MiB).fill(2), { epoch: 1 }))
  t.true(isGvsError(e, 'no-space'), String(e))
})

test('a removal failing on the file system fails with a store error, not a raw one', async t => {
  const s = await store(t)
  await s.write('v', 0, 0, new Uint8Array([1]), { epoch: 1 })
  // a directory where object 1's data file would be: unlink fails with EISDIR
  await mkdir(join(s.dir, 'objects', 'v', '00000001'))
  const e = await t.throwsAsync(s.remove('v', 1))
  t.true(isGvsError(e), String(e))
})

test('an fsync that fails marks the object damaged (not dirty again): the flush fails, it is not served, verify reports it, a rewrite heals it', async t => {
  const failing = new Set<string>()
  const s = await store(t, async path => {
    if (failing.delete(path)) throw Object.assign(new Error(`EIO: i/o error, fsync '${path}'`), { code: 'EIO' })
    await syncPath(path)
  })
  const reports: DamageReport[] = []
  s.on('damaged', r => reports.push(r))
  const size = s.objectSize
  await s.write('v', 0, 0, new Uint8Array(size).fill(5), { epoch: 1, version: { epoch: 1, seq: 1 } })
  await s.write('v', 1, 0, new Uint8Array(4096).fill(6), { epoch: 1 })
  failing.add(join(s.dir, 'objects', 'v', '00000000'))
  const e = await t.throwsAsync(s.flush())
  t.true(isGvsError(e, 'io'), String(e))
  // a retried fsync would now succeed: the kernel may have dropped the pages
  await s.flush()
  t.is(reports.length, 1)
  t.like(reports[0], { volume: 'v', index: 0 })
  const r = await t.throwsAsync(s.read('v', 0, 0, 4096))
  t.true(isGvsError(r, 'damaged'), String(r))
  t.is((await s.verify('v', 0)).length, size / s.blockSize)
  await t.throwsAsync(s.syncObject('v', 0))
  // the other object is sound
  t.is((await s.read('v', 1, 0, 1))[0], 6)
  t.deepEqual(await s.verify('v', 1), [])
  // scrub's copy from a sound holder (same version) rewrites it
  t.false(await s.put('v', 0, { data: new Uint8Array(size).fill(5), version: { epoch: 1, seq: 1 } }, { epoch: 1, replace: true }))
  await s.syncObject('v', 0)
  t.is((await s.read('v', 0, 0, 1))[0], 5)
  t.deepEqual(await s.verify('v', 0), [])
})

/** fsyncs that fail once for the paths in `failing`, held for paths `held` matches until released; every attempt recorded */
function flakySyncs (held: (path: string) => boolean = () => false): { fsync: Fsync, failing: Set<string>, tried: string[], release: () => void } {
  const failing = new Set<string>()
  const tried: string[] = []
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  return {
    failing,
    tried,
    release,
    fsync: async path => {
      tried.push(path)
      if (held(path)) await gate
      if (failing.delete(path)) throw Object.assign(new Error(`EIO: i/o error, fsync '${path}'`), { code: 'EIO' })
      await syncPath(path)
    }
  }
}

test('an fsync error another volume\'s flush met fails the next flush of the object\'s own volume, once, and not the other volume\'s', async t => {
  const f = flakySyncs()
  const s = await store(t, f.fsync)
  await s.write('a', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1 })
  await s.write('b', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1 })
  f.failing.add(join(s.dir, 'objects', 'a', '00000000'))
  // b's flush syncs a's dirty files too (one store): a's error is not b's
  await t.notThrowsAsync(s.flush('b'))
  const e = await t.throwsAsync(s.flush('a'))
  t.true(isGvsError(e, 'io'), String(e))
  t.regex(String(e), /EIO/)
  await t.notThrowsAsync(s.flush('a'), 'reported once, as a disk does')
})

test('a flush is not failed by an error in a write made after it began; the flush that covers that write fails', async t => {
  const a0 = (dir: string): string => join(dir, 'objects', 'a', '00000000')
  let dir = ''
  const f = flakySyncs(path => path === a0(dir))
  const s = await store(t, f.fsync)
  dir = s.dir
  await s.write('a', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1 })
  const f1 = s.flush('a') // its fsync of a/0 is held
  await s.write('a', 8, 0, new Uint8Array(4096).fill(8), { epoch: 1 })
  const a8 = join(s.dir, 'objects', 'a', '00000008')
  f.failing.add(a8)
  const fb = s.flush('b') // takes a/8 and fails it; waits for f1
  while (!f.tried.includes(a8)) await new Promise(resolve => setTimeout(resolve, 10))
  f.release()
  await t.notThrowsAsync(f1, 'f1 began before the write to a/8')
  await t.notThrowsAsync(fb)
  await t.throwsAsync(s.flush('a'), undefined, 'the next flush of a covers a/8')
  await t.notThrowsAsync(s.flush('a'))
})

test('the background writeback\'s failed fsync is owed to the volume\'s next flush; a sound copy over the object settles what is owed', async t => {
  const f = flakySyncs()
  const s = await store(t, f.fsync, undefined, 50)
  const obj = (v: string, i: number): string => join(s.dir, 'objects', v, i.toString(16).padStart(8, '0'))
  await s.write('a', 1, 0, new Uint8Array(4096).fill(3), { epoch: 1 })
  f.failing.add(obj('a', 1))
  while (f.failing.size > 0) await new Promise(resolve => setTimeout(resolve, 20)) // the writeback met it
  await t.notThrowsAsync(s.flush('b'))
  await t.throwsAsync(s.flush('a'))
  await t.notThrowsAsync(s.flush('a'))
  // a whole sound copy (scrub, a heal) written over a lost object: nothing is missing
  await s.write('a', 3, 0, new Uint8Array(s.objectSize).fill(5), { epoch: 1, version: { epoch: 1, seq: 1 } })
  f.failing.add(obj('a', 3))
  await t.notThrowsAsync(s.flush('b'))
  await s.put('a', 3, { data: new Uint8Array(s.objectSize).fill(5), version: { epoch: 1, seq: 1 } }, { epoch: 1, replace: true })
  await t.notThrowsAsync(s.flush('a'))
  t.is((await s.read('a', 3, 0, 1))[0], 5)
})

test('a writer that never flushes is flushed in the background: its objects leave the write-intent log', async t => {
  const synced: string[] = []
  const s = await store(t, async path => { await syncPath(path); synced.push(path) }, undefined, 100)
  const log = join(s.dir, 'intents')
  await s.write('v', 0, 0, new Uint8Array(4096).fill(7), { epoch: 1 })
  await s.write('v', 3, 0, new Uint8Array(4096).fill(8), { epoch: 1 })
  t.regex(await readFile(log, 'utf8'), /v\/00000000 0\.0\n[^]*v\/00000003 0\.0\n/, 'named before the writes')
  // emptied: only the header (the server's boot id) stays
  const emptied = async (): Promise<boolean> => /^(boot \S+\n)?$/.test(await readFile(log, 'utf8'))
  const deadline = Date.now() + 5000
  while (!await emptied() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  t.true(await emptied(), 'the log emptied with no flush asked for')
  t.true(synced.includes(join(s.dir, 'objects', 'v', '00000003')))
  t.is((await s.read('v', 3, 0, 1))[0], 8)
})

test('of two failed fsyncs of one object, the earlier flush\'s counts: a flush that waited for it is not acknowledged because a later one failed first', async t => {
  // F (the writeback's) takes a/x; G (a's) waits for F; a write after G began, taken by H,
  // fails first; then F's fsyncs fail: G covered F's writes and must fail
  const gates: Array<() => void> = []
  const failing = new Set(['/v/a/x', '/v/a/x.sum'])
  const syncs = new StoreSyncs(async path => {
    await new Promise<void>(resolve => gates.push(resolve))
    if (failing.has(path)) throw Object.assign(new Error(`EIO: fsync '${path}'`), { code: 'EIO' })
  }, () => {})
  syncs.add('/v/a/x')
  syncs.add('/v/a/x.sum')
  const f = syncs.flush('store')
  const g = syncs.flush({ volumeDir: '/v/a' })
  syncs.add('/v/a/x')
  const h = syncs.flush('store')
  while (gates.length < 3) await new Promise(resolve => setTimeout(resolve, 5))
  gates[2]!() // H's fsync of a/x fails first (H then waits for F and G)
  await new Promise(resolve => setTimeout(resolve, 20))
  for (const open of gates.slice(0, 2)) open()
  await t.throwsAsync(f)
  await t.throwsAsync(h)
  await t.throwsAsync(g, undefined, 'G waited for F, whose fsyncs failed')
  await t.notThrowsAsync(syncs.flush({ volumeDir: '/v/a' }), 'reported once')
})

test('a debt tagged 0 (writes a failed FUA fsync dropped) is due to every flush to come, of its volume only', async t => {
  const syncs = new StoreSyncs(async () => {}, () => {})
  syncs.markLost('/v/a/00000001', new Error('EIO: a FUA write\'s fsync'), 0)
  await t.notThrowsAsync(syncs.flush({ volumeDir: '/v/b' }))
  await t.throwsAsync(syncs.flush({ volumeDir: '/v/a' }), { message: /FUA/ })
  await t.notThrowsAsync(syncs.flush({ volumeDir: '/v/a' }))
})
