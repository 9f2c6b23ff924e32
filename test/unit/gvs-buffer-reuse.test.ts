// Payloads that arrive in pieces are joined into pooled buffers (buffer-pool.ts), given
// back once written; a buffer a replica request sent but never got an answer for may
// still sit in a stream's send queue, so it must never be handed out again.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { streamPair } from '@libp2p/utils'
import { BufferPool, readBuffers } from '../../node/gvs/buffer-pool.ts'
import { FrameReader, encodeFrame } from '../../node/gvs/replica-frames.ts'
import { PeerChannel } from '../../node/gvs/replica-channel.ts'

const KiB = 1024

test('a kept buffer is never taken back; a given one is reused', t => {
  const pool = new BufferPool()
  const a = pool.take(256 * KiB)
  pool.give(a)
  t.is(pool.take(256 * KiB).buffer, a.buffer, 'given back: reused')
  const b = pool.take(256 * KiB)
  pool.keep(b)
  pool.give(b)
  t.not(pool.take(256 * KiB).buffer, b.buffer, 'kept: never handed out again')
})

test('frame data in one piece is that piece; data over several is one pooled copy', t => {
  const payload = randomBytes(200 * KiB)
  const frame = encodeFrame(7, new TextEncoder().encode('{"op":"write"}'), payload).subarray()
  const whole = new FrameReader(1 << 20, 4096).push(frame)[0]!
  t.is(whole.data!.buffer, frame.buffer, 'no copy of a frame that came in one piece')
  const reader = new FrameReader(1 << 20, 4096)
  t.deepEqual(reader.push(frame.subarray(0, 70 * KiB)), [])
  const [f] = reader.push(frame.subarray(70 * KiB))
  t.true(Buffer.from(f!.data!).equals(payload))
  readBuffers.give(f!.data!)
  t.is(readBuffers.take(f!.data!.length).buffer, f!.data!.buffer, 'the copy came from the pool and goes back to it')
})

test('a request that ends unanswered keeps its data out of the pool', async t => {
  const [near] = await streamPair()
  // the far end never answers
  const channel = new PeerChannel({ dialProtocol: async () => near } as never, '12D3KooWLRPJAA5o6YEvBnfKM6ZzR8Yx7L8jS9hFfVrWfGgVqkbM', { protocol: '/test', timeoutMs: 100, objectSize: 4 * KiB * KiB })
  const data = readBuffers.take(64 * KiB)
  await t.throwsAsync(channel.request({ op: 'write', volume: 'v', index: 0, offset: 0, epoch: 1 } as never, data), { message: /did not answer write/ })
  readBuffers.give(data)
  const next = readBuffers.take(64 * KiB)
  t.not(next.buffer, data.buffer, 'a timed-out write\'s buffer is not handed out again')
  channel.close('test done')
})
