// Test helper: a bare libp2p host built with the agent's own host assembly, used to
// play a misbehaving member (forged adverts, garbage) against real agents.
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import type { ClusterKey } from '../../protocol/cluster-key.ts'

export async function startRawPeer (clusterKey: ClusterKey): Promise<VgridHost> {
  const host = await createHost({
    privateKey: await generateKeyPair('Ed25519'),
    clusterKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false
  })
  return host
}

export async function dialAgent (host: VgridHost, addr: string): Promise<void> {
  await host.dial(multiaddr(addr), { signal: AbortSignal.timeout(5000) })
}
