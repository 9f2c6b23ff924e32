// Anti-affinity groups sharing a node (pure). Anti-affinity is a preference, scored at
// placement: VMs of a group share a node only where no node without one of them could
// take them then. Nothing moves a running VM back when room appears (a move stops it), so
// after a rolling maintenance a group stayed crowded for good, `vm ls` said no other
// node could take it while two empty ones could, and `vgrid ha` said ok while one loss
// stopped half the group (bb47). Said here with the nodes that could take one now.
import { idle, type NodeView } from '../../crdt/placement/index.ts'
import { placementNow } from './vms.ts'
import type { DocView } from './view.ts'

/** VMs of anti-affinity `group` running (or starting) together on `node`, and the nodes that could take one of them now with none of the group there */
export interface CrowdedGroup { group: string, node: string, vms: string[], could: string[] }

/**
 * The anti-affinity groups with VMs sharing a node, by the leases that run or start, and
 * for each the alive nodes that could take one of those VMs now (every check passed,
 * none of its group there), by the same ranking placement uses.
 */
export function crowdedGroups (doc: DocView, nodes: readonly NodeView[]): CrowdedGroup[] {
  const together = new Map<string, { group: string, node: string, vms: string[] }>()
  for (const vm of doc.vms.values()) {
    const g = vm.spec.antiAffinity
    const l = doc.leases.get(vm.id)?.winner
    // VMs that run or are about to, on a node alive here (a lost node's are another matter: lostVms)
    if (g == null || l == null || idle(l) || l.status === 'stopping' || nodes.find(n => n.id === l.holder)?.alive !== true) continue
    const k = `${l.holder}\0${g}`
    const e = together.get(k) ?? { group: g, node: l.holder, vms: [] }
    e.vms.push(vm.id)
    together.set(k, e)
  }
  const out: CrowdedGroup[] = []
  for (const e of together.values()) {
    if (e.vms.length < 2) continue
    // the nodes that could take the first of them that fits on one (a ranking each: rare, and bounded by the group)
    const could = new Set<string>()
    for (const id of e.vms) {
      for (const s of placementNow(doc.vms.get(id)!, doc, nodes).nodes) {
        if (s.filtered == null && s.node !== e.node && (s.scores.antiAffinity ?? 0) === 0) could.add(s.node)
      }
      if (could.size > 0) break
    }
    out.push({ ...e, vms: e.vms.sort(), could: [...could].sort() })
  }
  return out.sort((a, b) => a.group < b.group ? -1 : a.group > b.group ? 1 : a.node < b.node ? -1 : 1)
}
