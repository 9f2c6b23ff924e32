// The network service: this agent's libp2p host (protocol/host.ts). It is made before
// the other services are built (they register their protocols and listeners on it),
// starts first and stops last. Its metrics: connections refused before they were
// usable (wrong cluster key, failed handshakes) and peers connected.
import type { PrivateKey } from '@libp2p/interface'
import { Counter, Gauge, type Registry } from 'prom-client'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import type { ClusterKey } from '../../protocol/cluster-key.ts'
import type { Logger } from '../log.ts'
import type { Service } from '../service.ts'

export interface NetworkComponents {
  config: { listen: string[], mdns: boolean, transport: 'tcp' | 'memory' }
  log: Logger
  registry: Registry
  privateKey: PrivateKey
  clusterKey: ClusterKey
  /** join addresses (--join and the token's) */
  join: string[]
}

export class NetworkService implements Service {
  readonly name = 'network'
  readonly host: VgridHost
  private readonly connected: Gauge

  private readonly log: Logger

  private constructor (host: VgridHost, connected: Gauge, log: Logger) {
    this.host = host
    this.connected = connected
    this.log = log
    host.addEventListener('peer:discovery', this.onDiscovery)
    host.addEventListener('connection:open', this.onConnectionsChanged)
    host.addEventListener('connection:close', this.onConnectionsChanged)
  }

  /** Builds the host (not started): the other services attach to it before anything listens. */
  static async create (c: NetworkComponents): Promise<NetworkService> {
    const registers = [c.registry]
    const rejected = new Counter({ name: 'vgrid_connections_rejected_total', help: 'Connections refused before they were usable, by reason', labelNames: ['reason'] as const, registers })
    const connected = new Gauge({ name: 'vgrid_connected_peers', help: 'Peers with an open connection', registers })
    const host = await createHost({
      privateKey: c.privateKey,
      clusterKey: c.clusterKey,
      listen: c.config.listen,
      bootstrap: c.join,
      mdns: c.config.mdns,
      transport: c.config.transport,
      keyCheck: { onRejected: reason => rejected.inc({ reason }) },
      start: false
    })
    return new NetworkService(host, connected, c.log)
  }

  async start (): Promise<void> {
    try {
      await this.host.start()
    } catch (err) {
      throw new Error(listenFailure((err as Error).message ?? String(err)))
    }
  }

  async stop (): Promise<void> {
    this.host.removeEventListener('peer:discovery', this.onDiscovery)
    await this.host.stop()
  }

  private readonly onDiscovery = (evt: CustomEvent<{ id: { toString: () => string }, multiaddrs: Array<{ toString: () => string }> }>): void => {
    this.log.debug('discovered', { peer: evt.detail.id.toString(), addrs: evt.detail.multiaddrs.map(m => m.toString()).join(',') })
  }

  private readonly onConnectionsChanged = (): void => {
    this.connected.set(new Set(this.host.getConnections().map(conn => conn.remotePeer.toString())).size)
  }
}

/**
 * libp2p's failure to listen, as one line: which --listen address, and the system's
 * reason (its message is several lines of advice about its own options and a stack).
 */
export function listenFailure (message: string): string {
  const failed = [...message.matchAll(/^\s*(\/\S+): (?:\w*Error: )?(.+)$/gm)].map(m => `${m[1]!} (${m[2]!.trim()})`)
  if (failed.length > 0) return `cannot listen on ${failed.join(', ')}: change --listen or stop what uses it`
  return message.split('\n')[0]!
}
