// Which VM a volume is the disk of (pure). A volume has one writer at a time, so one VM
// may name it; a create checks that against its own copy of the document, and two
// creates through two nodes at the same moment both passed: both VMs started, wrote the
// same disk at the same writer epoch (one node's slot, lease epoch 1 each), and nothing
// fenced either (a tester). Every node settles it alike: of the VMs that name a volume,
// the first made (`created`, then id) has it; the others are not placed, and one that
// runs is stopped, each with the reason.
import type { Vm } from '../../crdt/index.ts'

const madeFirst = (a: Vm, b: Vm): number => (a.created ?? 0) - (b.created ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** volume id -> the VM whose disk it is (the first made of those that name it) */
export function diskOwners (vms: Iterable<Vm>): Map<string, Vm> {
  const out = new Map<string, Vm>()
  for (const vm of vms) {
    for (const v of vm.spec.volumes) {
      const cur = out.get(v)
      if (cur == null || madeFirst(vm, cur) < 0) out.set(v, vm)
    }
  }
  return out
}

/** the first of the VM's volumes another VM has as its disk, with that VM; null when it has all of its own */
export function diskTaken (vm: Vm, owners: ReadonlyMap<string, Vm>): { volume: string, owner: Vm } | null {
  for (const v of vm.spec.volumes) {
    const owner = owners.get(v)
    if (owner != null && owner.id !== vm.id) return { volume: v, owner }
  }
  return null
}

/** why the VM does not run: its disk is another's (`path` says a volume for people) */
export function diskTakenWhy (t: { volume: string, owner: Vm }, path: (volume: string) => string): string {
  return `its disk ${path(t.volume)} is VM "${t.owner.name}"'s too (made first; both named it, made at about the same moment through different nodes): a volume has one writer at a time; remove one of them, or give this one another volume`
}
