// The agent's Prometheus metrics. One registry per agent, so many agents can share
// a process (tests, benchmarks) without mixing their numbers.
import { Registry, Counter, Gauge } from 'prom-client'

export class AgentMetrics {
  readonly registry = new Registry()
  readonly members = new Gauge({ name: 'vgrid_members', help: 'Members by state, as this node sees them', labelNames: ['state'] as const, registers: [this.registry] })
  readonly advertsIn = new Counter({ name: 'vgrid_adverts_received_total', help: 'Adverts accepted from other members', registers: [this.registry] })
  readonly advertsOut = new Counter({ name: 'vgrid_adverts_sent_total', help: 'Adverts published by this node', registers: [this.registry] })
  readonly gossipRejected = new Counter({ name: 'vgrid_gossip_rejected_total', help: 'Gossip messages dropped, by reason', labelNames: ['topic', 'reason'] as const, registers: [this.registry] })
  readonly connectionsRejected = new Counter({ name: 'vgrid_connections_rejected_total', help: 'Connections refused before they were usable, by reason', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly connectedPeers = new Gauge({ name: 'vgrid_connected_peers', help: 'Peers with an open connection', registers: [this.registry] })
  readonly apiErrors = new Counter({ name: 'vgrid_api_errors_total', help: 'API requests answered with an error, by code', labelNames: ['code'] as const, registers: [this.registry] })
}
