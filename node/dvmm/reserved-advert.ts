// The resources the leases this node holds reserve, told to the agent (which puts
// them in its advert) and shown as metrics, after every decision step.
import type { Resources } from '../../protocol/advert.ts'
import { reservedBy } from '../../crdt/placement/index.ts'
import type { Clock } from '../service.ts'
import type { DvmmMetrics } from './metrics.ts'
import type { DocView } from './view.ts'

/** the least time between two adverts of this node's reservations */
const RESERVED_EVERY_MS = 2000

export interface ReservedAdvertComponents {
  peerId: string
  clock: Clock
  metrics: Pick<DvmmMetrics, 'held' | 'reservedCpu' | 'reservedMemory'>
  /** the resources the leases this node holds reserve: the agent puts them in its advert */
  onReserved: (r: Resources) => void
}

export class ReservedAdvert {
  private readonly c: ReservedAdvertComponents
  private running = false
  private last = ''
  private latest?: Resources
  private at = -Infinity
  private timer?: NodeJS.Timeout

  constructor (components: ReservedAdvertComponents) {
    this.c = components
  }

  start (): void { this.running = true }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
  }

  /** Counts what this node's leases and claims in the document reserve; tells the agent when it changed. */
  publish (doc: DocView): void {
    const me = this.c.peerId
    const sum = reservedBy(me, [...doc.leases.values()].map(l => l.claims))
    // sums of tenths (0.1 + 0.2) are shown and compared as the operator wrote them, not as 0.30000000000000004
    const r = { ...sum, cpu: Math.round(sum.cpu * 1e6) / 1e6 }
    const held = [...doc.leases.values()].filter(l => l.winner.holder === me).length
    this.c.metrics.held.set(held)
    this.c.metrics.reservedCpu.set(r.cpu)
    this.c.metrics.reservedMemory.set(r.memoryBytes)
    const key = `${r.cpu}/${r.memoryBytes}`
    if (key === this.last) return
    this.last = key
    this.latest = { cpu: r.cpu, memoryBytes: r.memoryBytes, diskBytes: 0 }
    // every new figure is a signed advert that every member checks: while VMs are
    // placed in bulk (a change every step) at most one per RESERVED_EVERY_MS goes
    // out, and the last one always does. Placement reads the leases, not the adverts
    if (this.timer != null) return
    const wait = Math.max(0, this.at + RESERVED_EVERY_MS - this.c.clock.now())
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.at = this.c.clock.now()
      if (this.latest != null && this.running) this.c.onReserved(this.latest)
    }, wait)
  }
}
