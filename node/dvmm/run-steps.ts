// The small steps LocalVms (local-vms.ts) takes for a VM's run, apart from its state:
// the driver's spec of a VM, the driver calls it repeats, and the lease updates and
// times it writes into the document.
import type { Lease, Vm } from '../../crdt/index.ts'
import type { Clock } from '../service.ts'
import type { DriverVmSpec, VmDriver, VmOverlay } from './drivers/types.ts'
import { logged, sameVm } from './history.ts'

const MiB = 2 ** 20

/**
 * What a driver is asked to run for `vm`: its boot, resources, overlay address and
 * disks. The cpu and memory are the lease's, where given: what its holder reserved for
 * it (a `vm update` after the claim must not make it run bigger than reserved).
 */
export function driverSpec (vm: Vm, overlay?: VmOverlay | null, disks?: Array<{ uri: string }>, reserved?: Pick<Lease, 'cpu' | 'memoryBytes'>): DriverVmSpec {
  const s = { ...vm.spec, ...(reserved != null ? { cpu: reserved.cpu, memoryBytes: reserved.memoryBytes } : {}) }
  const boot: DriverVmSpec['boot'] = s.command != null && s.command.length > 0
    ? { kind: 'command', command: s.command, ...(s.user != null ? { user: s.user } : {}) }
    : s.kernel != null
      ? { kind: 'kernel', kernel: s.kernel, initrd: s.initrd, cmdline: s.cmdline }
      : s.image != null ? { kind: 'disk', image: s.image } : { kind: 'volume' }
  return { id: vm.id, vcpus: s.cpu, memoryMiB: Math.max(1, Math.ceil(s.memoryBytes / MiB)), boot, ...(overlay != null ? { overlay } : {}), ...(disks != null && disks.length > 0 ? { disks } : {}), ...(vm.created != null ? { incarnation: String(vm.created) } : {}) }
}

/**
 * A time written into the document (the roll's joined, crash records): whole ms of wall
 * time where the clock has it apart from its monotonic `now`, which other nodes and
 * later runs cannot compare with theirs.
 */
export function docStamp (clock: Clock & { wall?: () => number }): number {
  return Math.floor(clock.wall?.() ?? clock.now())
}

/** the VMs a driver lists whose process may run: running, starting or stopping */
export async function listedLive (d: VmDriver): Promise<string[]> {
  return (await d.list()).filter(v => v.state === 'running' || v.state === 'starting' || v.state === 'stopping').map(v => v.id)
}

/** kills the VM where the driver knows it and it has not ended; whether the driver knows it */
export async function killIfLive (d: VmDriver, id: string): Promise<boolean> {
  const info = await d.inspect(id)
  if (info != null && info.state !== 'stopped' && info.state !== 'failed') await d.kill(id)
  return info != null
}

/**
 * Whether a lease this node gives up (a drain) is parked rather than removed: its VM,
 * the one it was made for (not a VM made again under the name), should run, and is
 * then placed anew over it at the next epoch, its history carried on.
 */
export function movesOn (l: Lease, vm: Pick<Vm, 'desired' | 'created'> | undefined): boolean {
  return vm?.desired === 'running' && sameVm(l.made, vm.created) && Number.isSafeInteger(l.epoch + 1)
}

const FENCED_KILL_AFTER = '; it starts again here once this node sees a majority of the grid, unless the majority has taken it over meanwhile'

/** What a fenced kill says in the lease (status `starting`) and the VM's history; `why` starts with "fenced". */
export const fencedKillReason = (why: string): string => `killed: ${why}${FENCED_KILL_AFTER}`

/** The fence's cause in a lease reason a fenced kill wrote ("fenced: ..."; null: not one). */
export function fencedKillCause (reason: string | null | undefined): string | null {
  if (reason == null || !reason.startsWith('killed: fenced') || !reason.endsWith(FENCED_KILL_AFTER)) return null
  return reason.slice('killed: '.length, -FENCED_KILL_AFTER.length)
}

/**
 * The update that parks lease `l` of a VM stopped on request, once no run of it is
 * live on its holder: `stopped` and `parked` (crdt/schema.ts), with `reason` (and what
 * it said before unless it ran), logged at `at` (`holderName`: the holder's). Never written while the VM may run here.
 */
export function parkedLease (l: Lease, reason: string, at: number, holderName?: string): Partial<Lease> {
  // a lease `starting` with a reason was about to run again after that (a watchdog kill
  // while its agent was down): the reason is what happened last, not what it was doing
  const was = l.status == null || l.status === 'running'
    ? ''
    : l.status === 'starting' && l.reason != null ? ` (before: ${l.reason})` : ` (it was ${l.status}${l.reason != null ? `: ${l.reason}` : ''})`
  return logged(l, { status: 'stopped', parked: true, reason: `${reason}${was}`.slice(0, 2048) }, at, holderName)
}
