// A node that every member dialled (the join address in everyone's token) sheds the
// connections it does not use once it is far above its peer budget, and keeps those
// that carry something (heartbeat partners, the gossip mesh, sync sessions).
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { Dialer } from '../protocol/dialer.ts'

const N = 36

test(`a hub dialled by ${N} peers trims back to its budget and keeps the connections in use`, async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  t.teardown(async () => { await Promise.all(hosts.map(async h => await h.stop())) })
  const run = `trim${process.pid}`
  for (let i = 0; i < N + 1; i++) {
    hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${run}-${i}`], mdns: false, transport: 'memory' }))
  }
  const [hub, ...spokes] = hosts as [VgridHost, ...VgridHost[]]
  await Promise.all(spokes.map(async h => await h.dial(hub.getMultiaddrs()[0]!)))
  const connectedToHub = (): number => new Set(hub.getConnections().map(c => c.remotePeer.toString())).size
  t.is(connectedToHub(), N)

  // five spokes are "in use" (say, heartbeat partners)
  const keep = new Set(spokes.slice(0, 5).map(h => h.peerId.toString()))
  // (connections are trimmed only once 30 s old by default; here at once)
  const dialer = new Dialer({ host: hub, keep: () => keep, targetPeers: 16, tickMs: 100, trimMinAgeMs: 0 })
  t.teardown(() => { dialer.stop() })
  dialer.start()
  const deadline = Date.now() + 10_000
  while (connectedToHub() > 16 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  t.is(connectedToHub(), 16, 'trimmed down to the budget')
  const left = new Set(hub.getConnections().map(c => c.remotePeer.toString()))
  t.true([...keep].every(p => left.has(p)), 'every connection in use survived')
  // below the high-water mark nothing more goes
  await new Promise(resolve => setTimeout(resolve, 500))
  t.is(connectedToHub(), 16)
})
