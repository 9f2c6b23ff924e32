// An answer whose header would not fit in a frame (over 64 KiB) fails that request
// alone, with a clear error; the stream, and the other requests on it, go on.
import test from 'ava'
import { streamPair } from '@libp2p/utils'
import { PeerChannel, serveChannel, type CallResult } from '../../node/gvs/replica-channel.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'

const PEER = '12D3KooWLRPJAA5o6YEvBnfKM6ZzR8Yx7L8jS9hFfVrWfGgVqkbM'

test('an answer too large for a frame header fails alone; the stream goes on', async t => {
  const [near, far] = await streamPair()
  let dials = 0
  const channel = new PeerChannel({ dialProtocol: async () => { dials++; return near } } as never, PEER, { protocol: '/test', timeoutMs: 10_000, objectSize: 64 * 1024 })
  t.teardown(() => { channel.close('test done') })
  serveChannel(far, {
    objectSize: 64 * 1024,
    maxRequests: 16,
    // a verify answer listing 20000 bad blocks: about 120 KB of header
    run: async (req): Promise<CallResult> => ({ reply: req.op === 'verify' ? { ok: true, bad: Array.from({ length: 20_000 }, (_, i) => 100_000 + i) } : { ok: true }, data: null }),
    failed: () => {}
  })
  const big: ReplicaRequest = { op: 'verify', volume: 'v', index: 0 }
  const [a, b] = await Promise.allSettled([channel.request(big), channel.request({ op: 'flush' })])
  t.is(a.status, 'rejected')
  t.regex((a as PromiseRejectedResult).reason.message, /over the 65535 a frame can carry/)
  t.is(b.status, 'fulfilled', 'the request beside it is answered')
  t.is((await channel.request({ op: 'flush' })).reply.ok, true)
  t.is(dials, 1, 'on the same stream throughout')
})
