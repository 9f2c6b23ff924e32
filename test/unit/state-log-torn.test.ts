// A log whose last record was torn (a crash or a full disk mid-append), cut at every
// byte offset of that record: recovery keeps every complete record, never a partial one.
import test from 'ava'
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore, parseLog } from '../../node/state/store.ts'
import { Persister, type PersisterStore } from '../../node/state/persister.ts'
import { DiskError } from '../../node/state/store.ts'
import { Replica } from '../../crdt/index.ts'

test('a log cut at every byte of its last record keeps exactly the complete records', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-torn-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const s = new StateStore(dir)
  await s.openLog()
  const payloads = [new Uint8Array(37).fill(1), new Uint8Array(5).fill(2), new Uint8Array(120).fill(3)]
  const sizes: number[] = []
  for (const p of payloads) {
    await s.append(p)
    sizes.push(s.sizes.logBytes)
  }
  await s.close()
  const full = await readFile(s.path('log'))
  const lastStart = sizes[1]!
  t.is(full.length, sizes[2]!)
  for (let cut = lastStart; cut < full.length; cut++) {
    const r = parseLog(full.subarray(0, cut))
    t.deepEqual(r.records.map(x => [...x]), payloads.slice(0, 2).map(x => [...x]), `cut at ${cut}`)
    if (cut === lastStart) t.is(r.problem, undefined)
    else t.regex(r.problem ?? '', /2 records before it are intact/, `cut at ${cut}`)
  }
  // and through the store, from a real file
  await truncate(s.path('log'), full.length - 1)
  const back = await new StateStore(dir).read()
  t.is(back.records.length, 2)
  t.is(back.problems.length, 1)
  // a log cut inside its 8-byte header (a crash while it was created) is empty, not damaged
  await writeFile(s.path('log'), full.subarray(0, 5))
  t.deepEqual(await new StateStore(dir).read(), { records: [], problems: [] })
})

/** A store whose disk fails on demand (the rest is the real one). */
class FlakyStore implements PersisterStore {
  fail?: DiskError
  appended: Uint8Array[] = []
  get sizes (): { snapshotBytes: number, logBytes: number, logRecords: number } { return { snapshotBytes: 0, logBytes: 0, logRecords: this.appended.length } }
  async append (payload: Uint8Array): Promise<void> {
    if (this.fail != null) throw this.fail
    this.appended.push(payload)
  }

  async writeSnapshot (): Promise<void> {
    if (this.fail != null) throw this.fail
  }
}

test('a write whose bytes cannot be saved is applied nowhere, and later writes carry on', async t => {
  const opts = { clusterId: 'c1', nodeId: '12D3KooWFlaky' }
  const replica = Replica.create(opts)
  const store = new FlakyStore()
  const errors: string[] = []
  const committed: number[] = []
  const p = new Persister({ store, replica, onDiskError: e => errors.push(e.reason), onCommitted: n => committed.push(n) })
  await p.commit(w => w.setLabel(opts.nodeId, 'a', '1'))
  t.deepEqual(replica.read().labelsOf(opts.nodeId), { a: '1' })
  const actor = replica.actor

  store.fail = new DiskError('disk-full', 'ENOSPC: no space left on device', 'ENOSPC')
  const heads = replica.heads()
  const burst = [p.commit(w => w.setLabel(opts.nodeId, 'b', '2')), p.commit(w => w.setLabel(opts.nodeId, 'c', '3'))]
  for (const r of await Promise.allSettled(burst)) {
    t.is(r.status, 'rejected')
    t.true((r as PromiseRejectedResult).reason instanceof DiskError)
  }
  t.deepEqual(replica.heads(), heads, 'nothing of the failed writes is in the document')
  t.deepEqual(replica.read().labelsOf(opts.nodeId), { a: '1' })
  t.true(errors.length >= 1 && errors.every(e => e === 'disk-full'))
  t.not(replica.actor, actor, 'a fresh actor: the failed changes\' sequence numbers are never reused')

  // a validation error rejects only its own write, before anything is written
  store.fail = undefined
  const [bad, good] = await Promise.allSettled([p.commit(w => w.setLabel(opts.nodeId, 'bad key!', 'x')), p.commit(w => w.setLabel(opts.nodeId, 'd', '4'))])
  t.is(bad.status, 'rejected')
  t.is(good.status, 'fulfilled')
  t.deepEqual(replica.read().labelsOf(opts.nodeId), { a: '1', d: '4' })
  t.false(p.dirty)

  // what reached the disk replays into exactly the document
  const back = Replica.create(opts)
  for (const rec of store.appended) back.loadIncremental(rec)
  t.deepEqual(back.heads().sort(), replica.heads().sort())
  t.deepEqual(committed, [1, 1])
})

test('a burst of writes shares one fsync', async t => {
  const opts = { clusterId: 'c1', nodeId: '12D3KooWBurst' }
  const replica = Replica.create(opts)
  const store = new FlakyStore()
  const p = new Persister({ store, replica })
  await p.commit(() => null) // nothing to write: nothing appended
  t.is(store.appended.length, 0)
  await Promise.all(Array.from({ length: 50 }, async (_, i) => await p.commit(w => w.setLabel(opts.nodeId, `k${i}`, 'v'))))
  t.true(store.appended.length <= 2, `${store.appended.length} appends for 50 writes`)
  t.is(Object.keys(replica.read().labelsOf(opts.nodeId)).length, 50)
})

test('a directory where the snapshot or log file goes stops the start with an error naming its path (it said "EISDIR: illegal operation on a directory, read")', async t => {
  for (const file of ['snapshot', 'log']) {
    const dir = await mkdtemp(join(tmpdir(), 'vgrid-eisdir-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    await mkdir(join(dir, 'state', file), { recursive: true })
    const err = await t.throwsAsync(new StateStore(dir).read())
    t.is(err?.message, `cannot read ${join(dir, 'state', file)}: EISDIR: illegal operation on a directory, read`)
    t.is((err as NodeJS.ErrnoException).code, 'EISDIR')
  }
})

test('zeros after a log\'s last record are damage found at once, not empty records (bb35: 64 MiB of them took minutes and gigabytes); an empty record before more is skipped', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-zeros-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const s = new StateStore(dir)
  await s.openLog()
  await s.append(new Uint8Array(9).fill(1))
  await s.append(new Uint8Array(0))
  await s.append(new Uint8Array(3).fill(2))
  await s.close()
  const full = await readFile(s.path('log'))
  t.is(full.length, 8 + 17 + 11, 'an empty append writes nothing')
  const zeros = Buffer.concat([full, Buffer.alloc(64 * 2 ** 20)])
  const t0 = performance.now()
  const r = parseLog(zeros)
  t.true(performance.now() - t0 < 5000)
  t.is(r.records.length, 2)
  t.is(r.problem, `ends in ${64 * 2 ** 20} bytes of zeros from byte ${full.length} (a file system that kept the file's length and not its data?); 2 records before them are intact`)
  // an empty record (no release writes one) between records: skipped
  const between = Buffer.concat([full.subarray(0, 25), Buffer.alloc(8), full.subarray(25)])
  t.deepEqual(parseLog(between), { records: [new Uint8Array(9).fill(1), new Uint8Array(3).fill(2)].map(x => Buffer.from(x)) })
  // a length damaged to 0 under a checksum is damage where it is, not skipped (rv40)
  const damaged = Buffer.from(full)
  damaged.writeUInt32BE(0, 25)
  t.deepEqual(parseLog(damaged).records.length, 1)
  t.is(parseLog(damaged).problem, 'record at byte 25 claims 0 bytes with a checksum (a damaged length); 1 records before it are intact')
})

test('a state file that is not a regular file is damage, not read (bb35: a log linked to /dev/zero was read until the machine\'s memory ran out)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-devzero-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'state'))
  await symlink('/dev/zero', join(dir, 'state', 'log'))
  await symlink('/dev/zero', join(dir, 'state', 'snapshot'))
  const back = await new StateStore(dir).read()
  t.deepEqual(back.problems.map(p => `${p.file}: ${p.detail}`).sort(), ['log: is not a regular file (a character device)', 'snapshot: is not a regular file (a character device)'])
  t.deepEqual(back.records, [])
})

test('a state log in a format this release does not read is said so, not as a bad header (bb41)', t => {
  t.deepEqual(parseLog(Buffer.from('VGLOG99\nwhatever')), { records: [], problem: 'a vgrid state log of format 99, which this release does not read (written by a newer vgrid?)' })
  t.deepEqual(parseLog(Buffer.from('NOTALOG\nwhatever')), { records: [], problem: 'not a vgrid state log (bad header)' })
})
