// VM operations behind /v1/vms and the CLI: a create request checked field by field
// (a 4xx naming the field, never a crash), and the views `ls` and `show` answer with.
import { ID_PATTERN, LABEL_KEY_PATTERN, RESTART_POLICIES, TERMINAL_RE, TERMINALS_MAX, type Draft, type Reader, type Vm, type Writer } from '../../crdt/index.ts'
import { idle, isParked, rank, restartPending, usageOf, type Ranking } from '../../crdt/placement/index.ts'
import { bytes } from '../cli/format.ts'
import { bootFieldsOf, fileProblemHere, type FileCheck } from './boot-fields.ts'
import { parseSize } from '../resources.ts'
import { ConflictError, NotFoundError, ValidationError, onlyFields } from '../errors.ts'
import { leaseReason, type HistoryEvent } from './history.ts'
import { guestHeld, type VmInfo } from './drivers/types.ts'
import { awaitsPlacement, demandOf, formerLease, holdings, vmState, type DocView, type LeaseView } from './view.ts'
import type { NodeView } from '../../crdt/placement/index.ts'

/** a 400 naming the field, in the message too */
const invalid = (field: string, msg: string): ValidationError => new ValidationError(field, `${field}: ${msg}`)

/** VM names are ids too: they name run dirs, cgroups and interfaces on the holder */
export const VM_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/

export interface CreateVmBody {
  name: string
  app?: string | null
  cpu: number
  /** bytes, or a size like "512M" */
  memory: number | string
  driver: 'qemu' | 'process'
  command?: string[]
  /** process VMs: the user (name or uid) the command runs as, without capabilities (default root) */
  user?: string
  kernel?: string
  initrd?: string
  cmdline?: string
  image?: string
  /** volumes (paths like /shop/db/data, or ids) attached in order as the guest's disks (qemu) */
  volumes?: string[]
  restart?: 'always' | 'on-failure' | 'never'
  labels?: Record<string, string>
  constraints?: Record<string, string>
  antiAffinity?: string
  desired?: 'running' | 'stopped'
  /** terminal names links may connect to (an input takes many links) */
  inputs?: string[]
  /** terminal names links may start from (each goes to exactly one input); inside the VM each resolves to its peer */
  outputs?: string[]
}

/** labels or constraints one VM may carry: every agent holds every VM's spec */
export const STR_MAP_MAX = 64

export const strMap = (v: unknown, field: string, keys = false): Record<string, string> => {
  if (v === undefined) return {}
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw invalid(field, 'must be an object of strings')
  const n = Object.keys(v).length
  if (n > STR_MAP_MAX) throw invalid(field, `has ${n} entries, more than the ${STR_MAP_MAX} a VM may carry`)
  for (const [k, x] of Object.entries(v)) {
    if (k.length > (keys ? 63 : 128)) throw invalid(field, `key "${k.slice(0, 40)}..." is longer than ${keys ? '63 characters (a label key has 1-63)' : '128 characters'}`)
    if (typeof x !== 'string' || x.length > 256) throw invalid(`${field}.${k}`, 'must be a string of at most 256 characters')
    if (keys && !new RegExp(LABEL_KEY_PATTERN).test(k)) throw invalid(field, `key ${JSON.stringify(k)} is not a label key (1-63 letters, digits, ".", "_", "/" or "-", starting and ending with a letter or digit)`)
  }
  return v as Record<string, string>
}

/** A create request's input or output terminals: names that can be host names, each once. */
export function terminalNames (raw: unknown, field: 'inputs' | 'outputs'): string[] {
  if (raw === undefined) return []
  if (!Array.isArray(raw) || raw.length > TERMINALS_MAX) throw invalid(field, `must be an array of at most ${TERMINALS_MAX} terminal names`)
  raw.forEach((t: unknown, i) => {
    if (typeof t !== 'string' || !TERMINAL_RE.test(t)) throw invalid(`${field}[${i}]`, `${JSON.stringify(t)} is not a terminal name (a letter, then letters, digits, _ or -, at most 63)`)
    // names resolve as host names inside the VM, where case does not count
    if (t.toLowerCase() === 'localhost') throw invalid(`${field}[${i}]`, '"localhost" cannot be a terminal: inside the VM it names the VM itself (/etc/hosts), so a link through it could never be reached')
    if (raw.findIndex((u: string) => u.toLowerCase() === t.toLowerCase()) !== i) throw invalid(`${field}[${i}]`, `"${t}" is listed twice (names are host names: case does not count)`)
  })
  return raw as string[]
}

/** a terminal is an input or an output, not both (names compared as host names: case does not count) */
export function noTerminalInBoth (inputs: readonly string[], outputs: readonly string[]): void {
  const both = inputs.find(t => outputs.some(o => o.toLowerCase() === t.toLowerCase()))
  if (both != null) throw invalid('outputs', `"${both}" is an input too: a terminal is an input or an output`)
}

/** What a create request may attach: volumes by path or id, and the VMs that use each already. */
export interface VolumeLookup {
  /** a volume by path or id, with its snapshots' names */
  find: (ref: string) => { id: string, path: string, snapshots: string[] } | undefined
  /** the VM that has volume `id` as a disk (other than `except`) */
  usedBy: (id: string, except?: string) => string | undefined
}

const NO_VOLUMES: VolumeLookup = { find: () => undefined, usedBy: () => undefined }

/** volumes by path or id, and the VM that has each as a disk, as a reader of the document sees them */
export function volumeLookup (r: Pick<Reader, 'list'>): VolumeLookup {
  const vols = r.list('volumes')
  const vms = r.list('vms')
  return {
    find: ref => {
      const v = vols.find(v => v.id === ref || v.path === ref || v.path === `/${ref}`)
      return v == null ? undefined : { id: v.id, path: v.path, snapshots: Object.keys(v.snapshots) }
    },
    usedBy: (id, except) => vms.find(vm => vm.id !== except && vm.spec.volumes.includes(id))?.id
  }
}

/** the smallest memory a VM gets: a cgroup's grain (MiB) for a process; for a qemu guest what a small kernel needs to boot */
export const MIN_MEMORY = { process: 2 ** 20, qemu: 16 * 2 ** 20 } as const
/** the smallest cpu share: the cfs quota's grain (1 ms of a 100 ms period) */
export const MIN_CPU = 0.01

/** A request's `cpu`: vCPUs, a JSON number from MIN_CPU to 4096 (a 400 naming the field otherwise). */
export function cpuOf (raw: unknown): number {
  if (typeof raw !== 'number') throw invalid('cpu', `must be a JSON number of vCPUs above 0, not ${raw === undefined ? 'missing' : `a ${raw === null ? 'null' : typeof raw} (${JSON.stringify(raw).slice(0, 40)})`}`)
  if (raw === Infinity) throw invalid('cpu', 'reads as infinite, more than the 4096 vCPUs a VM may have')
  if (!Number.isFinite(raw) || raw <= 0) throw invalid('cpu', 'must be a number of vCPUs above 0')
  if (raw < MIN_CPU) throw invalid('cpu', `${raw} is below ${MIN_CPU}, the smallest share a VM gets`)
  if (raw > 4096) throw invalid('cpu', `${raw} vCPUs is more than the 4096 a VM may have`)
  return raw
}

/** A request's `memory` (bytes, or a size like "512M") for a VM of `driver`: whole bytes, at least what the driver needs. */
export function memoryOf (raw: unknown, driver: 'qemu' | 'process'): number {
  let memoryBytes: number
  try {
    memoryBytes = typeof raw === 'number' ? raw : typeof raw === 'string' ? parseSize(raw) : NaN
  } catch (err) {
    throw invalid('memory', (err as Error).message)
  }
  if (!Number.isFinite(memoryBytes) || memoryBytes <= 0) throw invalid('memory', memoryBytes === Infinity ? 'is larger than any node has (bytes, or e.g. 512M)' : 'must be a size above zero (bytes, or e.g. 512M)')
  if (memoryBytes > Number.MAX_SAFE_INTEGER) throw invalid('memory', `${String(raw)} is more than any node has`)
  if (!Number.isInteger(memoryBytes)) throw invalid('memory', `${String(raw)} is not a whole number of bytes`)
  // a bare number is bytes: "128" was likely meant as 128M
  const bare = typeof raw === 'number' || /^\s*\d+\s*$/.test(String(raw)) ? ` (a number alone is bytes: ${String(raw).trim()}M?)` : ''
  if (memoryBytes < MIN_MEMORY[driver]) throw invalid('memory', `${typeof raw === 'string' ? raw : bytes(memoryBytes)} is below the ${MIN_MEMORY[driver] / 2 ** 20}M a ${driver} VM needs at least${bare}`)
  return memoryBytes
}

/** A VM bigger than every known node can never run: a 400 naming what is too big. */
export function fitsSomeNode (cpu: number, memoryBytes: number, nodes: readonly NodeView[]): void {
  const cpuMax = Math.max(0, ...nodes.map(n => n.capacity.cpu))
  const memMax = Math.max(0, ...nodes.map(n => n.capacity.memoryBytes))
  if (cpu > cpuMax) throw invalid('cpu', `${cpu} vCPUs is more than any node has (largest: ${cpuMax})`)
  if (memoryBytes > memMax) throw invalid('memory', `${bytes(memoryBytes)} is more than any node has (largest: ${bytes(memMax)})`)
}

/** what a VM create request may hold */
const VM_FIELDS = ['name', 'app', 'driver', 'cpu', 'memory', 'command', 'user', 'kernel', 'initrd', 'cmdline', 'image', 'volumes', 'inputs', 'outputs', 'restart', 'antiAffinity', 'desired', 'constraints', 'labels'] as const

/**
 * Checks a create request against the grid: `nodes` are the known nodes (a VM bigger
 * than every node can never run), `files` checks the paths it names (on this node),
 * `volumes` the volume store's namespace.
 */
export function vmDraft (raw: unknown, doc: DocView, nodes: readonly NodeView[], files: FileCheck = fileProblemHere, volumes: VolumeLookup = NO_VOLUMES): Draft<'vms'> {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('body', 'must be a JSON object')
  const b = raw as Record<string, unknown>
  onlyFields(b, VM_FIELDS)
  if (typeof b.name !== 'string' || !VM_NAME.test(b.name)) throw invalid('name', `${typeof b.name === 'string' ? `${JSON.stringify(b.name.length <= 80 ? b.name : `${b.name.slice(0, 40)}…`)} ` : ''}must be 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit`)
  if (b.driver === undefined) throw invalid('driver', 'is missing: "qemu" or "process"')
  if (b.driver !== 'qemu' && b.driver !== 'process') throw invalid('driver', `must be "qemu" or "process", not ${JSON.stringify(b.driver)}`)
  const cpu = cpuOf(b.cpu)
  const memoryBytes = memoryOf(b.memory, b.driver)
  const constraints = strMap(b.constraints, 'constraints', true)
  const boot = bootFieldsOf(b, { driver: b.driver, memoryBytes, memoryGiven: typeof b.memory === 'string' ? b.memory : bytes(memoryBytes), hasVolumes: Array.isArray(b.volumes) && b.volumes.length > 0, constraints, files, isVolume: p => volumes.find(p) != null })
  const vols = volumeIds(b.volumes, b.driver, volumes)
  const inputs = terminalNames(b.inputs, 'inputs')
  const outputs = terminalNames(b.outputs, 'outputs')
  noTerminalInBoth(inputs, outputs)
  if (b.restart !== undefined && !(RESTART_POLICIES as readonly unknown[]).includes(b.restart)) throw invalid('restart', `must be one of ${RESTART_POLICIES.join(', ')}`)
  if (b.antiAffinity !== undefined && (typeof b.antiAffinity !== 'string' || !new RegExp(ID_PATTERN).test(b.antiAffinity))) throw invalid('antiAffinity', 'must be a group name (letters, digits, . _ : @ -)')
  if (b.app !== undefined && b.app !== null && (typeof b.app !== 'string' || !new RegExp(ID_PATTERN).test(b.app))) throw invalid('app', 'must be an application id: a letter or digit, then up to 127 letters, digits or . _ : @ - (no spaces)')
  if (b.desired !== undefined && b.desired !== 'running' && b.desired !== 'stopped') throw invalid('desired', 'must be running or stopped')
  fitsSomeNode(cpu, memoryBytes, nodes)
  const labels = b.labels === undefined ? undefined : strMap(b.labels, 'labels', true)
  // last: a request wrong in itself says so, whatever the name
  if (doc.vms.has(b.name)) throw new ConflictError(`a VM named "${b.name}" already exists`, 'name_in_use')
  const opt = <T>(k: string, v: T | undefined): Record<string, T> => v === undefined ? {} : { [k]: v }
  return {
    id: b.name,
    name: b.name,
    app: (b.app as string | null | undefined) ?? null,
    desired: (b.desired as 'running' | 'stopped' | undefined) ?? 'running',
    spec: {
      driver: b.driver,
      cpu,
      memoryBytes,
      volumes: vols,
      constraints,
      ...boot,
      ...opt('restart', b.restart as CreateVmBody['restart']),
      ...opt('antiAffinity', b.antiAffinity as string | undefined),
      ...(labels === undefined ? {} : { labels }),
      ...(inputs.length > 0 ? { inputs } : {}),
      ...(outputs.length > 0 ? { outputs } : {})
    }
  }
}

export interface VmRow {
  id: string
  name: string
  app: string | null
  desired: Vm['desired']
  /**
   * `unknown`: its holder is not alive, so whether it runs is not known here (lostVms);
   * `paused`: it runs, but its driver holds the guest paused (QEMU after a disk error),
   * as its lease's reason says (the lease's status stays `running`, which every agent reads)
   */
  state: ReturnType<typeof vmState> | 'unknown' | 'paused'
  /** the holder's name (null when pending) */
  node: string | null
  nodeId: string | null
  epoch: number | null
  cpu: number
  memoryBytes: number
  driver: Vm['spec']['driver']
  /** why it is pending, failed, stopped or unknown */
  reason: string | null
}

/** a VM that should run whose lease holder is not alive (lostVms) */
export interface LostVm {
  vm: string
  name: string
  node: string
  nodeName: string
  /** why no live node can take it now; null: one can, once the holder's fence timeout has passed */
  fitsNowhere: string | null
  /** the holder's agent stopped for a restart (its roll entry's restart record): its VMs run on under its watchdog for longer */
  restarting?: true
}

/**
 * The VMs that should run and whose holder is not alive (dead, or gone from the
 * grid): they run nowhere this node knows of (the holder's watchdog kills them within
 * its fence timeout) until a live node takes them over, which it does only where one
 * fits them. `nodes`: as nodeViews makes them (this node counts as alive). `only`:
 * that one VM (the others still count for where it would fit). `nameOf`: the name of a
 * node no longer a member (forgotten). `restarting`: whether a node stopped for a restart
 * may still run its VMs (DvmmService.restartGraceLeftMs counts it on this node's clock
 * from when it last heard the node, as the takeover does; default: its record's own stamp).
 */
export function lostVms (doc: DocView, nodes: readonly NodeView[], only?: string, nameOf: (id: string) => string = id => id, restarting: (node: string) => boolean = node => restartPending(doc.roll.get(node)?.restart, Date.now())): LostVm[] {
  const alive = new Set(nodes.filter(n => n.alive).map(n => n.id))
  const out: LostVm[] = []
  for (const [id, l] of doc.leases) {
    if (only != null && id !== only) continue
    const vm = doc.vms.get(id)
    const status = l.winner.status
    // a former VM's run (the VM removed, made again) is not this one's: it waits for a place instead
    if (vm == null || vm.desired !== 'running' || alive.has(l.winner.holder) || status === 'stopped' || status === 'failed' || formerLease(vm, l)) continue
    const holder = l.winner.holder
    out.push({ vm: id, name: vm.name, node: holder, nodeName: nodes.find(n => n.id === holder)?.name ?? nameOf(holder), fitsNowhere: placementNow(vm, doc, nodes).pending ?? null, ...(doc.roll.get(holder)?.restart != null && restarting(holder) ? { restarting: true as const } : {}) })
  }
  return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
}

/**
 * What `vm ls` and `vm show` say of a lost VM. `noMajority`: why this node places
 * nothing now (it sees no majority of the roll), if so; `heldMs`: how long a vote lock
 * still holds its takeovers back (DvmmService.voteLockHoldsMs).
 */
export function lostReason (l: LostVm, noMajority?: string, heldMs = 0, restart?: { watchdogLeftMs: number, leftMs: number }): string {
  // a node that sees no majority cannot tell a dead node from one cut off from it, nor
  // whether another node took the VM over: the majority side may run it (and fit it)
  if (noMajority != null) return `its node ${l.nodeName} is not in sight of this node, which ${noMajority}: whether the VM runs there or was taken over is not known here`
  // a restart first: its VMs run on under the grace whether or not another node fits them
  // (`restart`: the grace as this node counts it; the watchdog kills before the fence ends)
  const next = l.restarting === true
    ? restartLost(l, restart, heldMs)
    : l.fitsNowhere != null
      ? `no other node fits it: ${l.fitsNowhere}`
      // a majority that counts a member back from a restart waits for the vote it may have lent to lapse (a tester read "once the fence timeout has passed" for a minute)
      : heldMs > 0
        ? `it moves once that node's fence timeout has passed, and not within ${Math.ceil(heldMs / 1000)} s: this node's majority counts a member back from a restart only once the vote it may have lent, to keep VMs alive elsewhere, has lapsed`
        : 'it moves once that node\'s fence timeout has passed'
  return `its node ${l.nodeName} is not alive; ${next}`
}

/** a lost VM whose holder stopped for a restart: under its watchdog still, or killed by it (bb42: said to run on after the kill) */
function restartLost (l: LostVm, restart?: { watchdogLeftMs: number, leftMs: number }, heldMs = 0): string {
  if (restart != null && restart.watchdogLeftMs <= 0) {
    // an agent back just in time feeds that watchdog before this node hears of it (rv44)
    return `its agent stopped for a restart and, as this node last heard, was not back within its restart grace, so its watchdog has killed the VM there unless the agent came back just in time; ${l.fitsNowhere != null ? `no other node fits it: ${l.fitsNowhere}` : `it moves once that node's fence timeout has passed, within ${Math.ceil(Math.max(restart.leftMs, heldMs) / 1000)} s`}`
  }
  const more = restart != null ? ` (${Math.ceil(restart.watchdogLeftMs / 1000)} s more)` : ''
  return `its agent stopped for a restart, and the VM may run on there under its watchdog for its restart grace${more}; ${l.fitsNowhere != null ? `if the agent is not back by then, no other node fits it: ${l.fitsNowhere}` : 'it moves only if the agent is not back by then'}`
}

export function vmRow (vm: Vm, l: LeaseView | undefined, nameOf: (id: string) => string, pendingReason?: string | null): VmRow {
  const leaseState = vmState(vm, l)
  // a guest QEMU paused stood `running` while it did nothing (a tester read it as fine)
  const paused = leaseState === 'running' && guestHeld(l?.winner.reason)
  const state = paused ? 'paused' : leaseState
  // a parked lease of a VM started again: it waits for a holder, as with none; so does a former VM's
  const held = l == null || awaitsPlacement(vm, l) || formerLease(vm, l) ? undefined : l.winner
  return {
    id: vm.id,
    name: vm.name,
    app: vm.app,
    desired: vm.desired,
    state,
    node: held == null ? null : nameOf(held.holder),
    nodeId: held?.holder ?? null,
    epoch: held?.epoch ?? null,
    cpu: vm.spec.cpu,
    memoryBytes: vm.spec.memoryBytes,
    driver: vm.spec.driver,
    // starting: why it starts (again) when its lease says (a crash, a fence's or the watchdog's kill); none for a first claim
    reason: state === 'pending'
      ? pendingReason ?? 'waiting for a claim to settle'
      : state === 'failed' || state === 'stopped' || (state === 'starting' && l?.winner.status === 'starting')
        ? l?.winner.reason ?? null
        // stopping: what happens meanwhile (a tester saw "stopping" for 10 s with no word)
        : state === 'stopping' && held != null ? `asked to stop on ${nameOf(held.holder)}: the guest shuts down, or is killed after its node's stop grace time (10 s by default)`
          // its guest paused by its driver: why, and when it goes on
          : paused ? l?.winner.reason ?? null : null
  }
}

export interface VmDetail extends VmRow {
  /** when this VM of the name was made (ms; null: by an agent of an earlier release): one made again under the name has another */
  created: number | null
  /** its overlay address (stable across moves), null where the grid has no overlay */
  address: string | null
  /** on its holder: what the driver reports (pid, start time, interface, netns, accelerator, cgroups) */
  runtime: VmInfo | null
  spec: Vm['spec']
  /** its volumes (`spec.volumes` holds their ids) with their paths now (null: no such volume any more), and, while it runs, their health */
  disks: Array<{ id: string, path: string | null, state?: string, reasons?: string[] }>
  lease: LeaseView['winner'] | null
  /** concurrent claims still in the document (a contest not yet settled) */
  claims: number
  /** the ranking as it stands now (every node's reasons and scores) */
  placement: Ranking
  /** the ranking this agent computed when it claimed the VM, if it did */
  decision: { at: string, ranking: Ranking } | null
  history: Array<Omit<HistoryEvent, 'at'> & { at: string }>
  /** events of its lease's log this agent cannot read (a newer agent's, damage): left out of `history` */
  historyUnreadable: number
}

/** A create request's volumes as ids: each exists, once, and is no other VM's disk (one writer per volume). */
export function volumeIds (raw: unknown, driver: unknown, volumes: VolumeLookup): string[] {
  if (raw === undefined) return []
  if (!Array.isArray(raw) || raw.length > 64 || !raw.every(r => typeof r === 'string' && r.length <= 2048)) throw invalid('volumes', 'must be an array of at most 64 volume paths or ids')
  const empty = raw.findIndex(r => r === '')
  if (empty >= 0) throw invalid(`volumes[${empty}]`, 'is empty: give a volume\'s path or id')
  if (raw.length > 0 && driver !== 'qemu') throw invalid('volumes', 'a process VM cannot attach volumes (it has no block devices); use the qemu driver')
  const ids: string[] = []
  raw.forEach((ref: string, i) => {
    const v = volumes.find(ref)
    // VOL@SNAP: a snapshot is read-only, and a disk is written
    const at = ref.indexOf('@')
    const of = v == null && at > 0 ? volumes.find(ref.slice(0, at)) : undefined
    if (of != null) {
      const name = ref.slice(at + 1)
      if (!of.snapshots.includes(name)) throw invalid(`volumes[${i}]`, `${of.path} has no snapshot "${name}"${of.snapshots.length > 0 ? ` (it has ${of.snapshots.join(', ')})` : ''}`)
      throw invalid(`volumes[${i}]`, `"${ref}" is a snapshot of ${of.path}, read-only: a VM's disk is written; clone it (vgrid vol clone ${ref} NEWPATH) and give the clone`)
    }
    // a path given without its leading slash is a common slip: say what was meant (bb34)
    if (v == null) throw invalid(`volumes[${i}]`, `no volume "${ref}"${!ref.startsWith('/') && !ref.startsWith('vol-') && volumes.find(`/${ref}`) != null ? ` (a volume's path starts with /: /${ref})` : !ref.startsWith('/') && !ref.startsWith('vol-') ? ' (a volume\'s path starts with /, or give its id, vol-...)' : ''}`)
    if (ids.includes(v.id)) throw invalid(`volumes[${i}]`, `${v.path} is listed twice`)
    const user = volumes.usedBy(v.id)
    if (user != null) throw new ConflictError(`volumes[${i}]: ${v.path} is already a disk of VM ${user} (a volume has one writer at a time)`, 'volume_in_use')
    ids.push(v.id)
  })
  return ids
}

/** the VM's ranking on the current inputs, as if it had to be placed now */
export function placementNow (vm: Vm, doc: DocView, nodes: readonly NodeView[]): Ranking {
  return rank(demandOf(vm, doc), nodes, usageOf(holdings(doc, new Set([vm.id]))))
}

/**
 * VMs that should run, hold no lease, and that no node fits now (pure): pending, and
 * running nowhere (a drain that found no room, a VM bigger than any free room). Not
 * those only waiting for a claim to settle.
 */
export function unplacedVms (doc: DocView, nodes: readonly NodeView[]): Array<{ vm: string, reason: string }> {
  const out: Array<{ vm: string, reason: string }> = []
  for (const vm of doc.vms.values()) {
    if (!awaitsPlacement(vm, doc.leases.get(vm.id))) continue
    const why = placementNow(vm, doc, nodes).pending
    if (why != null) out.push({ vm: vm.name, reason: why })
  }
  return out.sort((a, b) => a.vm < b.vm ? -1 : 1)
}

/**
 * In a write: the lease of VM `id` removed if nothing runs under it (stopped, failed:
 * idle). A VM's id is its name, and only a lease's holder releases it: a lease left
 * `stopped` by a VM stopped on request (or the crash rule) would otherwise outlive a
 * removal (for good where its holder is dead) and hold a new VM of the same name,
 * which nothing starts under a stopped lease. True if removed.
 */
function removeIdleLease (w: Writer, id: string): boolean {
  const l = w.reader.get('leases', id)?.value
  return l != null && idle(l) && w.remove('leases', id)
}

/**
 * In a write (`vm create`): the new VM; a lease of a former VM of its name that nothing
 * runs under goes with the same write. Throws if the name is in use, also by a former
 * VM of the name that its holder (alive: `holderUp`) still runs or is stopping: the
 * new VM would take over that run and its lease, whose reservation is the old spec's
 * (invariant 2). A holder that is not alive was fenced: its lease is taken over, for
 * the new VM, after the fence wait, as for any lease of a dead holder.
 */
export function createVmIn (w: Writer, draft: Draft<'vms'>, holderUp: (node: string) => string | null | { name: string, suspect: true } = () => null): Vm {
  if (w.reader.get('vms', draft.id) != null) throw new ConflictError(`a VM named "${draft.id}" already exists`, 'name_in_use')
  removeIdleLease(w, draft.id)
  for (const l of w.reader.candidates('leases', draft.id)) {
    const up = idle(l) ? null : holderUp(l.holder)
    if (up == null) continue
    // a suspect holder may be dead (a crash): nobody stops the run then, its fence ends it
    const who = typeof up === 'string'
      ? `${up} is still stopping it (its lease, epoch ${l.epoch}, is ${l.status ?? 'claimed'}): create it again once that node has released it (a few seconds)`
      : `${up.name}, which holds its lease (epoch ${l.epoch}, ${l.status ?? 'claimed'}), has not been heard from for a moment: create it again once that node has released it, or, if it is dead, once its fence timeout has passed and its run there has surely ended`
    // a code of its own: it passes (a few seconds), where name_in_use does not (bb49: a retry loop could not tell them apart)
    throw new ConflictError(`a VM named "${draft.id}" was removed, and ${who}`, 'still_stopping')
  }
  // a link names a VM that exists (it cannot be made first), so a link of this name now
  // was made for a former VM of it, concurrently with that VM's removal (which took the
  // links it saw): it goes, and the new VM starts with none (bb27: it was connected)
  for (const c of w.reader.list('connections')) if (c.from.vm === draft.id || c.to.vm === draft.id) w.remove('connections', c.id)
  return w.put('vms', { ...draft, created: w.at })
}

/**
 * In a write (`vm rm`): the VM, its links (a VM made again under the name must not
 * inherit them) and its lease if nothing runs under it (a stopped VM's, whose holder may
 * be dead); a lease a run may still hold is released by its holder once it stopped the
 * VM (decide.ts), or taken over if that holder is dead. Returns the links removed.
 */
export function removeVmIn (w: Writer, id: string): string[] {
  w.remove('vms', id)
  const gone = w.reader.list('connections').filter(c => c.from.vm === id || c.to.vm === id).map(c => c.id)
  for (const c of gone) w.remove('connections', c)
  removeIdleLease(w, id)
  return gone
}

/**
 * In a write (`vm start`, `vm stop`): the VM's desired state; started, a lease nothing
 * runs under goes (it is placed anew), and a restart pause its holder waits out ends
 * (`startAsked`; bb54: vm start said "now starting" and the pause went on)
 */
export function setDesiredIn (w: Writer, id: string, desired: 'running' | 'stopped'): void {
  w.update('vms', id, desired === 'running' ? { desired, startAsked: w.at } : { desired })
  if (desired === 'running') parkIdleLease(w, id)
}

/**
 * In a write (`vm start`): the lease of VM `id`, if nothing runs under it (stopped,
 * failed), parked: any node places the VM anew over it at the next epoch (never back to
 * 1: its volumes' writer epochs follow it), its history carried on.
 */
function parkIdleLease (w: Writer, id: string): void {
  const l = w.reader.get('leases', id)?.value
  if (l == null || !idle(l) || isParked(l)) return
  if (!Number.isSafeInteger(l.epoch + 1)) { w.remove('leases', id); return }
  w.update('leases', id, { status: 'stopped', parked: true, reason: leaseReason(`started again by vm start${l.reason != null ? ` (it was ${l.status}: ${l.reason})` : ''}`) })
}

export function findVm (doc: DocView, id: string): Vm {
  const vm = doc.vms.get(id) ?? [...doc.vms.values()].find(v => v.name === id)
  if (vm == null) throw new NotFoundError(id.length <= 128 ? `no VM "${id}"` : `no VM "${id.slice(0, 40)}…" (${id.length} characters: a VM's name has at most 63, its id 128)`)
  return vm
}
