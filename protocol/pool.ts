// The pool as one node sees it: the sum over alive members (itself included).
import type { MemberTable } from './membership.ts'

export interface Pool {
  cpu: { total: number, free: number }
  memoryBytes: { total: number, free: number }
  diskBytes: { total: number, free: number }
}

export function poolOf (table: MemberTable): Pool {
  const pool: Pool = { cpu: { total: 0, free: 0 }, memoryBytes: { total: 0, free: 0 }, diskBytes: { total: 0, free: 0 } }
  for (const m of table.values()) {
    if (m.state !== 'alive') continue
    const { capacity, free } = m.advert
    pool.cpu.total += capacity.cpu
    pool.cpu.free += free.cpu
    pool.memoryBytes.total += capacity.memoryBytes
    pool.memoryBytes.free += free.memoryBytes
    pool.diskBytes.total += capacity.diskBytes
    pool.diskBytes.free += free.diskBytes
  }
  return pool
}
