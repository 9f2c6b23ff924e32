// DVMM's Prometheus metrics, registered on the agent's registry.
import { Counter, Gauge, type Registry } from 'prom-client'

export class DvmmMetrics {
  readonly claims: Counter<'kind'>
  readonly claimsLost: Counter
  readonly claimsRefused: Counter
  readonly claimsStale: Counter
  readonly starts: Counter<'result'>
  readonly crashes: Counter
  readonly kills: Counter<'why'>
  readonly fenced: Gauge
  readonly held: Gauge
  readonly reservedCpu: Gauge
  readonly reservedMemory: Gauge
  readonly reconciles: Counter

  constructor (registry: Registry) {
    const registers = [registry]
    this.claims = new Counter({ name: 'vgrid_dvmm_claims_total', help: 'Leases this node claimed, by kind (place, takeover)', labelNames: ['kind'] as const, registers })
    this.claimsLost = new Counter({ name: 'vgrid_dvmm_claims_lost_total', help: 'Claims of this node that lost to a concurrent claim', registers })
    this.claimsRefused = new Counter({ name: 'vgrid_dvmm_claims_refused_total', help: 'Claims the plan gave this node that its reservations refused (would exceed capacity)', registers })
    this.claimsStale = new Counter({ name: 'vgrid_dvmm_claims_stale_total', help: 'Claims not written because the lease changed between the decision step\'s read and its write (decided again)', registers })
    this.starts = new Counter({ name: 'vgrid_dvmm_starts_total', help: 'VM starts on this node, by result (ok, failed)', labelNames: ['result'] as const, registers })
    this.crashes = new Counter({ name: 'vgrid_dvmm_crashes_total', help: 'VMs on this node that exited without being asked to', registers })
    this.kills = new Counter({ name: 'vgrid_dvmm_kills_total', help: 'VMs this node killed, by why (fenced, lost)', labelNames: ['why'] as const, registers })
    this.fenced = new Gauge({ name: 'vgrid_dvmm_fenced', help: '1 while this node sees no majority of the member roll past the fence timeout', registers })
    this.held = new Gauge({ name: 'vgrid_dvmm_leases_held', help: 'Leases this node holds', registers })
    this.reservedCpu = new Gauge({ name: 'vgrid_dvmm_reserved_cpu', help: 'CPUs reserved by the leases this node holds', registers })
    this.reservedMemory = new Gauge({ name: 'vgrid_dvmm_reserved_memory_bytes', help: 'Memory reserved by the leases this node holds', registers })
    this.reconciles = new Counter({ name: 'vgrid_dvmm_reconciles_total', help: 'Reconcile steps run', registers })
  }
}
