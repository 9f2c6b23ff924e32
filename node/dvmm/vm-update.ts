// `vgrid vm update VM` and PATCH /v1/vms/:id: a VM's size, volumes, what it boots or
// runs (kernel, initrd, command line, image; a process VM's command and user), restart
// policy, labels, constraints, anti-affinity group and terminals changed in place, its
// name, history and lease epochs kept (before, only a `vm rm` and a `vm create` could,
// and lost the history).
//
// What a lease reserves is the size it was claimed with, and the holder runs the VM
// with that size (run-steps.ts driverSpec), so a size changed while a claim was made
// elsewhere never overcommits a node (invariant 2): a holder that finds its lease's size
// or disks no longer the spec's before it starts the VM parks the lease instead
// (decide.ts `leaseOutdated`), and the VM is placed anew as it is now.
import { RESTART_POLICIES, ID_PATTERN, type Lease, type Vm, type VmSpec } from '../../crdt/index.ts'
import type { Link } from '../lcm/rules.ts'
import { matchTerminal } from '../lcm/links.ts'
import { idle, isParked, type NodeView } from '../../crdt/placement/index.ts'
import { ValidationError, onlyFields } from '../errors.ts'
import { bytes, num, sayLabels } from '../cli/format.ts'
import { kernelMemoryProblem } from './boot-checks.ts'
import { BOOT_FIELDS, bootFieldsOf, fileProblemHere, type BootFields, type FileCheck } from './boot-fields.ts'
import { cpuOf, fitsSomeNode, memoryOf, noTerminalInBoth, strMap, terminalNames, volumeIds, STR_MAP_MAX, type VolumeLookup } from './vms.ts'

/** what an update request may hold */
export const UPDATE_FIELDS = ['cpu', 'memory', 'volumes', 'restart', 'labels', 'constraints', 'antiAffinity', 'inputs', 'outputs', ...BOOT_FIELDS] as const
export type UpdateField = typeof UPDATE_FIELDS[number]

/**
 * the fields a lease is claimed for (its size and disks) or a claim judged by (a node's
 * labels, the group's other VMs)
 */
export const CLAIM_FIELDS: readonly UpdateField[] = ['cpu', 'memory', 'volumes', 'constraints', 'antiAffinity']

/**
 * the fields that decide where a VM runs, what is reserved for it, which disks it
 * writes and what it boots: changed only while nothing of it runs
 */
export const STOPPED_FIELDS: readonly UpdateField[] = [...CLAIM_FIELDS, ...BOOT_FIELDS]

export interface VmUpdate {
  spec: VmSpec
  /** the fields whose value changes (none: the VM is already so) */
  changed: UpdateField[]
}

const invalid = (field: string, msg: string): ValidationError => new ValidationError(field, `${field}: ${msg}`)

/**
 * `patch` applied to a map of labels or constraints: a string sets a key, null removes
 * it (a key not there is no error: the map is then as asked).
 */
function patchedMap (cur: Readonly<Record<string, string>> | undefined, raw: unknown, field: 'labels' | 'constraints'): Record<string, string> {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(field, 'must be an object: a key set to a string sets it, set to null removes it')
  const out: Record<string, string> = { ...cur }
  const sets: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (v === null) delete out[k]
    else sets[k] = v
  }
  Object.assign(out, strMap(sets, field, true))
  const n = Object.keys(out).length
  if (n > STR_MAP_MAX) throw invalid(field, `would have ${n} entries, more than the ${STR_MAP_MAX} a VM may carry`)
  return out
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)
const sortedMap = (m: Readonly<Record<string, string>> | undefined): Array<[string, string]> => Object.entries(m ?? {}).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)

/**
 * Checks an update request against the VM and the grid (pure but for the kernel's
 * size, read where the VM boots a kernel of this node): its new spec and the fields it
 * changes, or a 400 naming the field. `volumes` is the whole new list (paths or ids, in
 * order: a qemu VM with neither kernel nor image boots from the first), checked as a
 * create checks it by `lookup`, whose `usedBy` must leave this VM out (409 for a volume
 * that is another VM's disk).
 */
export function vmUpdateOf (raw: unknown, vm: Pick<Vm, 'spec'>, nodes: readonly NodeView[], lookup?: VolumeLookup, files: FileCheck = fileProblemHere): VmUpdate {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('body', 'must be a JSON object')
  const b = raw as Record<string, unknown>
  onlyFields(b, [...UPDATE_FIELDS, 'bootVolume', 'volumesWere', 'inputsWere', 'outputsWere'])
  if (Object.keys(b).length === 0) throw invalid('body', `names nothing to change: give one or more of ${UPDATE_FIELDS.join(', ')}`)
  const old = vm.spec
  const spec: VmSpec = { ...old }
  if (b.cpu !== undefined) spec.cpu = cpuOf(b.cpu)
  if (b.memory !== undefined) spec.memoryBytes = memoryOf(b.memory, old.driver)
  if (b.cpu !== undefined || b.memory !== undefined) fitsSomeNode(spec.cpu, spec.memoryBytes, nodes)
  // a boot volume given to a VM that boots a kernel or an image: it boots from that volume instead
  const toVolume = b.bootVolume !== undefined && old.driver === 'qemu' && (old.kernel != null || old.image != null)
  if (b.volumes !== undefined) {
    if (lookup == null) throw invalid('volumes', 'cannot be checked here')
    spec.volumes = volumeIds(b.volumes, old.driver, lookup)
    const keepsVolumeBoot = old.driver === 'qemu' && old.kernel == null && old.image == null && !BOOT_FIELDS.some(f => typeof b[f] === 'string')
    if (keepsVolumeBoot && spec.volumes.length === 0) throw invalid('volumes', 'this VM boots from its first volume (it has neither kernel nor image): it keeps at least one')
    // another first volume is another boot disk: only when said (bb52: a detach and an
    // attach left a data volume first, and the VM failed to boot from it)
    const path = (id: string | undefined): string => id == null ? 'none' : lookup.find(id)?.path ?? id
    const said = typeof b.bootVolume === 'string' ? lookup.find(b.bootVolume)?.id : undefined
    if (keepsVolumeBoot && spec.volumes[0] !== old.volumes[0] && said !== spec.volumes[0]) {
      throw invalid('bootVolume', `this VM boots from its first volume, ${path(old.volumes[0])}: this update makes ${path(spec.volumes[0])} its boot disk; if that is meant, say so (bootVolume, --boot-volume ${path(spec.volumes[0])}), else keep ${path(old.volumes[0])} first`)
    }
  }
  if (b.bootVolume !== undefined) {
    if (typeof b.bootVolume !== 'string' || lookup?.find(b.bootVolume) == null) throw invalid('bootVolume', 'must be a volume\'s path or id')
    if (old.driver !== 'qemu') throw invalid('bootVolume', 'a process VM runs its command; it boots from no volume')
    const also = (['kernel', 'image'] as const).find(f => typeof b[f] === 'string')
    if (also != null) throw invalid('bootVolume', `given with ${also}: a VM boots from a volume, a kernel or an image, one of them: give bootVolume or ${also}`)
    if (lookup.find(b.bootVolume)?.id !== (b.volumes === undefined ? old.volumes[0] : spec.volumes[0])) throw invalid('bootVolume', 'must be the first of the volumes (the one the VM boots from)')
  }
  // what it boots, checked as a whole where the update changes it (rv56: a VM made before
  // one of create's checks must still take a new size or volume)
  const bootGiven = BOOT_FIELDS.some(f => b[f] !== undefined)
  if (!bootGiven && !toVolume && b.memory !== undefined && old.driver === 'qemu' && old.kernel != null) {
    const small = kernelMemoryProblem(old.kernel, old.initrd, spec.memoryBytes, typeof b.memory === 'string' ? b.memory : bytes(spec.memoryBytes))
    if (small != null) throw invalid('memory', small)
  }
  if (bootGiven || toVolume) {
    const boot = bootOf(b, spec, old, toVolume, lookup, files)
    for (const f of BOOT_FIELDS) delete spec[f]
    Object.assign(spec, boot)
    // its kernel or image taken away: it would boot from its first volume, which only a boot volume says
    const first = spec.volumes[0]
    if (old.driver === 'qemu' && (old.kernel != null || old.image != null) && spec.kernel == null && spec.image == null && !toVolume && first != null) {
      const path = lookup?.find(first)?.path ?? first
      throw invalid('bootVolume', `with neither kernel nor image this VM boots from its first volume, ${path}; if that is meant, say so (bootVolume, --boot-volume ${path})`)
    }
  }
  if (b.restart !== undefined) {
    // null: back to the default
    if (b.restart === null) delete spec.restart
    else if ((RESTART_POLICIES as readonly unknown[]).includes(b.restart)) spec.restart = b.restart as VmSpec['restart']
    else throw invalid('restart', `must be one of ${RESTART_POLICIES.join(', ')} (or null: the default, always)`)
  }
  if (b.antiAffinity !== undefined) {
    if (b.antiAffinity === null) delete spec.antiAffinity
    else if (typeof b.antiAffinity === 'string' && new RegExp(ID_PATTERN).test(b.antiAffinity)) spec.antiAffinity = b.antiAffinity
    else throw invalid('antiAffinity', 'must be a group name (letters, digits, . _ : @ -), or null for none (--no-anti-affinity)')
  }
  if (b.constraints !== undefined) spec.constraints = patchedMap(old.constraints, b.constraints, 'constraints')
  // the whole new list of each (null or [] for none), checked as a create checks them;
  // one it has kept as it is spelled (links name it so: a new case would leave them
  // carrying nothing); none is kept as [], "declares none", which an absent list is not
  // (a VM from before terminals has those its links use)
  for (const f of ['inputs', 'outputs'] as const) {
    if (b[f] === undefined) continue
    spec[f] = terminalNames(b[f] ?? [], f).map(t => matchTerminal(old[f] ?? [], t) ?? t)
  }
  if (b.inputs !== undefined || b.outputs !== undefined) noTerminalInBoth(spec.inputs ?? [], spec.outputs ?? [])
  if (b.labels !== undefined) {
    const labels = patchedMap(old.labels, b.labels, 'labels')
    if (Object.keys(labels).length > 0) spec.labels = labels
    else delete spec.labels
  }
  const changed = UPDATE_FIELDS.filter(f => fieldChanged(f, old, spec))
  return { spec, changed }
}

/** whether field `f` of an update differs between specs `a` and `b` (pure) */
export function fieldChanged (f: UpdateField, a: VmSpec, b: VmSpec): boolean {
  switch (f) {
    case 'cpu': return a.cpu !== b.cpu
    case 'memory': return a.memoryBytes !== b.memoryBytes
    case 'volumes': return !same(a.volumes, b.volumes)
    case 'restart': return (a.restart ?? 'always') !== (b.restart ?? 'always')
    case 'antiAffinity': return a.antiAffinity !== b.antiAffinity
    case 'labels': return !same(sortedMap(a.labels), sortedMap(b.labels))
    case 'constraints': return !same(sortedMap(a.constraints), sortedMap(b.constraints))
    case 'inputs': case 'outputs': return !same(a[f] ?? [], b[f] ?? [])
    default: return !same(a[f] ?? null, b[f] ?? null)
  }
}

/**
 * The boot fields of `spec` after update `b` of `old` (null removes one), checked as a
 * create checks them: one kind of boot replaces another (a kernel an image, an image a
 * kernel with its initrd and command line, a boot volume either). A file is looked for on
 * this node only where the update names another one: an unchanged kernel may exist only on
 * the nodes its constraints bind the VM to.
 */
function bootOf (b: Record<string, unknown>, spec: VmSpec, old: VmSpec, toVolume: boolean, lookup: VolumeLookup | undefined, files: FileCheck): BootFields {
  const merged: Record<string, unknown> = {}
  for (const f of BOOT_FIELDS) if (old[f] !== undefined) merged[f] = old[f]
  const drop = (fields: readonly string[]): void => { for (const f of fields) if (b[f] === undefined) delete merged[f] }
  if (typeof b.kernel === 'string') drop(['image'])
  if (typeof b.image === 'string') drop(['kernel', 'initrd', 'cmdline'])
  if (toVolume) drop(['kernel', 'initrd', 'cmdline', 'image'])
  for (const f of BOOT_FIELDS) {
    if (b[f] === null) delete merged[f]
    else if (b[f] !== undefined) merged[f] = b[f]
  }
  const changedFile: FileCheck = (p, kind) => (kind === 'program' ? old.command?.[0] === p : old[kind] === p) ? null : files(p, kind)
  return bootFieldsOf(merged, { driver: old.driver, memoryBytes: spec.memoryBytes, memoryGiven: typeof b.memory === 'string' ? b.memory : bytes(spec.memoryBytes), hasVolumes: spec.volumes.length > 0, constraints: spec.constraints, files: changedFile, isVolume: p => lookup?.find(p) != null })
}

/**
 * The links of VM `vm` (made `created`) that connect a terminal `spec` no longer
 * declares (pure; a former VM's links of the name are not its own): a terminal a link
 * uses is taken away only once the link is (vgrid link rm), or the link would be left
 * carrying nothing. Null when none.
 */
export function terminalInUse (vm: string, created: number | undefined, spec: Pick<VmSpec, 'inputs' | 'outputs'>, links: ReadonlyArray<Pick<Link, 'id' | 'from' | 'to'>>): string | null {
  const has = (list: readonly string[] | undefined, t: string): boolean => matchTerminal(list ?? [], t) != null
  const own = (e: Link['from']): boolean => e.vm === vm && (e.created == null || created == null || e.created === created)
  for (const l of links) {
    const [end, kind] = own(l.from) && !has(spec.outputs, l.from.terminal) ? [l.from, 'output'] : own(l.to) && !has(spec.inputs, l.to.terminal) ? [l.to, 'input'] : [null, '']
    if (end == null) continue
    return `${kind} terminal "${end.terminal}" of VM "${vm}" is used by link ${l.id} (${l.from.vm}.${l.from.terminal} -> ${l.to.vm}.${l.to.terminal}): remove the link first (vgrid link rm ${l.id}), then the terminal`
  }
  return null
}

/** the flag a field is changed by (what the CLI user typed) */
export const FLAG_OF: Record<UpdateField, string> = { cpu: 'cpu', memory: 'memory', volumes: 'volumes', restart: 'restart', labels: 'labels', constraints: 'constraints', antiAffinity: 'anti-affinity', inputs: 'inputs', outputs: 'outputs', command: 'command', user: 'user', kernel: 'kernel', initrd: 'initrd', cmdline: 'cmdline', image: 'image' }

/**
 * What an update changed, for the VM's history: `memory 64M -> 256M; labels tier=web ->
 * tier=api` (pure; `pathOf` names a volume by its path).
 */
export function changeSummary (before: VmSpec, after: VmSpec, changed: readonly UpdateField[], pathOf: (volume: string) => string = v => v): string {
  const short = (t: string): string => t.length > 60 ? `${t.slice(0, 57)}...` : t
  const mem = (b: number): string => b < 2 ** 30 ? `${num(b / 2 ** 20)}M` : `${num(b / 2 ** 30)}G`
  const say = (f: UpdateField, x: VmSpec): string => {
    switch (f) {
      case 'cpu': return num(x.cpu)
      case 'memory': return mem(x.memoryBytes)
      case 'volumes': return x.volumes.length === 0 ? 'none' : x.volumes.map(pathOf).join(', ')
      case 'restart': return x.restart ?? 'always'
      case 'labels': return sayLabels(x.labels ?? {}) || 'none'
      case 'constraints': return sayLabels(x.constraints) || 'none'
      case 'antiAffinity': return x.antiAffinity ?? 'none'
      case 'inputs': case 'outputs': return (x[f] ?? []).join(', ') || 'none'
      case 'command': return x.command == null ? 'none' : short(x.command.join(' '))
      case 'user': return x.user ?? 'root'
      default: return x[f] == null ? 'none' : short(x[f])
    }
  }
  return changed.map(f => `${FLAG_OF[f]} ${say(f, before)} -> ${say(f, after)}`).join('; ')
}

/**
 * The members in sight that run an earlier release (their advert's `vmHost` without
 * `leaseSized`): one of those starts a VM with its spec's size and disks, whatever its
 * lease was claimed for, so a change of them could merge after its claim and overcommit
 * its node. One whose drivers are not probed yet (no `vmHost`) runs no VM yet.
 */
export function olderAgents (members: ReadonlyMap<string, { state: string, advert: { name: string, vmHost?: { leaseSized?: boolean } | null } }>): string[] {
  return [...members.values()].filter(m => (m.state === 'alive' || m.state === 'suspect') && m.advert.vmHost != null && m.advert.vmHost.leaseSized !== true).map(m => m.advert.name).sort()
}

/** where the VM's lease stands, as an update of placement fields sees it */
export interface LeaseNow {
  status?: Lease['status']
  parked?: boolean
  /** the lease is this VM's (not a former VM's of the name) */
  own: boolean
  /** its holder is out of sight: how long its run there may still go on (its fence, notice and takeover margin; 0: ended) */
  awayLeftMs?: number
}

/**
 * Whether a change of `changed` must wait until nothing of the VM runs (pure): the
 * placement fields while its lease is neither idle nor parked (it runs, starts or is
 * claimed), unless its holder is out of sight past the time its run there could go on
 * (its fence ended it; bb52: a VM stopped on a dead node could not be moved to other
 * nodes by its constraints). A lease of a former VM of the name is not its own.
 */
export function runsForUpdate (changed: readonly UpdateField[], lease: LeaseNow | undefined): boolean {
  if (!changed.some(f => STOPPED_FIELDS.includes(f)) || lease == null || !lease.own) return false
  if (idle({ status: lease.status }) || isParked({ status: lease.status, parked: lease.parked })) return false
  return lease.awayLeftMs == null || lease.awayLeftMs > 0
}

/** The sentence of a 409 for an update of placement fields while the VM runs (or may, on a node out of sight). */
export function runningUpdateWhy (name: string, node: string, changed: readonly UpdateField[], lease: Pick<LeaseNow, 'status' | 'awayLeftMs'> = {}): string {
  const which = changed.filter(f => STOPPED_FIELDS.includes(f))
  const where = lease.awayLeftMs != null
    ? `may still run on ${node}, which is out of sight: its run there ends by its fence${Number.isFinite(lease.awayLeftMs) ? ` within ${Math.ceil(lease.awayLeftMs / 1000)} s` : ', which this node can judge once it has had a majority for a fence wait'}`
    : lease.status === 'stopping' ? `is stopping on ${node}` : `runs on ${node} (or is being started there)`
  const then = lease.awayLeftMs != null || lease.status === 'stopping'
    ? `wait until nothing of it runs (vgrid vm wait ${name} --for stopped), then update it`
    : `stop it first (vgrid vm stop ${name} --wait), update it, then start it`
  return `VM "${name}" ${where}: a VM's cpu, memory, volumes, constraints, anti-affinity group and what it boots or runs change only while nothing of it runs, as they decide where it runs, what is reserved for it, which disks it writes and what it boots (this update changes ${which.map(f => FLAG_OF[f]).join(' and ')}); ${then} (labels, terminals and the restart policy change at any time)`
}
