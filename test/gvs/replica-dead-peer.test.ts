// A replica whose agent stops (SIGSTOP, a hung host) keeps its connections open: a
// request in flight to it was answered only when it came back, however long, and held
// the writer's request with it (a black-box tester's finding: writes waited 58 s behind
// an agent stopped for 58 s). Once membership finds the node dead, the requests in
// flight to it fail at once, retryable, and no new one dials it (replication.ts
// dropPeer, isLive). Two libp2p hosts on the memory transport; the "stopped" peer takes
// replica streams and never answers.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { memoryHosts } from './hosts.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { REPLICA_PROTOCOL } from '../../node/gvs/replica-protocol.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

test('requests in flight to a peer found dead fail at once, retryable; no new request dials it', async t => {
  const g = await memoryHosts(t, 2, 'gvsdeadpeer')
  const [a, b] = g.hosts as [typeof g.hosts[0], typeof g.hosts[0]]
  // b takes replica streams and never answers: an agent stopped mid-write
  await b.handle(REPLICA_PROTOCOL, () => {}, { maxInboundStreams: 256, maxOutboundStreams: 256 })
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-deadpeer-'))
  const store = new ObjectStore({ log: silentLogger }, { dir })
  await store.start()
  let live = true
  const svc = new ReplicaService({ host: a, store, log: silentLogger, isLive: () => live }, { timeoutMs: 60_000 })
  await svc.start()
  t.teardown(async () => { await svc.stop(); await store.stop(); await rm(dir, { recursive: true, force: true }) })
  const peer = b.peerId.toString()
  const req = { op: 'write' as const, volume: 'v', index: 0, offset: 0, epoch: 1, seq: 1, fua: false }
  const inFlight = svc.call(peer, req, new Uint8Array(4096))
  const outcome = inFlight.then(() => 'answered', (err: unknown) => err)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.is(await Promise.race([outcome, Promise.resolve('waiting')]), 'waiting', 'the stopped peer does not answer')
  // membership finds it dead
  live = false
  const started = performance.now()
  svc.dropPeer(peer)
  const err = await outcome
  t.true(err instanceof GvsError && err.code === 'unavailable' && err.transient, String(err))
  t.true(performance.now() - started < 1000, 'failed at once, not after the request\'s timeout')
  const next = performance.now()
  await t.throwsAsync(svc.call(peer, req, new Uint8Array(4096)), { message: /is not live/ })
  t.true(performance.now() - next < 1000, 'no dial to the dead peer')
})
