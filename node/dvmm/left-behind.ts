// What a starting agent does with each VM its drivers list (pure): a previous run of
// the agent left them. One that runs is adopted (the decision step kills it if its lease
// is another node's), one being stopped is stopped; one whose guest ended while no agent watched goes through the
// crash rule as a live exit would, once: otherwise its lease, still this node's and
// `running`, had the decision step start it again, past its restart policy and the
// crash limit.
import type { Lease } from '../../crdt/index.ts'
import type { VmExit, VmInfo } from './drivers/types.ts'

export type LeftBehind =
  /**
   * `running` (with why) when its lease is this node's and says `claimed` or `starting`:
   * the start's `running` write went with the previous run (a crash between the driver's
   * start and the write). Nothing else would write it: the step leaves a VM that runs be.
   */
  | { do: 'adopt', running?: string }
  /** fed to the crash rule (LocalVms: onExit, the lease update) */
  | { do: 'exit', exit: VmExit }
  /** nothing to do here (the decision step judges the lease as it is) */
  | { do: 'leave', why: string }
  /**
   * killed while no agent watched (the fencing watchdog), its lease still this node's
   * and `running`: no crash, but the lease says so (`starting`, with why) before the
   * decision step starts it again, so every agent's history shows the kill
   */
  | { do: 'restart', why: string }
  /**
   * its stop was under way when the previous run went (a graceful stop's grace time: the
   * guest may still run): carried through (stopped, killed past the grace time) before
   * the decision step judges its lease, which it would otherwise leave `stopped` as if
   * nothing ran, for another node to start the VM beside it
   */
  | { do: 'stop', why: string }

/** exits that were the guest's own doing; `stopped` and `killed` were asked for (by this node, or the fencing watchdog): no crash */
const GUEST_EXITS: ReadonlySet<VmExit['reason']> = new Set(['exited', 'rebooted', 'crashed', 'oom-killed', 'lost'])

export function leftBehind (vm: Pick<VmInfo, 'state' | 'exit' | 'error' | 'startedAt'>, lease: Pick<Lease, 'holder' | 'status' | 'at'> | undefined, me: string): LeftBehind {
  if (vm.state === 'running' || vm.state === 'starting') {
    if (lease?.holder === me && (lease.status == null || lease.status === 'claimed' || lease.status === 'starting')) {
      return { do: 'adopt', running: `found ${vm.state} when the agent came back (the write of its start was lost)` }
    }
    return { do: 'adopt' }
  }
  if (vm.state === 'stopping') return { do: 'stop', why: 'its stop was under way when the agent went down' }
  if (vm.state !== 'stopped' && vm.state !== 'failed') return { do: 'leave', why: `it is ${vm.state}` }
  const exit = vm.exit
  if (exit == null) return { do: 'leave', why: `no exit recorded (${vm.error ?? 'it never ran'})` }
  const mine = lease != null && lease.holder === me
  if (!GUEST_EXITS.has(exit.reason)) {
    if (exit.reason === 'killed' && mine && lease.status === 'running') return { do: 'restart', why: `${vm.error ?? 'killed'} while the agent was down or still loading (not back within the watchdog's timeout of its last feed, or after a graceful stop within the restart grace)` }
    return { do: 'leave', why: `${exit.reason}${vm.error != null ? ` (${vm.error})` : ''}: not the guest's doing, no crash` }
  }
  if (!mine) return { do: 'leave', why: lease == null ? 'no lease' : `lease is ${lease.holder}'s` }
  // `running` is written only once a start returned, and a start first removes the
  // record of the run before: this record is of the run the lease reports, exit unwritten
  if (lease.status === 'running') return { do: 'exit', exit }
  // `claimed` or `starting` (a claim, or a crash already counted and a restart due):
  // the exit is unwritten only if its run began after that write (the start's `running`
  // was lost). Where the times cannot tell, the crash is not counted twice: the step
  // starts the VM as the lease says.
  if (lease.status == null || lease.status === 'claimed' || lease.status === 'starting') {
    if (vm.startedAt != null && vm.startedAt > lease.at) return { do: 'exit', exit }
    return { do: 'leave', why: `lease says ${lease.status ?? 'nothing'} since before this run began` }
  }
  // stopped or failed: written already (an exit, a failed start)
  return { do: 'leave', why: `lease says ${lease.status}` }
}
