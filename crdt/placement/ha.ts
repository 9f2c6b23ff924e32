// The HA check (AppLogic's "HA ok"): could every running VM be placed again if any
// one node failed? For each node, its VMs are re-planned on the others, with what
// the others already hold; those that fit nowhere are stranded by that node's loss.
import { plan, type RankOptions } from './rank.ts'
import type { Demand, Holding, NodeView } from './types.ts'

export interface HaReport {
  ok: boolean
  /** per node whose loss would strand VMs: which, and why each fits nowhere */
  stranded: StrandedVms[]
  /** per node already lost (not alive) whose VMs fit on no live node: they run nowhere now (ok is false) */
  lost?: StrandedVms[]
  /** VMs that should run, hold no lease, and fit on no node now: they run nowhere (ok is false) */
  unplaced?: Array<{ vm: string, reason: string }>
  /** the answering node sees no majority of the roll (why): nothing is placed or taken over, so nothing lost runs again (ok is false) */
  noMajority?: string
  /** with a majority in sight, why losing one more node would leave none (ok is false): fence.ts noMajorityMargin */
  noMargin?: string
  /** running VMs whose disk one node's loss would leave unreadable or unwritable, and why (ok is false): diskRisks */
  disks?: DiskRisk[]
  /**
   * anti-affinity groups with VMs sharing a node whose loss would stop them together, and
   * the nodes that could take one of them now with none of the group (names; node/dvmm/spread.ts):
   * said, not judged (ok stands: each could be placed again)
   */
  crowded?: Array<{ group: string, node: string, vms: string[], could: string[] }>
  /** how long after a node was last heard of its VMs start elsewhere, as the answering node counts it, and what that is made of (DvmmService.failoverWait) */
  failover?: {
    ms: number
    why: string
    /** a vote lock holds takeovers back this much longer from now (DvmmService.voteLockHoldsMs): absent when none does */
    lockedMs?: number
    /**
     * were one of `nodes` (names) lost now, its VMs would start elsewhere only `ms` from
     * now: vote locks of `locked` (names), members back from a restart, hold that
     * takeover back though they hold none back now (lockedWaitsIfLost); absent: none would
     */
    ifLost?: { nodes: string[], ms: number, locked: string[] }
  }
}

export interface DiskRisk {
  vm: string
  volume: string
  reason: string
}

/**
 * The disks of VMs meant to run that would not survive the loss of any one node: a
 * VM restarted elsewhere needs its disk there too (a tester saw HA ok while a VM's
 * only disk copy was spread over every node). R=1: the node holding a part of it takes
 * that part with it. Fewer nodes left than the volume's minimum copies: its writes fail.
 * `nodes`: the nodes alive that hold volume copies. Pure.
 */
export function diskRisks (vms: ReadonlyArray<{ name: string, desired: string, spec: { volumes: readonly string[] } }>, volumes: ReadonlyMap<string, { path: string, replicas: number, minReplicas?: number }>, nodes: number): DiskRisk[] {
  const out: DiskRisk[] = []
  for (const vm of vms) {
    if (vm.desired !== 'running') continue
    for (const id of vm.spec.volumes) {
      const v = volumes.get(id)
      if (v == null) continue
      const min = v.minReplicas ?? v.replicas
      const reason = v.replicas < 2
        ? `its disk ${v.path} has one copy of each part (R=1): losing the node that holds a part makes the disk unreadable there until that node is back`
        : nodes - 1 < min
          ? `its disk ${v.path} needs ${min} copies written (of R=${v.replicas}) and ${nodes} node${nodes === 1 ? '' : 's'} hold copies: losing any one makes its writes fail`
          : null
      if (reason != null) out.push({ vm: vm.name, volume: v.path, reason })
    }
  }
  return out
}

export interface StrandedVms {
  node: string
  name: string
  vms: string[]
  /** why each of `vms` fits nowhere, in the same order */
  reasons: string[]
  /** the first VM's reason (as `reasons[0]`) */
  reason: string
  /** (`lost` only) the node's agent stopped for a restart: its VMs run on there for its restart grace, and would run nowhere should it not come back */
  restarting?: true
}

/** "a, b (why)" when every VM has one reason, else "a (why a), b (why b)" */
export function strandedWhy (s: StrandedVms): string {
  if (s.reasons.every(r => r === s.reason)) return `${s.vms.join(', ')} (${s.reason})`
  return s.vms.map((vm, i) => `${vm} (${s.reasons[i]})`).join(', ')
}

/** `demands`: the VMs that hold leases (by VM id); `holdings`: every lease */
export function haCheck (demands: ReadonlyMap<string, Demand>, nodes: readonly NodeView[], holdings: readonly Holding[], opts: RankOptions = {}): HaReport {
  const stranded: HaReport['stranded'] = []
  for (const lost of [...nodes].sort((a, b) => a.id < b.id ? -1 : 1)) {
    const moving = holdings.filter(h => h.holder === lost.id && (h.cpu > 0 || h.memoryBytes > 0))
      .map(h => demands.get(h.vm)).filter((d): d is Demand => d != null).sort((a, b) => a.vm < b.vm ? -1 : 1)
    if (moving.length === 0) continue
    const rest = nodes.filter(n => n.id !== lost.id)
    const placed = plan(moving, rest, holdings.filter(h => h.holder !== lost.id), opts)
    const fail = [...placed.values()].filter(r => r.best == null)
    if (fail.length > 0) {
      const reasons = fail.map(r => r.pending ?? '')
      stranded.push({ node: lost.id, name: lost.name, vms: fail.map(r => r.vm), reasons, reason: reasons[0]! })
    }
  }
  return { ok: stranded.length === 0, stranded }
}

/**
 * What a drain of `target` would strand, with the nodes in `draining` (already draining,
 * or drained at the same moment) leaving too: the VMs held on all of them re-planned
 * together on the nodes that stay, with what those hold; those that fit nowhere, by the
 * node they run on now. haCheck judges one node's loss with the others' VMs where they
 * are, so two drains, each fine alone, were each let through and stranded a VM between
 * them (bb36). Pure.
 */
export function drainCheck (demands: ReadonlyMap<string, Demand>, nodes: readonly NodeView[], holdings: readonly Holding[], target: string, draining: ReadonlySet<string>, opts: RankOptions = {}): StrandedVms[] {
  const leaving = new Set([...draining, target])
  const moving = holdings.filter(h => leaving.has(h.holder) && (h.cpu > 0 || h.memoryBytes > 0))
  const holderOf = new Map(moving.map(h => [h.vm, h.holder]))
  const vms = moving.map(h => demands.get(h.vm)).filter((d): d is Demand => d != null).sort((a, b) => a.vm < b.vm ? -1 : 1)
  if (vms.length === 0) return []
  // the nodes that stay; the leaving ones are judged draining whatever their roll says yet
  const rest = nodes.filter(n => !leaving.has(n.id))
  const placed = plan(vms, rest, holdings.filter(h => !leaving.has(h.holder)), opts)
  // the nodes draining besides the target are left out of the ranking: said (bb47: "2 lack labels" with a third draining)
  const others = nodes.filter(n => draining.has(n.id) && n.id !== target).map(n => n.name).sort()
  const besides = others.length === 0 ? '' : `; ${others.join(', ')} ${others.length === 1 ? 'is' : 'are'} draining too`
  const byNode = new Map<string, Array<{ vm: string, reason: string }>>()
  for (const r of placed.values()) {
    if (r.best != null) continue
    const node = holderOf.get(r.vm)!
    byNode.set(node, [...byNode.get(node) ?? [], { vm: r.vm, reason: `${r.pending ?? ''}${besides}` }])
  }
  return [...byNode].sort((a, b) => a[0] < b[0] ? -1 : 1).map(([node, fs]) => ({ node, name: nodes.find(n => n.id === node)?.name ?? node, vms: fs.map(f => f.vm), reasons: fs.map(f => f.reason), reason: fs[0]!.reason }))
}
