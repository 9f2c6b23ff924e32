// The last scrub's record (<data-dir>/gvs-scrub.json) is read back at start: a file of
// the wrong shape (valid JSON, damaged by hand or a bug) is reported and ignored. It was
// trusted, and every volume view, which shows the last scrub's times, answered 500.
import test from 'ava'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ScrubSchedule, asScrubReport } from '../../node/gvs/scrub-schedule.ts'
import { createLogger } from '../../node/log.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'

const good = { startedAt: 1_700_000_000_000, finishedAt: 1_700_000_001_000, objects: 3, total: 3, bytes: 12, bad: 0, repaired: 0, unrepaired: [], layers: {} }

test('a scrub record of the wrong shape is reported and ignored; a sound one is kept', async t => {
  t.deepEqual(asScrubReport(good), good)
  for (const bad of [{}, [], null, 7, { ...good, startedAt: 'yesterday' }, { ...good, finishedAt: 1e300 }, { ...good, bad: -1 }, { ...good, layers: [] }, { ...good, unrepaired: {} }]) {
    t.is(asScrubReport(bad), null, JSON.stringify(bad))
  }
  const dir = mkdtempSync(join(tmpdir(), 'vgt-scrubrec-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'gvs-scrub.json')
  const lines: string[] = []
  const log = createLogger({ component: 'test', level: 'warn', write: l => { lines.push(l) } })
  const schedule = (): ScrubSchedule => new ScrubSchedule({ self: 'n1', log, transport: null as never, store: null as never, metrics: null, file, sources: () => [] }, { intervalMs: 0 })
  for (const [content, kept] of [[JSON.stringify({}), false], ['{not json', false], [JSON.stringify(good), true]] as const) {
    writeFileSync(file, content)
    const s = schedule()
    await s.start()
    t.is(s.status().last != null, kept, content)
    await s.stop()
  }
  t.is(lines.filter(l => l.includes('gvs-scrub.json')).length, 2, 'each bad file named in a warning')
})

test('a stray file in the object store is no layer: skipped and named once; a scrub that fails says so in its status and its log (bb41: vol scrub --now waited for ever)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-scrubfail-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const lines: string[] = []
  const log = createLogger({ component: 'test', level: 'warn', write: l => { lines.push(l) } })
  const store = new ObjectStore({ log }, { dir: join(dir, 'gvs') })
  await store.start()
  t.teardown(async () => { await store.stop() })
  await store.write('vol-a', 0, 0, new Uint8Array([1]), { epoch: 1 })
  writeFileSync(join(dir, 'gvs', 'objects', 'garbagefile'), 'hi')
  t.deepEqual(await store.volumes(), ['vol-a'])
  t.deepEqual(await store.volumes(), ['vol-a'])
  t.is(lines.filter(l => l.includes('garbagefile')).length, 1, 'named once')
  // a scrub whose listing fails (a layer's directory that cannot be read)
  const failing = { ...store, objectSize: store.objectSize, volumes: async () => ['vol-a'], list: async () => { throw new Error('listing "vol-a": EACCES') } }
  const s = new ScrubSchedule({ self: 'n1', log, transport: null as never, store: failing as never, metrics: null, file: join(dir, 'gvs-scrub.json'), sources: () => [] }, { intervalMs: 0 })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await t.throwsAsync(s.now(), { message: /EACCES/ })
  t.like(s.status(), { running: null, last: null, failed: { error: 'listing "vol-a": EACCES' } })
  t.true(lines.some(l => l.includes('the scrub of this node') && l.includes('EACCES')), 'logged')
})

test('a file where the volume store\'s epochs directory goes stops its start, naming the path and what to do (bb41: a bare EEXIST)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-storedir-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  mkdirSync(join(dir, 'gvs'))
  writeFileSync(join(dir, 'gvs', 'epochs'), 'x')
  const store = new ObjectStore({ log: createLogger({ write: () => {} }) }, { dir: join(dir, 'gvs') })
  await t.throwsAsync(store.start(), { message: `${join(dir, 'gvs', 'epochs')} must be a directory of the volume store, and something else is in its way (EEXIST): move it away` })
})
