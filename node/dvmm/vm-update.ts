// `vgrid vm update VM` and PATCH /v1/vms/:id: a VM's size, volumes, restart policy,
// labels, constraints and anti-affinity group changed in place, its name, history and
// lease epochs kept (before, only a `vm rm` and a `vm create` could, and lost the history).
//
// What a lease reserves is the size it was claimed with, and the holder runs the VM
// with that size (run-steps.ts driverSpec), so a size changed while a claim was made
// elsewhere never overcommits a node (invariant 2): a holder that finds its lease's size
// or disks no longer the spec's before it starts the VM parks the lease instead
// (decide.ts `leaseOutdated`), and the VM is placed anew as it is now.
import { RESTART_POLICIES, ID_PATTERN, type Lease, type Vm, type VmSpec } from '../../crdt/index.ts'
import { idle, isParked, type NodeView } from '../../crdt/placement/index.ts'
import { ValidationError, onlyFields } from '../errors.ts'
import { kernelMemoryProblem } from './boot-checks.ts'
import { bytes } from '../cli/format.ts'
import { cpuOf, fitsSomeNode, memoryOf, strMap, volumeIds, STR_MAP_MAX, type VolumeLookup } from './vms.ts'

/** what an update request may hold */
export const UPDATE_FIELDS = ['cpu', 'memory', 'volumes', 'restart', 'labels', 'constraints', 'antiAffinity'] as const
export type UpdateField = typeof UPDATE_FIELDS[number]

/**
 * the fields that decide where a VM runs, what is reserved for it and which disks it
 * writes: changed only while nothing of it runs
 */
export const PLACEMENT_FIELDS: readonly UpdateField[] = ['cpu', 'memory', 'volumes', 'constraints', 'antiAffinity']

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
export function vmUpdateOf (raw: unknown, vm: Pick<Vm, 'spec'>, nodes: readonly NodeView[], lookup?: VolumeLookup): VmUpdate {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('body', 'must be a JSON object')
  const b = raw as Record<string, unknown>
  onlyFields(b, UPDATE_FIELDS)
  if (Object.keys(b).length === 0) throw invalid('body', `names nothing to change: give one or more of ${UPDATE_FIELDS.join(', ')}`)
  const old = vm.spec
  const spec: VmSpec = { ...old }
  if (b.cpu !== undefined) spec.cpu = cpuOf(b.cpu)
  if (b.memory !== undefined) spec.memoryBytes = memoryOf(b.memory, old.driver)
  if (b.cpu !== undefined || b.memory !== undefined) fitsSomeNode(spec.cpu, spec.memoryBytes, nodes)
  if (b.memory !== undefined && old.driver === 'qemu' && old.kernel != null) {
    const small = kernelMemoryProblem(old.kernel, old.initrd, spec.memoryBytes, typeof b.memory === 'string' ? b.memory : bytes(spec.memoryBytes))
    if (small != null) throw invalid('memory', small)
  }
  if (b.volumes !== undefined) {
    if (lookup == null) throw invalid('volumes', 'cannot be checked here')
    spec.volumes = volumeIds(b.volumes, old.driver, lookup)
    if (old.driver === 'qemu' && old.kernel == null && old.image == null && spec.volumes.length === 0) throw invalid('volumes', 'this VM boots from its first volume (it has neither kernel nor image): it keeps at least one')
  }
  if (b.restart !== undefined) {
    // null: back to the default
    if (b.restart === null) delete spec.restart
    else if ((RESTART_POLICIES as readonly unknown[]).includes(b.restart)) spec.restart = b.restart as VmSpec['restart']
    else throw invalid('restart', `must be one of ${RESTART_POLICIES.join(', ')}, or null for the default (always)`)
  }
  if (b.antiAffinity !== undefined) {
    if (b.antiAffinity === null) delete spec.antiAffinity
    else if (typeof b.antiAffinity === 'string' && new RegExp(ID_PATTERN).test(b.antiAffinity)) spec.antiAffinity = b.antiAffinity
    else throw invalid('antiAffinity', 'must be a group name (letters, digits, . _ : @ -), or null for none')
  }
  if (b.constraints !== undefined) spec.constraints = patchedMap(old.constraints, b.constraints, 'constraints')
  if (b.labels !== undefined) {
    const labels = patchedMap(old.labels, b.labels, 'labels')
    if (Object.keys(labels).length > 0) spec.labels = labels
    else delete spec.labels
  }
  const changed = UPDATE_FIELDS.filter(f => fieldChanged(f, old, spec))
  return { spec, changed }
}

/** whether field `f` of an update differs between specs `a` and `b` (pure) */
function fieldChanged (f: UpdateField, a: VmSpec, b: VmSpec): boolean {
  switch (f) {
    case 'cpu': return a.cpu !== b.cpu
    case 'memory': return a.memoryBytes !== b.memoryBytes
    case 'volumes': return !same(a.volumes, b.volumes)
    case 'restart': return (a.restart ?? 'always') !== (b.restart ?? 'always')
    case 'antiAffinity': return a.antiAffinity !== b.antiAffinity
    case 'labels': return !same(sortedMap(a.labels), sortedMap(b.labels))
    case 'constraints': return !same(sortedMap(a.constraints), sortedMap(b.constraints))
  }
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

/**
 * Whether a change of `changed` must wait until nothing of the VM runs (pure): the
 * placement fields while its lease is neither idle nor parked (it runs, starts or is
 * claimed; a lease of a former VM of the name is not its own).
 */
export function runsForUpdate (changed: readonly UpdateField[], lease: Pick<Lease, 'status' | 'parked'> | undefined, own: boolean): boolean {
  return changed.some(f => PLACEMENT_FIELDS.includes(f)) && lease != null && own && !idle(lease) && !isParked(lease)
}

/** The sentence of a 409 for an update of placement fields while the VM runs. */
export function runningUpdateWhy (name: string, node: string, changed: readonly UpdateField[]): string {
  const which = changed.filter(f => PLACEMENT_FIELDS.includes(f))
  return `VM "${name}" runs on ${node} (or is being started there): a VM's cpu, memory, volumes, constraints and anti-affinity group change only while nothing of it runs, as they decide where it runs, what is reserved for it and which disks it writes (this update changes ${which.join(' and ')}); stop it first (vgrid vm stop ${name} --wait), update it, then start it (labels and the restart policy change at any time)`
}
