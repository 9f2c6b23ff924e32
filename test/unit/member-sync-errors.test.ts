// Member sync counts only a peer's bad input as a rejected message (onError, counted as
// vgrid_gossip_rejected_total{topic="member-sync",reason="malformed"}): an exchange cut
// short by the network (a peer restarting, a timeout) is no rejection. A grid whose
// peers were only restarted counted 16 "malformed" messages.
import test from 'ava'
import { lpStream, streamPair } from '@libp2p/utils'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { isBadInput, MalformedSyncMessage, MemberSync, parseSyncMessage } from '../../protocol/member-sync.ts'

const ME = '12D3KooWLRPJAA5o6YEvBnfKM6ZzR8Yx7L8jS9hFfVrWfGgVqkbM'
const PEER = '12D3KooWRZcJuvzRhWwPkgFBvuUtwp2WKnUpfLpAkJqxfHHWyDt4'

/** a MemberSync on a host whose dial gives `dial()`'s stream (or its error), with what it reported */
function syncWith (dial: () => Promise<Stream>): { sync: MemberSync, errors: Error[], streamErrors: Error[], handler: () => ((s: Stream, c: unknown) => void) } {
  const errors: Error[] = []
  const streamErrors: Error[] = []
  let handler: ((s: Stream, c: unknown) => void) | undefined
  const host = {
    peerId: peerIdFromString(ME),
    dialProtocol: dial,
    handle: async (_p: string, h: (s: Stream, c: unknown) => void) => { handler = h },
    unhandle: async () => {},
    addEventListener: () => {},
    removeEventListener: () => {},
    getConnections: () => []
  }
  const sync = new MemberSync({
    host: host as never,
    protocol: '/test/members/1',
    adverts: () => [],
    onAdverts: () => {},
    onError: (_peer, err) => { errors.push(err) },
    onStreamError: (_peer, err) => { streamErrors.push(err) }
  })
  return { sync, errors, streamErrors, handler: () => handler! }
}

const peer: PeerId = peerIdFromString(PEER)

test('isBadInput: malformed messages and broken frames are bad input; timeouts, resets and EOF are not', t => {
  t.true(isBadInput(new MalformedSyncMessage('x')))
  t.true(isBadInput(Object.assign(new Error('Message length too long'), { name: 'InvalidDataLengthError' })))
  t.true(isBadInput(Object.assign(new Error('Invalid message length'), { name: 'InvalidMessageLengthError' })))
  for (const name of ['TimeoutError', 'AbortError', 'UnexpectedEOFError', 'StreamResetError', 'StreamClosedError', 'Error']) {
    t.false(isBadInput(Object.assign(new Error(name), { name })), name)
  }
  t.false(isBadInput(undefined))
})

test('parseSyncMessage throws MalformedSyncMessage for any bad input (not JSON, not UTF-8, a broken field)', t => {
  const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
  for (const [data, want] of [[bytes('{nope'), ['digest']], [new Uint8Array([0xff]), ['digest']], [bytes('[1]'), ['digest']], [bytes('{"digest":{}}'), ['adverts']]] as const) {
    t.throws(() => parseSyncMessage(data, want), { instanceOf: MalformedSyncMessage })
  }
})

test('a peer that goes away during an exchange (a restart) is not counted as malformed', async t => {
  const [near, far] = await streamPair()
  const { sync, errors, streamErrors } = syncWith(async () => near)
  // the peer reads the digest, then its agent stops: the stream is reset
  const farLp = lpStream(far)
  const done = sync.exchange(peer)
  await farLp.read()
  far.abort(new Error('peer restarting'))
  await done
  t.deepEqual(errors, [], 'no rejection')
  t.is(streamErrors.length, 1, 'said as a stream error')
})

test('a dial that fails or times out is not counted as malformed', async t => {
  const { sync, errors, streamErrors } = syncWith(async () => { throw Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }) })
  await sync.exchange(peer)
  t.deepEqual(errors, [])
  t.is(streamErrors.length, 1)
})

test('a peer that answers with something that is not a member-sync message is counted as malformed', async t => {
  const [near, far] = await streamPair()
  const { sync, errors, streamErrors } = syncWith(async () => near)
  const farLp = lpStream(far)
  const done = sync.exchange(peer)
  await farLp.read()
  await farLp.write(new TextEncoder().encode('not json'))
  await done
  t.is(errors.length, 1)
  t.true(errors[0] instanceof MalformedSyncMessage)
  t.deepEqual(streamErrors, [])
})

test('answering side: a dialler that hangs up before its last message is not malformed; one that sends junk is', async t => {
  const { sync, errors, streamErrors, handler } = syncWith(async () => { throw new Error('not dialled') })
  await sync.start()
  const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 50)) }

  const [near, far] = await streamPair()
  handler()(far, { remotePeer: peer })
  const lp = lpStream(near)
  await lp.write(new TextEncoder().encode(JSON.stringify({ digest: {} })))
  await lp.read()
  near.abort(new Error('dialler restarting'))
  await settle()
  t.deepEqual(errors, [], 'a hang-up is no rejection')
  t.is(streamErrors.length, 1)

  const [near2, far2] = await streamPair()
  handler()(far2, { remotePeer: peer })
  await lpStream(near2).write(new TextEncoder().encode('{"digest": 5}'))
  await settle()
  t.is(errors.length, 1, 'a broken digest is')
  t.regex(errors[0]!.message, /digest is not an object/)
})
