// Feasibility checks, read like Nomad's scheduler/feasible.go: each looks at one
// node for one VM and either passes it or says why it is filtered out.
import type { Demand, NodeView } from './types.ts'

/** a node's reserved resources: the sum of what it holds */
export interface Usage {
  cpu: number
  memoryBytes: number
  /** anti-affinity group -> VMs of it on the node */
  groups: Map<string, number>
}

export interface Check {
  name: string
  /** null: the node passes; else why it is filtered */
  check: (vm: Demand, node: NodeView, used: Usage) => string | null
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`
const cpus = (c: number): string => String(Math.round(c * 1000) / 1000)

export const alive: Check = {
  name: 'alive',
  check: (_vm, node) => node.alive ? null : 'not alive in membership'
}

export const notDraining: Check = {
  name: 'draining',
  check: (_vm, node) => node.draining ? 'node is draining' : null
}

/** a node whose data dir's disk is full cannot write a VM's run record: the start would fail there (bb19: it stayed `starting`, saying nothing) */
export const dataDisk: Check = {
  name: 'disk',
  check: (_vm, node) => node.dataDiskFull != null ? `its data disk is full (${node.dataDiskFull})` : null
}

/** the required labels a node's labels do not meet, as "k=v", sorted (pure; also said of a running VM whose node lost one) */
export function missingLabels (constraints: Readonly<Record<string, string>>, nodeLabels: Readonly<Record<string, string>>): string[] {
  return Object.keys(constraints).sort().filter(k => nodeLabels[k] !== constraints[k]).map(k => `${k}=${constraints[k]}`)
}

export const labels: Check = {
  name: 'labels',
  check: (vm, node) => {
    const missing = missingLabels(vm.constraints, node.labels)
    return missing.length === 0 ? null : `lacks label ${missing.join(', ')}`
  }
}

/** a node whose probe found the VM's driver unusable (no qemu, no cgroups) would only fail the start */
export const driver: Check = {
  name: 'driver',
  check: (vm, node) => vm.driver == null || node.drivers == null || node.drivers.includes(vm.driver)
    ? null
    : `no usable ${vm.driver} driver (has ${node.drivers.length === 0 ? 'none' : node.drivers.join(', ')})`
}

/** a VM that boots from its first volume on an agent of an earlier release would fail its starts there (rv36) */
export const bootsVolume: Check = {
  name: 'boot',
  check: (vm, node) => vm.volumeBoot !== true || node.drivers == null || node.volumeBoot === true
    ? null
    : 'its agent\'s release cannot boot a VM from a volume (upgrade it)'
}

export const fitsCpu: Check = {
  name: 'cpu',
  check: (vm, node, used) => {
    const free = node.capacity.cpu - used.cpu
    return vm.cpu <= free + 1e-9 ? null : `needs ${cpus(vm.cpu)} cpu, ${cpus(Math.max(0, free))} of ${cpus(node.capacity.cpu)} free`
  }
}

export const fitsMemory: Check = {
  name: 'memory',
  check: (vm, node, used) => {
    const free = node.capacity.memoryBytes - used.memoryBytes
    return vm.memoryBytes <= free ? null : `needs ${gib(vm.memoryBytes)} memory, ${gib(Math.max(0, free))} of ${gib(node.capacity.memoryBytes)} free`
  }
}

/** in this order: the first that fails is the reason shown */
export const CHECKS: readonly Check[] = [alive, notDraining, dataDisk, labels, driver, bootsVolume, fitsCpu, fitsMemory]

/** null when every check passes, else the first failing check and its reason */
export function feasible (vm: Demand, node: NodeView, used: Usage, checks: readonly Check[] = CHECKS): { check: string, reason: string } | null {
  for (const c of checks) {
    const reason = c.check(vm, node, used)
    if (reason != null) return { check: c.name, reason }
  }
  return null
}
