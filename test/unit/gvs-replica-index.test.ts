// An object index from a peer is at most 2^32-1: the store names objects with 8 hex
// digits and a list page carries indexes as u32, so a larger one would be stored where
// no list finds it (and a list would report it wrapped). It is refused as 'invalid'.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { streamPair } from '@libp2p/utils'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute } from '../../node/gvs/replication.ts'
import { PeerChannel, serveChannel } from '../../node/gvs/replica-channel.ts'
import { MAX_INDEX, decodeRequest, encode } from '../../node/gvs/replica-protocol.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const PEER = '12D3KooWLRPJAA5o6YEvBnfKM6ZzR8Yx7L8jS9hFfVrWfGgVqkbM'
const OBJECT = 64 * 1024

test('the request schema takes indexes up to 2^32-1 and refuses larger ones', t => {
  for (const op of ['get', 'verify', 'remove', 'stat'] as const) {
    t.is(decodeRequest(encode({ op, volume: 'v', index: MAX_INDEX })).op, op)
    const err = t.throws(() => decodeRequest(encode({ op, volume: 'v', index: MAX_INDEX + 1 })))
    t.true(isGvsError(err) && err.code === 'invalid', op)
  }
  t.throws(() => decodeRequest(encode({ op: 'write', volume: 'v', index: 2 ** 40, offset: 0, epoch: 1, fua: false })), { message: /rejected/ })
})

test('a peer writing object 2^32 gets an invalid answer, and nothing is stored', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-index-'))
  const store = new ObjectStore({ log: silentLogger }, { dir, objectSize: OBJECT })
  await store.start()
  t.teardown(async () => { await store.stop(); await rm(dir, { recursive: true, force: true }) })
  const [near, far] = await streamPair()
  const channel = new PeerChannel({ dialProtocol: async () => near } as never, PEER, { protocol: '/test', timeoutMs: 10_000, objectSize: OBJECT })
  t.teardown(() => { channel.close('test done') })
  serveChannel(far, { objectSize: OBJECT, maxRequests: 16, run: async (req, data) => await execute(store, req, data), failed: () => {} })
  const err = await t.throwsAsync(channel.request({ op: 'write', volume: 'v', index: 2 ** 32, offset: 0, epoch: 1, fua: false }, new Uint8Array(4096).fill(7)))
  t.true(isGvsError(err) && err.code === 'invalid', String(err))
  t.deepEqual(await store.list('v'), [], 'no object stored under a name a list cannot show')
  // the stream goes on: the largest index is taken
  await channel.request({ op: 'write', volume: 'v', index: MAX_INDEX, offset: 0, epoch: 1, fua: false }, new Uint8Array(4096).fill(7))
  t.deepEqual(await store.list('v'), [MAX_INDEX])
})
