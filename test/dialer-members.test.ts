// A member first found by mDNS stays a dial target after any number of failed dials
// (a partition longer than five backoffs): only an mDNS neighbour that never became a
// member is dropped (another grid on the LAN, a dead box). A tester's 2 + 3 split of
// six minutes never healed: every member on each side had been found by mDNS first.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { Dialer } from '../protocol/dialer.ts'
import { multiaddr } from '@multiformats/multiaddr'

test('a member found by mDNS first is dialled on after many failures; an mDNS neighbour that never became one is dropped after five', async t => {
  const clusterKey = generateClusterKey()
  const run = `dialmem${process.pid}`
  const a: VgridHost = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${run}-a`], mdns: false, transport: 'memory' })
  t.teardown(async () => { await a.stop() })
  const dialer = new Dialer({ host: a, tickMs: 20, baseBackoffMs: 10, maxBackoffMs: 20 })
  t.teardown(() => { dialer.stop() })
  dialer.start()
  // two peers nobody listens for (the far side of a partition): found by mDNS, one of them a member too
  const member = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  a.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: member, multiaddrs: [multiaddr(`/memory/${run}-gone1`)] } }))
  a.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: stranger, multiaddrs: [multiaddr(`/memory/${run}-gone2`)] } }))
  t.is(dialer.size, 2)
  dialer.noteMember(member.toString(), [`/memory/${run}-gone1`])
  // well past five failed dials of each (10-20 ms apart)
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.is(dialer.size, 1, 'the stranger is dropped, the member is not')
})
