// GVS's Prometheus metrics, registered on the agent's registry. NBD requests and
// errors are read from the server's counters at scrape time (collect), so the data
// path pays nothing for them.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { NbdStats } from './nbd/session.ts'

export class GvsMetrics {
  readonly damaged: Counter
  readonly repairBytes: Counter
  readonly repairFailed: Counter
  readonly volumesUnhealthy: Gauge

  constructor (registry: Registry, nbd: () => NbdStats) {
    const registers = [registry]
    this.damaged = new Counter({ name: 'vgrid_gvs_damaged_objects_total', help: 'Objects of this node found damaged (checksum mismatch) on read or scrub', registers })
    this.repairBytes = new Counter({ name: 'vgrid_gvs_repair_bytes_total', help: 'Bytes repair copied to new holders', registers })
    this.repairFailed = new Counter({ name: 'vgrid_gvs_repair_failed_total', help: 'Object copies repair could not make (retried on the next pass)', registers })
    this.volumesUnhealthy = new Gauge({ name: 'vgrid_gvs_volumes_unhealthy', help: 'Volumes whose last repair here left them degraded', registers })
    new Gauge({
      name: 'vgrid_gvs_nbd_requests',
      help: 'NBD requests served by this node since start, by kind',
      labelNames: ['kind'] as const,
      registers,
      collect () {
        const s = nbd()
        for (const k of ['read', 'write', 'fua', 'flush', 'trim', 'zero', 'errors'] as const) this.set({ kind: k }, s[k])
      }
    })
  }
}
