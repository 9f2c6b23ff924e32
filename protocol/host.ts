// libp2p host assembly: the one place that knows which transports, encrypters,
// muxers and services a vgrid node runs.
import { networkInterfaces } from 'node:os'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import { tcp } from '@libp2p/tcp'
import { memory } from '@libp2p/memory'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { mdns } from '@libp2p/mdns'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { Ping } from '@libp2p/ping'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { installPatches } from './patches/index.ts'
import { VM_LINK_RANGE } from './vm-links.ts'
import { tuneGcForStreams } from './gc-tuning.ts'
import { checkedPreSharedKey, type KeyCheckEvents } from './key-check.ts'
import type { ClusterKey } from './cluster-key.ts'

export type VgridServices = {
  pubsub: GossipSub
  identify: Identify
  ping: Ping
}

export type VgridHost = Libp2p<VgridServices>

export interface HostOptions {
  privateKey: PrivateKey
  clusterKey: ClusterKey
  listen: string[]
  /** multiaddrs with a /p2p/ id handed to @libp2p/bootstrap (others are dialled by the agent) */
  bootstrap?: string[]
  mdns?: boolean
  /** use the in-memory transport (many agents in one process: tests, benchmarks) */
  transport?: 'tcp' | 'memory'
  keyCheck?: KeyCheckEvents
  /** upper bound on one gossip message (bytes); larger ones are not decoded */
  maxMessageBytes?: number
  /** start at once (default); false lets the caller attach listeners first */
  start?: boolean
  /**
   * peers this host refuses connections with, both ways, while it returns true: a
   * network cut between two agents of one process (tests of partial partitions)
   */
  refuse?: (peer: string) => boolean
}

export const MDNS_SERVICE_TAG = '_vgrid._udp.local'

/**
 * Interfaces vgrid itself makes: the WireGuard interface ("vgw" + 12 base32 of the
 * node id) and VM links (veth "vgp" / tap "vgt" + 8 hex). Their addresses are never
 * announced: agents dialling each other through their own overlay would tie
 * membership to the tunnels membership sets up, and every node's VM links use the
 * same small range (10.254.0.0/20), which names no one node.
 */
export const OWN_INTERFACE = /^vg([a-z2-7]{13}|[pt][0-9a-f]{8})$/

function ownInterfaceAddrs (): Set<string> {
  const out = new Set<string>()
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (OWN_INTERFACE.test(name)) for (const a of list ?? []) out.add(a.address)
  }
  return out
}

/** whether an IPv4 address is in a CIDR range */
function inRange (addr: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/') as [string, string]
  const n = (a: string): number => a.split('.').reduce((v, o) => v * 256 + Number(o), 0)
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(addr)) return false
  const size = 2 ** (32 - Number(bits))
  return Math.floor(n(addr) / size) === Math.floor(n(base) / size)
}

/**
 * Listen addresses minus those on vgrid's own interfaces (see OWN_INTERFACE), and any in
 * the VM link range whatever interface has it: the interface list read here and the one
 * libp2p expanded its listen address from are two reads, and a VM's link made between
 * them was announced (bb32: when it went, the agent closed every connection, and every
 * node took it for a partial cut)
 */
export function announceable (addrs: Multiaddr[]): Multiaddr[] {
  const own = ownInterfaceAddrs()
  return addrs.filter(a => {
    const host = a.toString().split('/')[2]
    return host === undefined || (!own.has(host) && !inRange(host, VM_LINK_RANGE))
  })
}

export async function createHost (opts: HostOptions): Promise<VgridHost> {
  // the dependency patches go in before any connection exists; a patch whose library
  // internals changed fails the start here, naming what is missing (protocol/patches/)
  await installPatches()
  tuneGcForStreams()
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (opts.mdns === true) peerDiscovery.push(mdns({ serviceTag: MDNS_SERVICE_TAG, interval: 5000 }))
  const boot = (opts.bootstrap ?? []).filter(a => a.includes('/p2p/'))
  if (boot.length > 0) peerDiscovery.push(bootstrap({ list: boot, timeout: 100 }))

  return createLibp2p<VgridServices>({
    start: opts.start ?? true,
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen, announceFilter: announceable },
    transports: [opts.transport === 'memory' ? memory() : tcp()],
    connectionProtector: checkedPreSharedKey(opts.clusterKey.psk, opts.keyCheck),
    connectionEncrypters: [noise()],
    // yamux's own keep-alive pings only measure round trips (it never closes a
    // connection on a missed one); libp2p's connection monitor below does the real job
    streamMuxers: [yamux({ enableKeepAlive: false })],
    peerDiscovery,
    // loopback and private LAN addresses are exactly where a rack's servers live
    connectionGater: {
      denyDialMultiaddr: () => false,
      ...opts.refuse == null
        ? {}
        : {
            denyDialPeer: (p: PeerId) => opts.refuse!(p.toString()),
            denyInboundEncryptedConnection: (p: PeerId) => opts.refuse!(p.toString()),
            denyOutboundEncryptedConnection: (p: PeerId) => opts.refuse!(p.toString())
          }
    },
    // a rack restarting at once (or agents sharing an address in tests) dials in
    // faster than libp2p's default of 5 connections per second per host allows
    connectionManager: { maxConnections: 1000, inboundUpgradeTimeout: 5000, inboundConnectionThreshold: 100, maxIncomingPendingConnections: 100 },
    // libp2p's keep-alive pings close connections that silently died, which
    // membership then treats as lost: a safety net under the heartbeats, which find a
    // silent member in seconds. Each ping opens a stream (about 10 frames), so every
    // 30 s rather than libp2p's 10: at 16 connections the 10 s pings were more frames
    // than all heartbeats together.
    //
    // A ping that times out aborts the connection, and libp2p's timeout adapts down to
    // 5 s: a node that stalled that long (a long GC, a burst of handshakes) lost its
    // connections, its watchers suspected it, and on 200 agents over loopback the
    // hang-ups that followed brought the whole grid down. Heartbeats judge liveness
    // within seconds; the monitor only has to clear out dead connections, so it waits.
    connectionMonitor: { pingInterval: 30_000, pingTimeout: { minTimeout: 30_000, maxTimeout: 60_000 } },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // messages are signed by the publishing peer and checked on receipt: the
        // advert handler then only has to compare signer and subject
        globalSignaturePolicy: 'StrictSign',
        maxInboundDataLength: opts.maxMessageBytes ?? 64 * 1024,
        heartbeatInterval: 1000,
        // a smaller mesh: each message then arrives about 4 times instead of 6-12,
        // which is most of what an idle grid spends on gossip (fanout stays O(log N))
        D: 4,
        Dlo: 3,
        Dhi: 6,
        Dlazy: 4,
        // gossipsub's Sybil defence scores down peers that share an IP address: past 10
        // of them their messages are ignored. Only cluster-key holders connect at all,
        // and grids behind one NAT address (or tests on loopback) are normal: off
        scoreParams: { IPColocationFactorWeight: 0 },
        // IDONTWANT pays off for large messages only; adverts are under 2 KiB
        idontwantMinDataSize: 16 * 1024,
        // adverts are small and frequent; publish straight to every topic peer
        floodPublish: true,
        // recognise duplicates by (origin, seqno) *before* checking signatures: every
        // message arrives from several mesh peers and only the first is worth verifying.
        // Only validly signed messages enter this cache, so a forger cannot pre-empt one.
        // (unsigned messages all share one id; StrictSign rejects them, so it is never cached)
        fastMsgIdFn: (m) => m.from == null || m.seqno == null
          ? 'unsigned'
          : Buffer.from(m.from).toString('base64') + '/' + Buffer.from(m.seqno).toString('hex')
      })
    }
  })
}
