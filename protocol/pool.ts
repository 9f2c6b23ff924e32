// The pool as one node sees it: the sum over alive members (itself included).
import type { MemberTable } from './membership.ts'

export interface Pool {
  cpu: { total: number, free: number }
  memoryBytes: { total: number, free: number }
  diskBytes: { total: number, free: number }
}

/** `draining`: members being drained: their capacity counts, their free room does not (nothing is placed there) */
export function poolOf (table: MemberTable, draining: (id: string) => boolean = () => false): Pool {
  const pool: Pool = { cpu: { total: 0, free: 0 }, memoryBytes: { total: 0, free: 0 }, diskBytes: { total: 0, free: 0 } }
  for (const m of table.values()) {
    if (m.state !== 'alive') continue
    const { capacity } = m.advert
    // a draining node takes nothing: its free room is no room for the pool (bb28)
    const free = draining(m.nodeId) ? { cpu: 0, memoryBytes: 0, diskBytes: 0 } : m.advert.free
    pool.cpu.total += capacity.cpu
    pool.cpu.free += free.cpu
    pool.memoryBytes.total += capacity.memoryBytes
    pool.memoryBytes.free += free.memoryBytes
    pool.diskBytes.total += capacity.diskBytes
    pool.diskBytes.free += free.diskBytes
  }
  // sums of fractions of a cpu, as they add up: 6.2, not 6.199999999999999 (bb32)
  pool.cpu.total = Math.round(pool.cpu.total * 1000) / 1000
  pool.cpu.free = Math.round(pool.cpu.free * 1000) / 1000
  return pool
}
