// Many members behind one IP address (a site behind NAT, or every test on loopback):
// gossipsub's IP-colocation penalty would score peers past the tenth one on an address
// below the graylist and silently drop their messages. vgrid turns it off (only
// cluster-key holders connect at all); this checks that gossip from every one of 20
// hosts on 127.0.0.1 reaches a listener.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'

const N = 20

test(`gossip from ${N} hosts on one IP address is all delivered`, async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  t.teardown(async () => { await Promise.all(hosts.map(async h => await h.stop())) })
  for (let i = 0; i < N; i++) hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false }))
  const [listener, ...senders] = hosts as [VgridHost, ...VgridHost[]]
  for (const h of hosts) h.services.pubsub.subscribe('t')
  // every sender is connected straight to the listener
  await Promise.all(senders.map(async h => await h.dial(listener.getMultiaddrs()[0]!)))
  const heard = new Set<string>()
  listener.services.pubsub.addEventListener('message', evt => { heard.add(evt.detail.type === 'signed' ? evt.detail.from.toString() : '') })
  // wait until the listener knows every sender's subscription (and a gossipsub heartbeat has scored them)
  const deadline = Date.now() + 20_000
  while (listener.services.pubsub.getSubscribers('t').length < senders.length && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  await new Promise(resolve => setTimeout(resolve, 1500))
  for (let round = 0; round < 10 && heard.size < senders.length; round++) {
    await Promise.all(senders.map(async h => await h.services.pubsub.publish('t', new TextEncoder().encode(`round ${round}`)).catch(() => {})))
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  const missing = senders.filter(h => !heard.has(h.peerId.toString())).length
  t.is(missing, 0, `${missing} of ${senders.length} senders were never heard`)
})
