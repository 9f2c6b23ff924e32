// A layer's removal while copies land in it (a fold or a repair writing objects into a
// volume being removed): the removal waits for those that began and holds back those
// that come, so it never fails on a directory a copy refilled (ENOTEMPTY, seen in CI
// after `vol snapshot rm` then `vol rm`), and leaves nothing of what came before it.
import test from 'ava'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ObjectSpans } from '../../node/gvs/object-spans.ts'
import { silentLogger } from '../../node/log.ts'

const OBJECT = 64 * 1024

test('a layer removed while copies land in it: the removal succeeds, the copies that began before it are gone, those after it wait for it', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-remove-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir, objectSize: OBJECT, blockSize: 4096 })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const layer = 'vol-race@3'
  const copy = { data: new Uint8Array(OBJECT).fill(7), version: { epoch: 1, seq: 1 } }
  for (let round = 0; round < 20; round++) {
    await s.put(layer, 0, copy, { epoch: 1 })
    // copies of new objects in flight (each makes two files), then the removal
    const before = Array.from({ length: 32 }, async (_, i) => await s.put(layer, 1 + i, copy, { epoch: 1 }))
    const removal = s.removeVolume(layer)
    // one asked for while the removal runs: it waits for it, then lands on its own
    const after = s.put(layer, 100, copy, { epoch: 1 })
    await removal
    t.deepEqual(await s.list(layer).catch(() => []), [], `round ${round}: nothing that began before the removal is left`)
    await Promise.all(before)
    t.deepEqual(await s.list(layer), [], `round ${round}: nor lands after it`)
    await after
    t.deepEqual(await s.list(layer), [100], `round ${round}: the copy asked for meanwhile landed after it`)
    await s.removeVolume(layer)
    t.false(existsSync(join(dir, 'objects', layer)))
  }
  t.deepEqual((await readdir(join(dir, 'objects'))), [])
})

test('a write waiting behind a removal counts as written: a read that comes after it takes no fast path past it (rv30)', async t => {
  const s = new ObjectSpans(4096)
  const p = { dir: '/d', data: '/d/0' }
  let release!: () => void
  const slow = s.run(p, ObjectSpans.whole(false), async () => { await new Promise<void>(resolve => { release = resolve }) })
  const order: string[] = []
  const removal = s.removing('/d', async () => { order.push('removed') })
  const write = s.run(p, ObjectSpans.whole(true), async () => { order.push('written') })
  t.true(s.written('/d/0'))
  release()
  await Promise.all([slow, removal, write])
  t.deepEqual(order, ['removed', 'written'])
  t.false(s.written('/d/0'))
})

test('a layer whose copies all moved away leaves no empty directory; a copy racing the removal still lands (bb26)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-empty-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir, objectSize: OBJECT, blockSize: 4096 })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const layer = 'vol-moved@1'
  const copy = { data: new Uint8Array(OBJECT).fill(9), version: { epoch: 1, seq: 1 } }
  t.false(await s.dropIfEmpty(layer), 'no directory: nothing to do')
  await s.put(layer, 0, copy, { epoch: 1 })
  t.false(await s.dropIfEmpty(layer), 'an object is there: kept')
  t.true(existsSync(join(dir, 'objects', layer)))
  await s.remove(layer, 0)
  t.true(await s.dropIfEmpty(layer))
  t.false(existsSync(join(dir, 'objects', layer)))
  // the removal first: a request on the layer holds it back, and a copy asked for
  // meanwhile waits for it, then makes the directory again and lands (rv32: a race
  // left to chance only ever ran the other way)
  await s.put(layer, 0, copy, { epoch: 1 })
  await s.remove(layer, 0)
  const spans = (s as unknown as { spans: ObjectSpans }).spans
  const d = join(dir, 'objects', layer)
  let release!: () => void
  const holding = spans.run({ dir: d, data: join(d, '00000007') }, ObjectSpans.whole(false), async () => { await new Promise<void>(resolve => { release = resolve }) })
  const drop = s.dropIfEmpty(layer)
  await new Promise(resolve => setTimeout(resolve, 50))
  const put = s.put(layer, 1, copy, { epoch: 1 })
  release()
  await holding
  t.true(await drop, 'the empty directory went first')
  await put
  t.deepEqual(await s.list(layer), [1], 'the copy that waited landed after it')
  t.deepEqual(await s.read(layer, 1, 0, 4), new Uint8Array(4).fill(9))
  await s.remove(layer, 1)
  t.true(await s.dropIfEmpty(layer))
  // and the other way: a copy that lands first keeps the directory
  for (let round = 0; round < 20; round++) {
    await s.put(layer, 0, copy, { epoch: 1 })
    await s.remove(layer, 0)
    const dropped = s.dropIfEmpty(layer)
    const put = s.put(layer, 1, copy, { epoch: 1 })
    await Promise.all([dropped, put])
    t.deepEqual(await s.list(layer), [1], `round ${round}: the copy landed`)
    await s.remove(layer, 1)
    t.true(await s.dropIfEmpty(layer))
  }
  t.deepEqual(await readdir(join(dir, 'objects')), [])
})
