// The write-intent log (node/gvs/write-intents.ts): an object is named before its first
// write after its last sync, also while the log is being rewritten after a flush, and
// leaves it only once synced with no write under way; a log cut short by a full disk
// still names every object it took whole.
import test from 'ava'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WriteIntents } from '../../node/gvs/write-intents.ts'
import { smallDisk } from '../helpers/small-disk.ts'

const names = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter(l => l !== '').sort()

test('a flush that leaves every object clean empties the log; one written meanwhile is named', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  const w = new WriteIntents(file, { emptyEveryMs: 0 })
  await w.open()
  const obj = (i: number): string => join(dir, 'objects', 'v', i.toString(16).padStart(8, '0'))
  await w.begin(obj(1))
  w.done(obj(1))
  t.deepEqual(names(file), ['v/00000001'])
  // a write under way (or waiting for a sync) keeps the log as it is
  await w.begin(obj(2))
  await w.settled(() => false)
  t.deepEqual(names(file), ['v/00000001', 'v/00000002'])
  w.done(obj(2))
  await w.settled(d => d === obj(2))
  t.deepEqual(names(file), ['v/00000001', 'v/00000002'])
  // every object clean: emptied; a first write that comes in meanwhile is named after it
  const settling = w.settled(() => false)
  await w.begin(obj(3))
  await settling
  w.done(obj(3))
  t.deepEqual(names(file), ['v/00000003'])
  await w.close()
  // emptied at most once a while: a client flushing after each write pays no sync for it in between
  const slow = new WriteIntents(file, { emptyEveryMs: 60_000 })
  await slow.open()
  for (const i of [1, 2]) {
    await slow.begin(obj(i))
    slow.done(obj(i))
    await slow.settled(() => false)
  }
  t.deepEqual(names(file), ['v/00000002'], 'emptied once (after 1), then kept while clean')
  await slow.settled(() => false, { stopping: true })
  t.deepEqual(names(file), [], 'and emptied when the store stops')
  await slow.close()
})

test('an object first written while the log is rewritten is named in the new log', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  // past 3 clean objects named while another is not clean, the log is rewritten without them
  const w = new WriteIntents(file, { rewriteAt: 3 })
  await w.open()
  const obj = (i: number): string => join(dir, 'objects', 'v', i.toString(16).padStart(8, '0'))
  for (const i of [1, 2, 3]) { await w.begin(obj(i)); w.done(obj(i)) }
  await w.begin(obj(4))
  const settling = w.settled(() => false)
  const handle = w as unknown as { fh?: unknown }
  for (let i = 0; i < 2000 && handle.fh != null; i++) await new Promise(resolve => setImmediate(resolve))
  t.is(handle.fh, undefined, 'caught while the log is closed for its rewrite')
  await w.begin(obj(5))
  await settling
  w.done(obj(4))
  w.done(obj(5))
  t.deepEqual(names(file), ['v/00000004', 'v/00000005'], 'named though it came during the rewrite')
  await w.close()
})

test('a line cut short by a full disk does not hide the names around it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  writeFileSync(file, '\nv/00000001\n\nv/0000\n\nv/00000002\nv/0')
  const p = await new WriteIntents(file).pending()
  t.deepEqual(p.objects.map(o => `${o.volume}/${o.file}`).sort(), ['v/00000001', 'v/00000002'])
  t.deepEqual(p.damaged, [], 'a cut line named no write')
  // damage is told apart, for the store to report
  writeFileSync(file, 'v/00000001\n\u0000\u0000garbage!\nv/zz\nv/00000002\n')
  const q = await new WriteIntents(file).pending()
  t.deepEqual(q.objects.map(o => `${o.volume}/${o.file}`).sort(), ['v/00000001', 'v/00000002'])
  t.deepEqual(q.damaged, ['\u0000\u0000garbage!', 'v/zz'])
})

test('each name carries the object\'s version before its write, and the log the server\'s boot id, kept through an emptying and a rewrite; a version cut short counts as none', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  const w = new WriteIntents(file, { rewriteAt: 2, emptyEveryMs: 0 })
  await w.open('boot-1')
  const obj = (i: number): string => join(dir, 'objects', 'v', i.toString(16).padStart(8, '0'))
  let asked = 0
  const at = (seq: number) => async () => { asked++; return { epoch: 3, seq } }
  await w.begin(obj(1), at(7))
  await w.begin(obj(1), at(8))
  w.done(obj(1))
  w.done(obj(1))
  t.is(asked, 1, 'asked only for a new name')
  await w.begin(obj(2), async () => null)
  w.done(obj(2))
  await w.begin(obj(3), at(1))
  t.deepEqual(names(file), ['boot boot-1', 'v/00000001 3.7', 'v/00000002', 'v/00000003 3.1'])
  // rewritten without the clean ones (1 and 2): the header and 3's version stay
  await w.settled(() => false)
  t.deepEqual(names(file), ['boot boot-1', 'v/00000003 3.1'])
  w.done(obj(3))
  await w.settled(() => false)
  t.deepEqual(names(file), ['boot boot-1'], 'emptied, the header kept')
  await w.close()
  const p = await new WriteIntents(file).pending()
  t.is(p.boot, 'boot-1')
  // what a crash leaves: a version cut short, a name twice (the lower version counts), a log of an earlier release
  writeFileSync(file, 'boot boot-2\nv/00000001 3.\nv/00000002 4.9\n\nv/00000002 4.2\nv/00000003\n')
  const q = await new WriteIntents(file).pending()
  t.is(q.boot, 'boot-2')
  t.deepEqual(q.damaged, [])
  t.deepEqual(q.objects.map(o => [o.file, o.version]).sort(), [['00000001', null], ['00000002', { epoch: 4, seq: 2 }], ['00000003', null]])
  writeFileSync(file, 'v/00000001\nboot boot-3\n')
  const r = await new WriteIntents(file).pending()
  t.is(r.boot, null, 'no header: which boot is not known')
  t.deepEqual(r.damaged, ['boot boot-3'], 'a header only leads the log')
})

test('objects first written at once are named together: one synced append for a batch, each begin waits for its name', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-intents-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'intents')
  const w = new WriteIntents(file)
  await w.open('b00t')
  const obj = (i: number): string => join(dir, 'objects', 'v', i.toString(16).padStart(8, '0'))
  const named: number[] = []
  // each begin resolves only once its own name is in the file
  await Promise.all(Array.from({ length: 100 }, async (_, i) => {
    await w.begin(obj(i), async () => ({ epoch: 2, seq: i }))
    if (readFileSync(file, 'utf8').includes(`v/${i.toString(16).padStart(8, '0')} 2.${i}\n`)) named.push(i)
    w.done(obj(i))
  }))
  t.is(named.length, 100, 'every begin saw its name written')
  t.true(w.appends <= 3, `100 names in ${w.appends} appends`)
  const { objects, damaged, boot } = await w.pending()
  t.is(boot, 'b00t')
  t.deepEqual(damaged, [])
  t.is(objects.length, 100)
  t.true(objects.every(o => o.version?.epoch === 2 && o.version.seq === Number.parseInt(o.file, 16)))
  // named already: no append
  await w.begin(obj(5))
  w.done(obj(5))
  t.true(w.appends <= 3)
  // an append that fails fails every begin of its batch (a full disk, an I/O error: here a closed handle)
  await (w as unknown as { fh: { close: () => Promise<void> } }).fh.close()
  const tries = await Promise.allSettled([1, 2, 3].map(async i => { await w.begin(obj(200 + i)) }))
  t.true(tries.every(r => r.status === 'rejected'), 'each of the batch failed')
  t.false(readFileSync(file, 'utf8').includes('v/000000c9'))
  // and a later name is tried again, not taken as written
  await t.throwsAsync(w.begin(obj(201)))
})

test.serial('objects carried from a start are written over the old log in place on a full disk; with no room at all they are not taken as named (rv39)', async t => {
  const mnt = await smallDisk(t)
  if (mnt == null) return
  const file = join(mnt, 'intents')
  const obj = (i: number): string => join(mnt, 'objects', 'v', i.toString(16).padStart(8, '0'))
  writeFileSync(file, 'boot b1\nv/00000000 1.1\nv/00000001 1.1\n')
  // the disk filled up by something else
  try { writeFileSync(join(mnt, 'filler'), new Uint8Array(4 * 2 ** 20)) } catch {}
  const w = new WriteIntents(file)
  t.true(await w.open('b2', [{ data: obj(0), version: { epoch: 1, seq: 1 }, lower: true }]))
  t.is(readFileSync(file, 'utf8'), 'boot b2\nlower v/00000000 1.1\n')
  t.deepEqual((await w.pending()).objects, [{ volume: 'v', file: '00000000', version: { epoch: 1, seq: 1 }, lower: true }])
  await w.close()
  // an empty log on a full disk: no room for the line, so the object is not named (its writes append a name of their own)
  writeFileSync(file, '')
  try { writeFileSync(join(mnt, 'filler2'), new Uint8Array(2 ** 20)) } catch {}
  const again = new WriteIntents(file)
  t.false(await again.open(null, [{ data: obj(0), version: null, lower: false }]))
  t.is(readFileSync(file, 'utf8'), '')
  await again.close()
})
