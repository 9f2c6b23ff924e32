// The one interface every VM driver (process, qemu, fake) implements, and the data it
// speaks: a VM spec as a driver sees it, a VM's state and how it ended. DVMM's
// placement core talks to drivers only through this, and test/dvmm/drivers/compliance.ts
// holds every driver to the same behaviour.
import type { EventEmitter } from 'node:events'
import type { ConsoleRead, ConsoleSince } from './console-read.ts'

export type DriverName = 'process' | 'qemu' | 'fake'

/** How a VM boots: a command (process driver), a kernel, a disk image, or its first disk (qemu). */
export type DriverBoot =
  /** `user`: a name or numeric uid the command runs as, without capabilities (absent: root) */
  | { kind: 'command', command: string[], env?: Record<string, string>, user?: string }
  | { kind: 'kernel', kernel: string, initrd?: string, cmdline?: string }
  | { kind: 'disk', image: string, format?: 'raw' | 'qcow2' }
  /** its first disk (a volume, `disks[0]`) through the boot loader on it */
  | { kind: 'volume' }

export interface DriverVmSpec {
  /** Unique on the node; [a-z0-9][a-z0-9_.-]{0,62}. Names its run dir, cgroups and interfaces. */
  id: string
  /** Guaranteed CPUs; a fraction is a cfs quota (process) and rounds up to whole vCPUs (qemu). */
  vcpus: number
  memoryMiB: number
  boot: DriverBoot
  /** Give the VM an interface on the node (veth for process, tap for qemu); default true. */
  network?: boolean
  /** The VM's overlay address and terminal names (from the connection manager), when the grid has an overlay. */
  overlay?: VmOverlay
  /** Block devices from the volume store, attached in order (vda, vdb, ...): NBD URIs (qemu only). */
  disks?: Array<{ uri: string }>
  /**
   * Which VM of its name the run is of (the VM's `created`): a new run's console starts
   * with the run before's only when both are of the same VM (one removed and made again
   * under its name must not show the old one's output).
   */
  incarnation?: string
}

/**
 * What the connection manager gives a VM: its stable overlay address (a /32 on its
 * interface, the source of everything it sends off its link) and the names its
 * output terminals resolve to (terminal name -> the peer VM's overlay address).
 */
export interface VmOverlay {
  address: string
  names?: Record<string, string>
}

/** The design's VM states as one node sees them (pending lives in the placement core). */
export type VmState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed'

/** Why a VM's process ended. */
export type ExitReason =
  | 'exited' // ended by itself with code 0 (a guest poweroff)
  | 'rebooted' // a qemu guest reset itself (a reboot), which QEMU's -no-reboot turns into its exit with code 0: started again on its node, whatever its restart policy
  | 'crashed' // ended by itself with a non-zero code or a signal
  | 'stopped' // ended after stop() asked it to
  | 'killed' // ended by kill(), or by stop() after the grace time
  | 'oom-killed' // the kernel killed it for going over its memory limit
  | 'lost' // gone, and nothing on disk says how
  | 'host-restarted' // gone with its host: the machine restarted (a power loss, a reboot) while it ran

export interface VmExit {
  code: number | null
  signal: string | null
  reason: ExitReason
  at: number
  /**
   * the fencing watchdog killed it (its agent fed the watchdog no more): when, by the
   * wall clock (the watchdog's mark; when the mark holds no time, when the exit was seen)
   */
  watchdogKillAt?: number
  /** `guard`: the VM's own guard killed it, as the watchdog's supervisor was gone (host-base.ts) */
  watchdogKillBy?: 'guard'
  /** the guard killed it as the supervisor's beats had stopped (stopped or stalled), not as it was gone */
  guardSawStall?: true
  /** when the run that ended began (ms since the epoch), where known */
  startedAt?: number
  /** what a crash with code 0 was, said by the driver ("its guest's kernel panicked ..."): the history says it, not "code 0" */
  why?: string
}

export interface VmNetwork {
  /** The node's end: a veth (process) or a tap (qemu). */
  hostIf: string
  hostAddress: string
  vmAddress: string
  prefix: number
  /** The VM's own network namespace (process driver). */
  netns?: string
  /** Its overlay address, when the grid gave it one (routed by the connection manager). */
  overlayAddress?: string
}

export interface VmInfo {
  id: string
  driver: DriverName
  state: VmState
  pid?: number
  /** ms since epoch, from the process's own start time in /proc where there is one. */
  startedAt?: number
  exit?: VmExit
  /** The driver's own error when state is 'failed'. */
  error?: string
  consolePath?: string
  network?: VmNetwork
  vcpus: number
  memoryMiB: number
  /** Driver details worth showing (accelerator, cgroup version and paths). */
  detail?: Record<string, string>
  /** why the guest does not run though its process does (QEMU paused it after a disk error); absent while it runs */
  paused?: string
}

export interface ProbeResult {
  ok: boolean
  /** qemu: which accelerator VMs get. */
  accel?: 'kvm' | 'tcg'
  /** process: which cgroup hierarchy holds the limits. */
  cgroup?: 'v1' | 'v2'
  /** Why not, or what was found. */
  detail: string
}

/** how a paused guest's reason begins (a lease's reason that says so is taken back when it runs again) */
export const GUEST_PAUSED = 'QEMU paused the guest after a disk error'
/** how the reason of a guest whose QEMU does not answer its control socket begins (taken back likewise) */
export const GUEST_STUCK = 'QEMU does not answer on its control socket'

/** whether a running VM's lease reason says its guest runs no more (paused, or its QEMU stuck) */
export const guestHeld = (reason: string | null | undefined): boolean => reason != null && (reason.startsWith(GUEST_PAUSED) || reason.startsWith(GUEST_STUCK))

export interface DriverEvents {
  state: [{ id: string, state: VmState, at: number }]
  exit: [{ id: string } & VmExit]
  /**
   * the guest of a running VM stopped running while its process runs on (`why`: QEMU
   * paused it after a disk error), or runs again (`why` null)
   */
  paused: [{ id: string, why: string | null, at: number }]
}

export interface VmDriver extends EventEmitter<DriverEvents> {
  readonly name: DriverName
  /** What this node can run and why not; cached after the first call. */
  probe: () => Promise<ProbeResult>
  /** Starts a VM; resolves once its process runs (state running), rejects with a DriverError. */
  start: (spec: DriverVmSpec) => Promise<VmInfo>
  /** Asks the guest to stop, then kills it after graceMs; resolves when it is gone. */
  stop: (id: string, graceMs: number) => Promise<VmInfo>
  /** Ends the VM with no guest cooperation; resolves when it is gone. */
  kill: (id: string) => Promise<VmInfo>
  inspect: (id: string) => Promise<VmInfo | undefined>
  /** Every VM of this driver on this node, including ones a previous agent run started. */
  list: () => Promise<VmInfo[]>
  /** The last `bytes` of the VM's console log. */
  consoleTail: (id: string, bytes?: number) => Promise<string>
  /**
   * The console log's last `bytes`, or at most that much of what came past `since` (a
   * follower's last end in the same run), as whole characters with the offsets they
   * begin and end at (one read) and the run's start: what `vm console --follow` reads by
   * (console-read.ts)
   */
  consoleRead?: (id: string, bytes: number, since?: ConsoleSince) => Promise<ConsoleRead>
  /**
   * Re-points a running VM's terminal names (a link made or removed after it started):
   * a process VM's /etc/hosts; a qemu guest's through a virtio port its init reads.
   */
  setNames?: (id: string, names: Record<string, string>) => Promise<void>
  /** Forgets a VM that is not running: its run dir and console log go. */
  remove: (id: string) => Promise<void>
  /** Stops watching; VMs keep running for the next agent run to adopt. */
  close: () => Promise<void>
}

export type DriverErrorCode = 'bad-spec' | 'exists' | 'not-found' | 'unsupported' | 'start-failed'

export class DriverError extends Error {
  override name = 'DriverError'
  readonly code: DriverErrorCode
  /** The spec field at fault, for bad-spec. */
  readonly field?: string
  constructor (code: DriverErrorCode, message: string, field?: string) {
    super(message)
    this.code = code
    this.field = field
  }
}
