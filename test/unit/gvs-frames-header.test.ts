// A frame's header length is 16 bits: a longer header must be refused, never sent with
// its length cut (review finding 4: a list of 6000 objects, 82 KB of header, arrived
// as 16,490 bytes and the rest was taken for data). Lists come in pages instead.
import test from 'ava'
import { FrameReader, encodeFrame, MAX_FRAME_HEADER } from '../../node/gvs/replica-frames.ts'
import { answerList, decodeList, encode, decodeReply, listPage, type Listed, type ReplicaRequest } from '../../node/gvs/replica-protocol.ts'
import { isGvsError } from '../../node/gvs/errors.ts'

const held = (n: number): Listed[] => Array.from({ length: n }, (_, i) => ({ index: i, version: { epoch: 3, seq: 100 + i } }))

test('a header of 65535 bytes goes through whole; one byte more is refused with a clear error', t => {
  const reader = new FrameReader(1 << 20, 1 << 20)
  const [f] = reader.push(encodeFrame(7, new Uint8Array(MAX_FRAME_HEADER).fill(32), new Uint8Array([1, 2])).subarray())
  t.is(f!.header.length, MAX_FRAME_HEADER)
  t.deepEqual([...f!.data!], [1, 2])
  const err = t.throws(() => encodeFrame(7, new Uint8Array(MAX_FRAME_HEADER + 1)), { message: /header of 65536 bytes is over the 65535 a frame can carry/ })
  t.true(isGvsError(err, 'invalid'))
})

test('the old list answer of 6000 objects (82 KB of header) is refused, not sent cut', t => {
  const h = held(6000)
  const header = encode({ ok: true, indexes: h.map(o => o.index), versions: h.map(o => [o.version.epoch, o.version.seq]) })
  t.true(header.length > MAX_FRAME_HEADER)
  t.throws(() => encodeFrame(1, header), { message: /over the 65535/ })
})

test('a list asked in pages: any number of objects, every page a valid frame, the entries and versions as held', t => {
  const objectSize = 64 * 1024
  const all = held(20_000)
  const got: Listed[] = []
  let pages = 0
  for (let from: number | undefined = 0; from != null; pages++) {
    const { reply, data } = answerList(all, { volume: 'v', from }, objectSize)
    // through a real frame and reader, as a reply travels
    const [f] = new FrameReader(objectSize + 4096 + 64, 1 << 20).push(encodeFrame(9, encode(reply), data).subarray())
    const r = decodeReply(f!.header)
    if (!r.ok) throw new Error('not ok')
    got.push(...decodeList(f!.data, r.count!))
    t.true(r.more == null || r.more > from, 'each page moves on')
    from = r.more
  }
  t.is(pages, Math.ceil(20_000 / listPage(objectSize)))
  t.deepEqual(got, all)
  // a limit below the page size, and a start past some entries
  const { reply, data } = answerList(all, { volume: 'v', from: 19_990, limit: 4 }, objectSize)
  t.deepEqual(decodeList(data, reply.count!).map(o => o.index), [19_990, 19_991, 19_992, 19_993])
  t.is(reply.more, 19_994)
  const last = answerList(all, { volume: 'v', from: 19_996 }, objectSize)
  t.is(last.reply.count, 4)
  t.is(last.reply.more, undefined, 'the last page says there is no more')
  t.is(answerList([], { volume: 'v', from: 0 }, objectSize).data, null)
})

test('a list asked the old way: the whole list in the header when it fits, else an error naming the way to ask', t => {
  const small = answerList(held(3), { volume: 'v' }, 64 * 1024)
  t.deepEqual(small.reply, { ok: true, indexes: [0, 1, 2], versions: [[3, 100], [3, 101], [3, 102]] })
  t.is(small.data, null)
  const err = t.throws(() => answerList(held(6000), { volume: 'v' }, 64 * 1024), { message: /"v" has 6000 objects here: .* ask with \{from, limit\}/ })
  t.true(isGvsError(err, 'invalid'))
})

test('a list page whose data does not match its count, or carries a version that is not a whole number, is rejected', t => {
  const { data } = answerList(held(2), { volume: 'v', from: 0 }, 64 * 1024)
  t.throws(() => decodeList(data, 3), { message: /3 entries came with 40 bytes/ })
  const bad = data!.slice()
  new DataView(bad.buffer).setFloat64(4, 1.5)
  t.throws(() => decodeList(bad, 2), { message: /version 1.5/ })
})

test('listObjects asks page after page; an agent of an earlier release, which ignores `from`, answers once with the whole list', async t => {
  const { listObjects } = await import('../../node/gvs/replication.ts')
  const all = held(10_000)
  const asked: unknown[] = []
  const paged = { self: 'a', call: async (_: string, req: ReplicaRequest) => { asked.push(req); return answerList(all, req as never, 64 * 1024) } }
  t.deepEqual(await listObjects(paged, 'b', 'v'), all)
  t.deepEqual(asked.map(r => (r as { from: number }).from), [0, 3276, 6552, 9828])
  const old = { self: 'a', call: async () => ({ reply: { ok: true as const, indexes: [4, 9], versions: [[2, 5]] as Array<[number, number]> }, data: null }) }
  t.deepEqual(await listObjects(old, 'b', 'v'), [{ index: 4, version: { epoch: 2, seq: 5 } }, { index: 9, version: { epoch: 0, seq: 0 } }], 'a missing version is the oldest')
  const stuck = { self: 'a', call: async () => ({ reply: { ok: true as const, count: 0, more: 0 }, data: null }) }
  await t.throwsAsync(listObjects(stuck, 'b', 'v'), { message: /went back from 0 to 0/ })
})
