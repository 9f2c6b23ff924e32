// GVS's Prometheus metrics, registered on the agent's registry. NBD requests and
// errors are read from the server's counters at scrape time (collect), so the data
// path pays nothing for them.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { NbdStats } from './nbd/session.ts'
import type { LocalCaches } from './local-cache.ts'

export class GvsMetrics {
  readonly damaged: Counter
  readonly repairBytes: Counter
  readonly repairFailed: Counter
  readonly surplusFreed: Counter
  readonly volumesUnhealthy: Gauge
  readonly scrubObjects: Counter
  readonly scrubBad: Counter
  readonly scrubRepaired: Counter
  readonly scrubLast: Gauge

  constructor (registry: Registry, nbd: () => NbdStats, caches?: LocalCaches) {
    const registers = [registry]
    this.damaged = new Counter({ name: 'vgrid_gvs_damaged_objects_total', help: 'Objects of this node found damaged (checksum mismatch) on read or scrub', registers })
    this.repairBytes = new Counter({ name: 'vgrid_gvs_repair_bytes_total', help: 'Bytes repair copied to new holders', registers })
    this.repairFailed = new Counter({ name: 'vgrid_gvs_repair_failed_total', help: 'Object copies repair could not make (retried on the next pass)', registers })
    this.surplusFreed = new Counter({ name: 'vgrid_gvs_surplus_freed_total', help: 'Copies repair freed from nodes that are no longer their holders', registers })
    this.volumesUnhealthy = new Gauge({ name: 'vgrid_gvs_volumes_unhealthy', help: 'Volumes whose last repair here left them degraded', registers })
    this.scrubObjects = new Counter({ name: 'vgrid_gvs_scrub_objects_total', help: 'Objects of this node the scheduled scrub read and checked', registers })
    this.scrubBad = new Counter({ name: 'vgrid_gvs_scrub_bad_total', help: 'Copies on this node the scrub found damaged', registers })
    this.scrubRepaired = new Counter({ name: 'vgrid_gvs_scrub_repaired_total', help: 'Damaged copies on this node the scrub rewrote from a sound one', registers })
    this.scrubLast = new Gauge({ name: 'vgrid_gvs_scrub_last_timestamp_seconds', help: 'When this node last finished a scrub (Unix time)', registers })
    new Counter({
      name: 'vgrid_gvs_nbd_requests_total',
      help: 'NBD requests served by this node since start, by kind',
      labelNames: ['kind'] as const,
      registers,
      collect () {
        // the NBD server counts; the counter shows its totals at scrape time
        const s = nbd()
        this.reset()
        for (const k of ['read', 'write', 'fua', 'flush', 'trim', 'zero', 'errors'] as const) this.inc({ kind: k }, s[k])
      }
    })
    if (caches == null) return
    new Counter({
      name: 'vgrid_gvs_cache_reads_total',
      help: 'Reads this node\'s cache of its VMs\' disks answered (hit), passed to the replicas (miss), or found damaged',
      labelNames: ['result'] as const,
      registers,
      collect () {
        // the cache counts; the counter shows its totals at scrape time
        const s = caches.stats()
        this.reset()
        this.inc({ result: 'hit' }, s.hits)
        this.inc({ result: 'miss' }, s.misses)
        this.inc({ result: 'damaged' }, s.damaged)
      }
    })
    new Gauge({
      name: 'vgrid_gvs_cache_bytes',
      help: 'Bytes this node\'s caches of its VMs\' disks take on disk, and may take',
      labelNames: ['kind'] as const,
      registers,
      collect () {
        const s = caches.sizes()
        this.set({ kind: 'used' }, s.bytes)
        this.set({ kind: 'limit' }, s.limit)
      }
    })
  }
}
