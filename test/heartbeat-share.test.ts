// Every node that joins through the same address first picks it as a watcher (it is
// the only peer it has). The join address declines past its share, and the others
// find watchers elsewhere without anyone being suspected.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { Heartbeats } from '../protocol/heartbeat.ts'

const SPOKES = 8

test('a join address watches at most its share, and every node still gets its watchers', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const beats: Heartbeats[] = []
  t.teardown(async () => {
    await Promise.all(beats.map(async b => await b.stop()))
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  const run = `hbshare${process.pid}`
  const alarms: string[] = []
  for (let i = 0; i <= SPOKES; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${run}-${i}`], mdns: false, transport: 'memory' })
    hosts.push(host)
    beats.push(new Heartbeats({
      host,
      protocol: '/test/heartbeat/1',
      intervalMs: 100,
      timeoutMs: 1000,
      watchers: 2,
      maxWatched: 3,
      version: () => ({ incarnation: 1, seq: 1 }),
      onBeat: () => {},
      onSilent: peer => { alarms.push(`silent ${peer}`) },
      onLost: peer => { alarms.push(`lost ${peer}`) }
    }))
  }
  await Promise.all(beats.map(async b => { await b.start() }))
  const [hub, ...spokes] = hosts as [VgridHost, ...VgridHost[]]
  // first every spoke knows only the hub, then they find each other (a ring)
  await Promise.all(spokes.map(async h => await h.dial(hub.getMultiaddrs()[0]!)))
  await new Promise(resolve => setTimeout(resolve, 500))
  await Promise.all(spokes.map(async (h, i) => await h.dial(spokes[(i + 1) % spokes.length]!.getMultiaddrs()[0]!)))

  const watchersOf = (h: VgridHost): number => beats.filter(b => b !== beats[hosts.indexOf(h)] && b.watchedPeers.has(h.peerId.toString())).length
  const deadline = Date.now() + 10_000
  while (spokes.some(h => watchersOf(h) < 2) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  t.true(beats[0]!.watching <= 3, `the hub watches ${beats[0]!.watching} peers`)
  t.deepEqual(spokes.map(watchersOf), spokes.map(() => 2), 'every spoke has two watchers')
  t.deepEqual(alarms, [], 'nobody was suspected')
})
