// The pieces of the fast data path, without a network: range locks (disjoint blocks at
// once, overlapping ones in order), replica frames cut out of arbitrary pieces, the
// batching of sends, the token bucket that paces repair, the read buffer pool, and
// the object store under concurrent writes to one object.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { RangeLock, conflicts } from '../../node/gvs/range-lock.ts'
import { FrameReader, encodeFrame } from '../../node/gvs/replica-frames.ts'
import { Batcher } from '../../node/gvs/replica-channel.ts'
import { TokenBucket, take } from '../../node/gvs/token-bucket.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { BufferPool } from '../../node/gvs/buffer-pool.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { silentLogger } from '../../node/log.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

test('conflicts: overlapping spans conflict only when one of them writes', t => {
  const r = (start: number, end: number): { start: number, end: number, exclusive: boolean } => ({ start, end, exclusive: false })
  const w = (start: number, end: number): { start: number, end: number, exclusive: boolean } => ({ start, end, exclusive: true })
  t.false(conflicts(r(0, 4), r(2, 6)), 'reads share')
  t.true(conflicts(w(0, 4), r(3, 6)))
  t.true(conflicts(r(0, 4), w(3, 6)))
  t.false(conflicts(w(0, 4), w(4, 8)), 'adjacent writes do not overlap')
})

test('range lock: disjoint writes run at once; an overlapping write waits, in order, and a later read waits for it', async t => {
  const lock = new RangeLock()
  const log: string[] = []
  let releaseA!: () => void
  const a = lock.run('obj', { start: 0, end: 2, exclusive: true }, async () => { log.push('a+'); await new Promise<void>(resolve => { releaseA = resolve }); log.push('a-') })
  const b = lock.run('obj', { start: 2, end: 4, exclusive: true }, async () => { log.push('b') })
  const c = lock.run('obj', { start: 1, end: 3, exclusive: true }, async () => { log.push('c') })
  const d = lock.run('obj', { start: 1, end: 2, exclusive: false }, async () => { log.push('d') })
  const other = lock.run('other', { start: 0, end: 9, exclusive: true }, async () => { log.push('other') })
  await b
  await other
  await tick()
  t.deepEqual(log, ['a+', 'b', 'other'], 'b (disjoint) and another key ran while a holds blocks 0-1; c and d wait')
  releaseA()
  await Promise.all([a, c, d])
  t.deepEqual(log, ['a+', 'b', 'other', 'a-', 'c', 'd'], 'c after a, d after c: first come, first served')
  t.is(lock.size, 0, 'nothing left held')
})

test('range lock: a failing holder releases its span', async t => {
  const lock = new RangeLock()
  await t.throwsAsync(lock.run('k', { start: 0, end: 1, exclusive: true }, async () => { throw new Error('disk on fire') }), { message: 'disk on fire' })
  t.is(await lock.run('k', { start: 0, end: 1, exclusive: true }, async () => 7), 7)
})

test('frames: cut out of pieces of any size, header and data intact', t => {
  const data = randomBytes(300_000)
  const frames = [encodeFrame(1, new TextEncoder().encode('{"op":"flush"}')), encodeFrame(0xffffffff, new TextEncoder().encode('{"a":1}'), data)]
  const wire = new Uint8ArrayList(...frames.flatMap(f => [...f])).subarray()
  const reader = new FrameReader(1 << 20, 4096)
  const got = []
  for (let at = 0; at < wire.length;) {
    const n = Math.min(wire.length - at, 1 + Math.floor(Math.random() * 70_000))
    got.push(...reader.push(wire.subarray(at, at + n)))
    at += n
  }
  t.is(got.length, 2)
  t.is(got[0]!.id, 1)
  t.is(new TextDecoder().decode(got[0]!.header), '{"op":"flush"}')
  t.is(got[0]!.data, null)
  t.is(got[1]!.id, 0xffffffff)
  t.true(Buffer.from(got[1]!.data!).equals(data))
  t.is(reader.buffered, 0)
})

test('frames: an oversized frame or a header overrunning it is refused with a clear error', t => {
  const big = encodeFrame(1, new Uint8Array(10), new Uint8Array(2000)).subarray()
  const e = t.throws(() => new FrameReader(1000, 100).push(big))
  t.true(isGvsError(e, 'invalid'))
  t.regex(e?.message ?? '', /frame of 2016 bytes is outside 6\.\.1000/)
  const bad = encodeFrame(1, new Uint8Array(10)).subarray()
  new DataView(bad.buffer, bad.byteOffset).setUint16(8, 500)
  t.regex(t.throws(() => new FrameReader(1000, 4096).push(bad))?.message ?? '', /header of 500 bytes does not fit/)
})

test('batcher: frames queued in one turn go down as one send; a large batch goes at once', async t => {
  const sent: number[] = []
  const b = new Batcher({ send: (d: Uint8Array | Uint8ArrayList) => { sent.push(d.byteLength); return true } }, 1000)
  for (let i = 0; i < 5; i++) b.send(new Uint8ArrayList(new Uint8Array(100)))
  t.deepEqual(sent, [], 'nothing sent within the turn')
  await tick()
  t.deepEqual(sent, [500], 'one send of five frames')
  b.send(new Uint8ArrayList(new Uint8Array(600)))
  b.send(new Uint8ArrayList(new Uint8Array(600)))
  t.deepEqual(sent, [500, 1200], 'past the limit it sends without waiting for the turn to end')
  await tick()
  t.deepEqual(sent, [500, 1200])
})

test('token bucket: a burst passes at once, then takers wait for the rate', async t => {
  let now = 0
  t.deepEqual(take({ tokens: 100, at: 0 }, 60, 0, 1000, 100), { state: { tokens: 40, at: 0 }, waitMs: 0 })
  t.deepEqual(take({ tokens: 40, at: 0 }, 60, 0, 1000, 100), { state: { tokens: -20, at: 0 }, waitMs: 20 })
  t.deepEqual(take({ tokens: -20, at: 0 }, 10, 50, 1000, 100), { state: { tokens: 20, at: 50 }, waitMs: 0 }, 'refilled at the rate')
  t.is(take({ tokens: 0, at: 0 }, 10, 1e6, 1000, 100).state.tokens, 90, 'never more than the burst')
  t.is(take({ tokens: 0, at: 0 }, 1e9, 0, 0, 0).waitMs, 0, 'rate 0: no limit')
  const bucket = new TokenBucket({ rate: 1e6, burst: 1000 }, () => now)
  // the burst resolves within microtasks: no timer in between (a wall-clock bound flakes under load)
  let passed = false
  const burst = bucket.take(1000).then(() => { passed = true })
  for (let i = 0; i < 5; i++) await Promise.resolve()
  t.true(passed, 'the burst needs no wait')
  await burst
  now = 0
  const t1 = performance.now()
  await bucket.take(20_000) // 20 ms of rate
  t.true(performance.now() - t1 >= 15, 'past the burst it waits about bytes / rate')
  t.throws(() => new TokenBucket({ rate: -1 }), { message: /rate -1 is not a non-negative number/ })
})

test('buffer pool: a given-back buffer is reused; foreign buffers and double gives are ignored', t => {
  const pool = new BufferPool()
  const a = pool.take(5000)
  t.is(a.length, 5000)
  t.is(a.buffer.byteLength, 8192, 'size class: the next power of two')
  pool.give(a.subarray(100, 200))
  pool.give(a)
  const b = pool.take(6000)
  t.is(b.buffer, a.buffer, 'reused')
  const c = pool.take(6000)
  t.not(c.buffer, a.buffer, 'given back once, taken once')
  pool.give(Buffer.alloc(8192))
  t.not(pool.take(8192).buffer, c.buffer)
})

test('object store: concurrent writes to different blocks of a new object all land; overlapping ones land in order', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-dp-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = new ObjectStore({ log: silentLogger }, { dir })
  await store.start()
  const blocks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(4096, i + 1))
  // all at once on an object that does not exist yet: one of them creates it
  await Promise.all(blocks.map(async (b, i) => { await store.write('v', 0, i * 4096, b, { epoch: 1 }) }))
  const back = await store.read('v', 0, 0, 64 * 4096)
  for (let i = 0; i < 64; i++) t.true(Buffer.from(back.subarray(i * 4096, (i + 1) * 4096)).equals(blocks[i]!), `block ${i}`)
  // overlapping writes and reads issued together: each read sees the writes issued before it
  const w1 = store.write('v', 0, 100, Buffer.alloc(5000, 0xaa), { epoch: 1 })
  const r1 = store.read('v', 0, 0, 8192)
  const w2 = store.write('v', 0, 2000, Buffer.alloc(100, 0xbb), { epoch: 1 })
  const r2 = store.read('v', 0, 0, 8192)
  await Promise.all([w1, w2])
  const [x, y] = await Promise.all([r1, r2])
  t.is(x[100], 0xaa)
  t.is(x[2000], 0xaa, 'the first read ran before the second write')
  t.is(y[2000], 0xbb)
  t.deepEqual(await store.verify('v', 0), [], 'checksums match what landed')
  await store.stop()
})
