// A PeerChannel reopens its stream after the old one went away; the old stream's own
// `close` event can come later (a half-close first, the reset after). That late event
// must fail only what was sent on the old stream, never the requests on the new one.
import test from 'ava'
import { streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { PeerChannel, serveChannel, type CallResult } from '../../node/gvs/replica-channel.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'

const PEER = '12D3KooWLRPJAA5o6YEvBnfKM6ZzR8Yx7L8jS9hFfVrWfGgVqkbM'
const flush: ReplicaRequest = { op: 'flush' }

test('a late close of the old stream fails only the requests sent on it, not those on the new stream', async t => {
  const [near1, far1] = await streamPair()
  const [near2, far2] = await streamPair()
  const dials: Stream[] = [near1, near2]
  const channel = new PeerChannel({ dialProtocol: async () => dials.shift()! } as never, PEER, { protocol: '/test', timeoutMs: 10_000, objectSize: 64 * 1024 })
  t.teardown(() => { channel.close('test done') })

  // the first far end never answers; the second answers when told to
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  serveChannel(far2, {
    objectSize: 64 * 1024,
    maxRequests: 16,
    run: async (): Promise<CallResult> => { await held; return { reply: { ok: true }, data: null } },
    failed: () => {}
  })

  const first = channel.request(flush)
  const firstDone = first.then(() => 'answered', (e: Error) => e.message)
  await new Promise(resolve => setTimeout(resolve, 20))
  // the peer half-closes the first stream: the channel stops using it and fails what it carried
  void far1.close().catch(() => {})
  t.regex(await firstDone, /stream closed/, 'the request on the old stream fails (retryable)')

  const second = channel.request(flush)
  const secondDone = second.then(() => 'answered', (e: Error) => e.message)
  await new Promise(resolve => setTimeout(resolve, 20))
  t.is(dials.length, 0, 'the second request went on a new stream')
  // now the old stream's close arrives, late
  const closed = new Promise<void>(resolve => { near1.addEventListener('close', () => { resolve() }, { once: true }) })
  near1.abort(new Error('old stream reset'))
  await closed
  await new Promise(resolve => setTimeout(resolve, 20))
  release()
  t.is(await secondDone, 'answered', 'the request on the new stream is answered')
})
