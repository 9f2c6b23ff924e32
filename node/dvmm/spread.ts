// Anti-affinity groups sharing a node (pure). Anti-affinity is a preference, scored at
// placement: VMs of a group share a node only where no node without one of them could
// take them then. Nothing moves a running VM back when room appears (a move stops it), so
// after a rolling maintenance a group stayed crowded for good, `vm ls` said no other
// node could take it while two empty ones could, and `vgrid ha` said ok while one loss
// stopped half the group (bb47). Said here with the nodes that could take each now.
import { idle, rank, usageOf, type NodeView } from '../../crdt/placement/index.ts'
import { demandOf, holdings, type DocView } from './view.ts'

/**
 * VMs of anti-affinity `group` running (or starting) together on `node`; `could`: for
 * each of them, the nodes that could take it now with none of its group there
 */
export interface CrowdedGroup { group: string, node: string, vms: string[], could: ReadonlyMap<string, string[]> }

/** the nodes that could take one of the group's VMs (of `could`), each once, sorted */
export const anyCould = (c: CrowdedGroup): string[] => [...new Set([...c.could.values()].flat())].sort()

/**
 * The anti-affinity groups with VMs sharing a node, by the leases that run or start, and
 * for each VM the alive nodes that could take it now (every check passed, none of its
 * group there), by the same ranking placement uses. Polled (vm ls, ha, metrics): the
 * reservations are summed once, and a VM is ranked only against the nodes with none of
 * its group, if any (its own reservation is on the node it shares, which is not one).
 */
export function crowdedGroups (doc: DocView, nodes: readonly NodeView[]): CrowdedGroup[] {
  const together = new Map<string, { group: string, node: string, vms: string[] }>()
  const groupsOn = new Map<string, Set<string>>()
  for (const vm of doc.vms.values()) {
    const g = vm.spec.antiAffinity
    const l = doc.leases.get(vm.id)?.winner
    // VMs that run or are about to, on a node alive here (a lost node's are another matter: lostVms)
    if (g == null || l == null || idle(l) || l.status === 'stopping' || nodes.find(n => n.id === l.holder)?.alive !== true) continue
    const k = `${l.holder}\0${g}`
    const e = together.get(k) ?? { group: g, node: l.holder, vms: [] }
    e.vms.push(vm.id)
    together.set(k, e)
    groupsOn.set(g, (groupsOn.get(g) ?? new Set()).add(l.holder))
  }
  const crowded = [...together.values()].filter(e => e.vms.length >= 2)
  if (crowded.length === 0) return []
  const usage = usageOf(holdings(doc))
  const out: CrowdedGroup[] = []
  for (const e of crowded) {
    // a node that holds one of the group (placement's count, any status it reserves) is no way out
    const free = nodes.filter(n => n.alive && !(usage.get(n.id)?.groups.has(e.group) ?? false) && !groupsOn.get(e.group)!.has(n.id))
    const could = new Map<string, string[]>()
    for (const id of e.vms) {
      const fits = free.length === 0 ? [] : rank(demandOf(doc.vms.get(id)!, doc), free, usage).nodes.filter(s => s.filtered == null).map(s => s.node).sort()
      could.set(id, fits)
    }
    out.push({ ...e, vms: e.vms.sort(), could })
  }
  return out.sort((a, b) => a.group < b.group ? -1 : a.group > b.group ? 1 : a.node < b.node ? -1 : 1)
}
