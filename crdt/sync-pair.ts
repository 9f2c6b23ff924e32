// Runs the sync protocol between two replicas in memory until both are quiet: for
// unit tests, simulations and benchmarks (the network version is node/state/sync.ts).
import type { Replica } from './replica.ts'
import type { ReceiveResult } from './sync-session.ts'

export interface PairResult { rounds: number, bytes: number, rejected?: ReceiveResult }

export function syncPair (a: Replica, b: Replica, maxRounds = 50): PairResult {
  const pa = a.newPeer()
  const pb = b.newPeer()
  let bytes = 0
  for (let rounds = 1; rounds <= maxRounds; rounds++) {
    const m1 = a.generate(pa)
    if (m1 != null) {
      bytes += m1.byteLength
      const r = b.receive(pb, m1)
      if (!r.ok) return { rounds, bytes, rejected: r }
    }
    const m2 = b.generate(pb)
    if (m2 != null) {
      bytes += m2.byteLength
      const r = a.receive(pa, m2)
      if (!r.ok) return { rounds, bytes, rejected: r }
    }
    if (m1 == null && m2 == null) return { rounds, bytes }
  }
  throw new Error(`replicas did not converge in ${maxRounds} rounds`)
}
