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
  readonly membershipBytes = new Counter({ name: 'vgrid_membership_gossip_bytes_total', help: 'Payload bytes of membership gossip (adverts, suspicions)', labelNames: ['direction'] as const, registers: [this.registry] })
  readonly suspicions = new Counter({ name: 'vgrid_suspicions_total', help: 'Suspicions raised here (local) or heard from others (remote)', labelNames: ['origin'] as const, registers: [this.registry] })
  readonly connectedPeers = new Gauge({ name: 'vgrid_connected_peers', help: 'Peers with an open connection', registers: [this.registry] })
  readonly apiErrors = new Counter({ name: 'vgrid_api_errors_total', help: 'API requests answered with an error, by code', labelNames: ['code'] as const, registers: [this.registry] })
  // replicated cluster state (node/state)
  readonly stateSyncRejected = new Counter({ name: 'vgrid_state_sync_rejected_total', help: 'State sync data refused from a peer (whose connection was then closed), by reason', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly stateSyncMessages = new Counter({ name: 'vgrid_state_sync_messages_total', help: 'State sync messages, by direction', labelNames: ['direction'] as const, registers: [this.registry] })
  readonly stateSyncBytes = new Counter({ name: 'vgrid_state_sync_bytes_total', help: 'State sync bytes, by direction', labelNames: ['direction'] as const, registers: [this.registry] })
  readonly stateChanges = new Counter({ name: 'vgrid_state_changes_total', help: 'Changes applied to the cluster document, by origin (local writes, remote from peers)', labelNames: ['origin'] as const, registers: [this.registry] })
  readonly stateSessions = new Gauge({ name: 'vgrid_state_sync_sessions', help: 'Open state sync sessions', registers: [this.registry] })
  readonly stateDiskBytes = new Gauge({ name: 'vgrid_state_disk_bytes', help: 'Size of the cluster document on disk (snapshot and log)', registers: [this.registry] })
  readonly stateFsyncs = new Counter({ name: 'vgrid_state_flushes_total', help: 'Durable writes of the cluster document, by kind (append, snapshot)', labelNames: ['kind'] as const, registers: [this.registry] })
  readonly stateCorruptFiles = new Counter({ name: 'vgrid_state_corrupt_files_total', help: 'Damaged state files set aside at start', registers: [this.registry] })
  readonly stateInvalidValues = new Counter({ name: 'vgrid_state_invalid_values_total', help: 'Distinct invalid values readers skipped in the cluster document', registers: [this.registry] })
}
