// Heartbeat watches time a neighbour's silence. Timed with Date.now, a wall clock
// stepped back by minutes hid every silence that began after it for as long: a holder
// cut off from the majority kept seeing its neighbours alive and fenced late, while the
// majority took its VMs over after fence timeout + margin (the VM ran twice).
// heartbeat.ts times `last`, `lastTick`, `rested` and the stall check with
// protocol/mono-clock.ts's monoNow (frames keep the wall clock: other nodes read it).
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { Heartbeats } from '../protocol/heartbeat.ts'
import { waitFor } from './helpers/agent-process.ts'

const realNow = Date.now

test('a wall clock stepped back does not delay noticing a neighbour\'s silence', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const beats: Heartbeats[] = []
  t.teardown(async () => {
    Date.now = realNow
    await Promise.all(beats.map(async b => { await b.stop() }))
    await Promise.all(hosts.map(async h => { await h.stop() }))
  })
  const silent: string[] = []
  for (const name of ['watcher', 'sender']) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/hbstep-${process.pid}-${name}`], mdns: false, transport: 'memory' })
    hosts.push(host)
    beats.push(new Heartbeats({
      host,
      protocol: '/test/heartbeat/1',
      intervalMs: 100,
      timeoutMs: 500,
      watchers: 1,
      version: () => ({ incarnation: 1, seq: 1 }),
      onBeat: () => {},
      onSilent: peer => { silent.push(peer) },
      onLost: () => {}
    }))
  }
  await Promise.all(beats.map(async b => { await b.start() }))
  const [watcher, sender] = beats as [Heartbeats, Heartbeats]
  await hosts[1]!.dial(hosts[0]!.getMultiaddrs()[0]!)
  const senderId = hosts[1]!.peerId.toString()
  await waitFor(() => watcher.watchedPeers.has(senderId), 10_000, 'the watcher watches the sender')
  await new Promise(resolve => setTimeout(resolve, 300))
  Date.now = () => realNow.call(Date) - 10 * 60_000
  // the sender falls silent, its connection stays (a hung process, a one-way cut)
  await sender.stop()
  await waitFor(() => silent.includes(senderId), 10_000, 'the watcher notices the silence')
  t.pass()
})
