// The state service's Prometheus metrics, registered on the agent's registry. Names
// are part of the agent's interface (dashboards use them): keep them stable.
import { Counter, Gauge, type Registry } from 'prom-client'

export class StateMetrics {
  readonly syncRejected: Counter<'reason'>
  readonly syncMessages: Counter<'direction'>
  readonly syncBytes: Counter<'direction'>
  readonly changes: Counter<'origin'>
  readonly sessions: Gauge
  readonly diskBytes: Gauge
  readonly fsyncs: Counter<'kind'>
  readonly corruptFiles: Counter
  readonly invalidValues: Counter
  /** disk failures, by cause (disk-full, io-error, read-only, dir-replaced, ...) */
  readonly diskErrors: Counter<'cause'>
  /** 1 while the state service refuses writes (degraded), by cause; 0 otherwise */
  readonly degraded: Gauge<'cause'>
  /** local writes refused because they could not be made durable */
  readonly writesFailed: Counter<'cause'>
  /** where the clamped-stamp count comes from (the replica's clock, once loaded) */
  clampedStamps: () => number = () => 0

  constructor (registry: Registry) {
    const registers = [registry]
    this.syncRejected = new Counter({ name: 'vgrid_state_sync_rejected_total', help: 'State sync data refused from a peer (whose connection was then closed), by reason', labelNames: ['reason'] as const, registers })
    this.syncMessages = new Counter({ name: 'vgrid_state_sync_messages_total', help: 'State sync messages, by direction', labelNames: ['direction'] as const, registers })
    this.syncBytes = new Counter({ name: 'vgrid_state_sync_bytes_total', help: 'State sync bytes, by direction', labelNames: ['direction'] as const, registers })
    this.changes = new Counter({ name: 'vgrid_state_changes_total', help: 'Changes applied to the cluster document, by origin (local writes, remote from peers)', labelNames: ['origin'] as const, registers })
    this.sessions = new Gauge({ name: 'vgrid_state_sync_sessions', help: 'Open state sync sessions', registers })
    this.diskBytes = new Gauge({ name: 'vgrid_state_disk_bytes', help: 'Size of the cluster document on disk (snapshot and log)', registers })
    this.fsyncs = new Counter({ name: 'vgrid_state_flushes_total', help: 'Durable writes of the cluster document, by kind (append, snapshot)', labelNames: ['kind'] as const, registers })
    this.corruptFiles = new Counter({ name: 'vgrid_state_corrupt_files_total', help: 'Damaged state files set aside at start', registers })
    this.invalidValues = new Counter({ name: 'vgrid_state_invalid_values_total', help: 'Distinct invalid values readers skipped in the cluster document', registers })
    this.diskErrors = new Counter({ name: 'vgrid_state_disk_errors_total', help: 'Failed writes of the state files (the service then refuses writes until it recovers), by cause', labelNames: ['cause'] as const, registers })
    this.degraded = new Gauge({ name: 'vgrid_state_degraded', help: '1 while the state service refuses writes because of disk trouble, by cause', labelNames: ['cause'] as const, registers })
    const clamped = (): number => this.clampedStamps()
    new Gauge({
      name: 'vgrid_state_future_stamps',
      help: 'Stamps from peers more than 500 ms ahead of this node\'s clock seen since start (their writer\'s clock runs fast; see vgrid_clock_offset_seconds)',
      registers,
      collect () { this.set(clamped()) }
    })
    this.writesFailed = new Counter({ name: 'vgrid_state_writes_failed_total', help: 'Local writes refused (nothing of them kept or sent) because they could not be made durable, by cause', labelNames: ['cause'] as const, registers })
  }
}
