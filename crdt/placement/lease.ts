// Leases: which claim wins, when a claim has settled, and what a node may claim.
//
// The rule (crdt/conflicts.ts, `highest-epoch`, reused here): among concurrent
// claims of one VM the greatest epoch wins; at equal epochs the smaller holder node
// id; then the later write. It reads only the claims themselves, never arrival order
// or clocks, so every agent that has seen the same claims names the same winner.
import { highestEpoch } from '../conflicts.ts'
import type { Lease } from '../schema.ts'
import type { Capacity, Holding } from './types.ts'

/** the winning claim among concurrent ones (undefined when there are none) */
export function winner (claims: readonly Lease[]): Lease | undefined {
  let best: Lease | undefined
  for (const c of claims) if (best == null || highestEpoch(c, best) > 0) best = c
  return best
}

/**
 * Nothing runs under the lease: its holder gave up (failed, stopped after crashes) or
 * stopped the VM on request. Only the holder writes these statuses, once no run of the
 * VM is live there, and it never starts a VM under such a lease (decide.ts), so a write
 * that starts, removes or makes anew the VM may remove the lease with it.
 */
export const idle = (l: Pick<Lease, 'status'>): boolean => l.status === 'failed' || l.status === 'stopped'

/**
 * A lease parked by the holder of a VM stopped on request (`parked`, with status
 * `stopped`): idle, and, unlike the crash rule's, no reason to keep a VM desired
 * running from running. Such a VM (a `vm start` that saw the lease still running,
 * merged with the holder's park) is placed anew over it, at epoch + 1 (decide.ts).
 */
export const isParked = (l: Pick<Lease, 'status' | 'parked'>): boolean => l.status === 'stopped' && l.parked === true

/** a lease's `made` and its VM's `created` name one VM (either unknown: an older agent's, taken as the same) */
export const sameVm = (made: number | undefined, created: number | undefined): boolean => made == null || created == null || made === created

/**
 * The lease may hold a run that is not its VM's: a removed VM's (`vm` absent), or a
 * former VM's of a name made again; not once idle. Its `disks` may still be open there.
 */
export const formerRun = (l: Pick<Lease, 'status' | 'made'>, vm: { created?: number } | undefined): boolean => !idle(l) && (vm == null || !sameVm(l.made, vm.created))

/** a lease nothing runs under (idle) reserves nothing */
export const reserves = (l: Lease): boolean => !idle(l)

export const holdingOf = (l: Lease, antiAffinity?: string): Holding =>
  ({ vm: l.vm, holder: l.holder, cpu: reserves(l) ? l.cpu : 0, memoryBytes: reserves(l) ? l.memoryBytes : 0, antiAffinity })

/**
 * What `node` has reserved, counting every claim it made that is still in the
 * document, also those it may lose: a node's own claims are written by it alone, so
 * this is exact on the node itself, and it never undercounts while a contest is open.
 */
export function reservedBy (node: string, claims: Iterable<readonly Lease[]>): Capacity {
  const r = { cpu: 0, memoryBytes: 0 }
  for (const cs of claims) {
    // one VM counts once for a node even if it holds several values of its lease
    const mine = cs.filter(c => c.holder === node && reserves(c))
    if (mine.length === 0) continue
    r.cpu += Math.max(...mine.map(c => c.cpu))
    r.memoryBytes += Math.max(...mine.map(c => c.memoryBytes))
  }
  return r
}

/** Invariant 2: a claim is allowed only if the node's reservations stay within its capacity. */
export function canReserve (capacity: Capacity, reserved: Capacity, want: Capacity): { ok: true } | { ok: false, reason: string } {
  if (reserved.cpu + want.cpu > capacity.cpu + 1e-9) return { ok: false, reason: `cpu: ${reserved.cpu} reserved + ${want.cpu} > ${capacity.cpu}` }
  if (reserved.memoryBytes + want.memoryBytes > capacity.memoryBytes) return { ok: false, reason: `memory: ${reserved.memoryBytes} reserved + ${want.memoryBytes} > ${capacity.memoryBytes}` }
  return { ok: true }
}

export type SettleState =
  | { state: 'settled' }
  | { state: 'waiting', ms: number }
  | { state: 'lost', to: string }

/**
 * A claim has settled when it still wins and no conflicting claim was seen for
 * `settleMs` (longer than the document takes to reach every agent) since the claim
 * was made or the last conflicting claim appeared. Only then may the VM start.
 */
export function settle (opts: { me: string, claims: readonly Lease[], claimedAt: number, conflictSeenAt?: number, now: number, settleMs: number }): SettleState {
  const w = winner(opts.claims)
  if (w == null) return { state: 'lost', to: '(lease removed)' }
  if (w.holder !== opts.me) return { state: 'lost', to: w.holder }
  const since = Math.max(opts.claimedAt, opts.conflictSeenAt ?? -Infinity)
  const left = since + opts.settleMs - opts.now
  return left <= 0 ? { state: 'settled' } : { state: 'waiting', ms: left }
}
