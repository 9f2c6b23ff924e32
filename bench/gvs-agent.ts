// One replica agent of the GVS benchmark in its own process, as on its own server: a
// libp2p host on loopback TCP (pnet, Noise, yamux, as every agent) with an object store
// and the replica service, and nothing else. bench/gvs.ts starts it, reads one JSON
// line {id, addr}, and writes "dial <multiaddr>" lines to its stdin; the agent exits
// when stdin closes or on SIGTERM (the benchmark SIGKILLs one to test repair).
//   VGRID_BENCH_KEY=<cluster key hex> VGRID_BENCH_DIR=<store dir> node bench/gvs-agent.ts
import { createInterface } from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../protocol/host.ts'
import { clusterKeyFromHex } from '../protocol/cluster-key.ts'
import { ObjectStore } from '../node/gvs/object-store.ts'
import { ReplicaService } from '../node/gvs/replication.ts'
import { silentLogger } from '../node/log.ts'

const key = process.env.VGRID_BENCH_KEY
const dir = process.env.VGRID_BENCH_DIR
if (key == null || dir == null) {
  console.error('gvs-agent: VGRID_BENCH_KEY (cluster key, hex) and VGRID_BENCH_DIR (store directory) must be set')
  process.exit(2)
}
const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: clusterKeyFromHex(key), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, transport: 'tcp' })
const store = new ObjectStore({ log: silentLogger }, { dir })
await store.start()
const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 120_000 })
await svc.start()

let stopping = false
async function stop (): Promise<void> {
  if (stopping) return
  stopping = true
  await svc.stop()
  await host.stop()
  await store.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', () => { void stop() })

const lines = createInterface({ input: process.stdin })
lines.on('line', line => {
  const m = /^dial (\S+)$/.exec(line.trim())
  if (m == null) return
  void host.dial(multiaddr(m[1]!)).then(() => { process.stdout.write('dialled\n') }, (err: Error) => { process.stdout.write(`dial failed: ${err.message}\n`) })
})
lines.on('close', () => { void stop() })
process.stdout.write(JSON.stringify({ id: host.peerId.toString(), addr: host.getMultiaddrs()[0]!.toString() }) + '\n')
