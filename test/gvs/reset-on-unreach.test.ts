// A replica peer found out of reach has this node's connections to it reset, not
// closed: a closed socket keeps sending what its queue holds once the network is back,
// so a write stuck there during a cut could land after newer writes of the same blocks
// (made again through the live copies meanwhile) and put old data over them on that
// copy. A reset drops the queue (protocol/reset-connections.ts).
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { resetConnections } from '../../protocol/reset-connections.ts'
import { silentLogger } from '../../node/log.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { REPLICA_PROTOCOL } from '../../node/gvs/replica-protocol.ts'

test('a replica peer whose calls wait unanswered and that answers no ping has its connections reset as its calls fail', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-reset-'))
  const clusterKey = generateClusterKey()
  const tag = `gvsreset${process.pid}`
  const a = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-a`], mdns: false, transport: 'memory' })
  const b = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-b`], mdns: false, transport: 'memory' })
  const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, 'a') })
  await store.start()
  // b takes the streams and never answers: a cut, as seen from a's calls
  await b.handle(REPLICA_PROTOCOL, () => {})
  await a.dial(b.getMultiaddrs()[0]!)
  const bId = b.peerId.toString()
  const resets: Array<{ peer: string, why: string, connections: number }> = []
  const svc = new ReplicaService({
    host: a,
    store,
    log: silentLogger,
    ping: async () => { throw new Error('no answer') },
    resetConnections: (peer, why) => { resets.push({ peer, why, connections: resetConnections(a, peer, why) }) }
  }, { timeoutMs: 60_000 })
  await svc.start()
  t.teardown(async () => { await svc.stop(); await a.stop(); await b.stop(); await store.stop(); await rm(dir, { recursive: true, force: true }) })

  const started = Date.now()
  const err = await t.throwsAsync(svc.call(bId, { op: 'flush' }))
  t.log(`the call failed after ${Date.now() - started} ms: ${err?.message}`)
  t.regex(err?.message ?? '', /out of reach/)
  t.is(resets[0]?.peer, bId)
  t.regex(resets[0]?.why ?? '', /out of reach/)
  t.is(resets[0]?.connections, 1, 'the connection to it was reset')
  t.is(a.getConnections(b.peerId).length, 0, 'no connection to it is left')
})
