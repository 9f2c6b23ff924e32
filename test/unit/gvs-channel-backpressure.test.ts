// A replica peer that does not read what it is sent gets its stream reset; it does not
// make this node queue without bound (yamux's own send queue has no limit). Both ends,
// on real libp2p hosts (memory transport, yamux): the answering end fed read requests
// whose answers are never taken, and the calling end whose requests time out against a
// peer that stopped reading (each left its data in the stream's send queue).
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute } from '../../node/gvs/replication.ts'
import { PeerChannel, serveChannel, sendQueueBound } from '../../node/gvs/replica-channel.ts'
import { encodeFrame } from '../../node/gvs/replica-frames.ts'
import { encode, type ReplicaRequest } from '../../node/gvs/replica-protocol.ts'
import { silentLogger } from '../../node/log.ts'

const OBJECT = 64 * 1024
const PROTOCOL = '/vgrid-test/replica-backpressure/1'
let seq = 0

async function hosts (t: ExecutionContext): Promise<[VgridHost, VgridHost]> {
  const clusterKey = generateClusterKey()
  const tag = `gvs-bp${process.pid}-${seq++}`
  const hs: VgridHost[] = []
  t.teardown(async () => { for (const h of hs) await h.stop() })
  for (let i = 0; i < 2; i++) hs.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-${i}`], mdns: false, transport: 'memory' }))
  await hs[0]!.dial(hs[1]!.getMultiaddrs()[0]!)
  return [hs[0]!, hs[1]!]
}

/** an object store of small objects, gone after the test */
async function smallStore (t: ExecutionContext): Promise<ObjectStore> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-bp-'))
  const store = new ObjectStore({ log: silentLogger }, { dir, objectSize: OBJECT })
  await store.start()
  t.teardown(async () => { await store.stop(); await rm(dir, { recursive: true, force: true }) })
  return store
}

/** a stream end that takes in nothing: its reader is paused, and it never gives up on what piles up */
function neverReads (s: Stream): void {
  s.maxReadBufferLength = Infinity
  s.pause()
}

test('the answering end: a peer asking for reads it never takes gets its stream reset, the queue stays bounded', async t => {
  const [a, b] = await hosts(t)
  const store = await smallStore(t)
  let served = null as Stream | null
  let ran = 0
  let peak = 0
  const failures: string[] = []
  await b.handle(PROTOCOL, stream => {
    served = stream
    serveChannel(stream, {
      objectSize: OBJECT,
      maxRequests: 1024,
      run: async (req, data) => {
        const r = await execute(store, req, data)
        peak = Math.max(peak, stream.writeBufferLength)
        ran++
        return r
      },
      failed: err => { failures.push(err.message) }
    })
  })
  const s = await a.dialProtocol(b.peerId, PROTOCOL)
  neverReads(s)
  const reset = new Promise<void>(resolve => { s.addEventListener('close', () => { resolve() }) })
  const n = 1000 // 1000 answers of 64 KiB: about twice the bound
  for (let i = 0; i < n && served?.status !== 'aborted'; i++) {
    const req: ReplicaRequest = { op: 'read', volume: 'shop-db', index: i % 16, offset: 0, length: OBJECT }
    s.send(encodeFrame(i + 1, encode(req)))
    // asked as a caller asks, a few at a time (more at once is refused by itself: the next test)
    if (i % 32 === 31) while (ran < i - 32 && served?.status === 'open') await new Promise(resolve => setTimeout(resolve, 2))
  }
  while (ran < n && served?.status === 'open') await new Promise(resolve => setTimeout(resolve, 10))
  // the answers already run are queued (in batches, a turn later)
  for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve))
  peak = Math.max(peak, served!.writeBufferLength)
  t.not(served!.status, 'open', `the stream is reset (${ran} of ${n} answered, ${served!.writeBufferLength} bytes queued)`)
  t.true(peak <= sendQueueBound(OBJECT) + OBJECT, `at most ${peak} bytes of answers were queued`)
  t.true(failures.some(f => /does not read its answers: stream reset/.test(f)), failures.join('; '))
  await reset // and the peer learns of it
  t.not(s.status, 'open')
})

test('the calling end: requests timing out against a peer that stopped reading reset the stream instead of piling up', async t => {
  const [a, b] = await hosts(t)
  await b.handle(PROTOCOL, stream => { neverReads(stream) })
  const streams: Stream[] = []
  const host = {
    dialProtocol: async (...args: Parameters<VgridHost['dialProtocol']>) => {
      const s = await a.dialProtocol(...args)
      streams.push(s)
      return s
    }
  }
  const limits = { maxRequests: 64, maxBytes: 16 * OBJECT }
  const channel = new PeerChannel(host as never, b.peerId.toString(), { protocol: PROTOCOL, timeoutMs: 150, objectSize: OBJECT, limits })
  t.teardown(() => { channel.close('test done') })
  const bound = sendQueueBound(OBJECT, limits.maxBytes)
  let peak = 0
  const errors: string[] = []
  for (let round = 0; round < 12 && streams[0]?.status !== 'aborted'; round++) {
    const writes = Array.from({ length: 16 }, async (_, i) => {
      const req: ReplicaRequest = { op: 'write', volume: 'shop-db', index: i, offset: 0, epoch: 1, fua: false }
      await channel.request(req, new Uint8Array(OBJECT))
    })
    await new Promise(resolve => setImmediate(resolve))
    peak = Math.max(peak, ...streams.map(s => s.writeBufferLength))
    for (const r of await Promise.allSettled(writes)) if (r.status === 'rejected') errors.push(String(r.reason.message))
  }
  t.is(streams[0]?.status, 'aborted', `the stream to the stalled peer is reset (${streams[0]?.writeBufferLength} bytes queued)`)
  t.true(peak <= bound, `at most ${peak} bytes queued (bound ${bound})`)
  t.true(errors.some(e => /stream closed \(.*Write buffer length/.test(e)), 'the requests on it failed as closed: the caller may retry on a new stream')
})

test('the answering end: a peer asking for more at once than any caller keeps in flight gets its stream reset before the answers are made', async t => {
  const [a, b] = await hosts(t)
  const store = await smallStore(t)
  let served = null as Stream | null
  let ran = 0
  const failures: string[] = []
  await b.handle(PROTOCOL, stream => {
    served = stream
    serveChannel(stream, { objectSize: OBJECT, maxRequests: 1024, run: async (req, data) => { ran++; return await execute(store, req, data) }, failed: err => { failures.push(err.message) } })
  })
  const s = await a.dialProtocol(b.peerId, PROTOCOL)
  // 1000 reads of 64 KiB in one go: about twice what a caller keeps in flight
  const frames = Array.from({ length: 1000 }, (_, i) => encodeFrame(i + 1, encode({ op: 'read', volume: 'shop-db', index: i % 16, offset: 0, length: OBJECT } satisfies ReplicaRequest)))
  for (const f of frames) s.send(f)
  while (served?.status === 'open' && ran < 1000) await new Promise(resolve => setTimeout(resolve, 5))
  t.not(served!.status, 'open')
  t.true(ran * OBJECT <= sendQueueBound(OBJECT) + OBJECT, `${ran} reads were made (${ran * OBJECT} bytes)`)
  t.true(failures.some(f => /asked for more than \d+ bytes at once/.test(f)), failures.join('; '))
})
