// The ranking pipeline, read like Nomad's scheduler/rank.go: feasibility checks
// filter nodes (each saying why), scorers score the rest, and a rendezvous hash of
// (vm, node) breaks ties. `rank` is a pure function of its inputs: every agent that
// holds the same document and sees the same members computes the same list.
import { feasible, CHECKS, type Check, type Usage } from './feasible.ts'
import type { Demand, Holding, NodeView, Strategy } from './types.ts'

export interface NodeScore {
  node: string
  name: string
  /** null when the node passed every check */
  filtered: { check: string, reason: string } | null
  /** the scorers' outputs (empty when filtered) */
  scores: { fit?: number, antiAffinity?: number, overlay?: number, reach?: number }
  /** why a scorer put it behind (its overlay is down, for a VM with connections) */
  why?: string
  /** overlay, anti-affinity, then fit, as one number (overlay counts 1e6, anti-affinity 1000 per collision); -Infinity when filtered */
  total: number
  /** rendezvous hash of (vm, node) in [0, 1): the tie-break */
  tiebreak: number
}

export interface Ranking {
  vm: string
  /** the best feasible node, if any */
  best: string | null
  /** feasible nodes best first, then the filtered ones (by name) */
  nodes: NodeScore[]
  /** why the VM fits nowhere (null when it fits) */
  pending: string | null
}

export interface RankOptions {
  strategy?: Strategy
  checks?: readonly Check[]
}

/** the resources each node has reserved, from what is held */
export function usageOf (holdings: Iterable<Holding>): Map<string, Usage> {
  const m = new Map<string, Usage>()
  for (const h of holdings) addUsage(m, h)
  return m
}

export function addUsage (m: Map<string, Usage>, h: Holding): void {
  let u = m.get(h.holder)
  if (u == null) m.set(h.holder, u = { cpu: 0, memoryBytes: 0, groups: new Map() })
  u.cpu += h.cpu
  u.memoryBytes += h.memoryBytes
  if (h.antiAffinity != null) u.groups.set(h.antiAffinity, (u.groups.get(h.antiAffinity) ?? 0) + 1)
}

const EMPTY: Usage = { cpu: 0, memoryBytes: 0, groups: new Map() }

/** FNV-1a (32 bit) of `vm \0 node`, as a fraction: the same on every agent, spread evenly */
export function rendezvous (vm: string, node: string): number {
  return rendezvousFrom(rendezvousPrefix(vm), node)
}

/** the FNV state after `vm \0`: hashing many nodes for one VM starts from here */
export function rendezvousPrefix (vm: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < vm.length; i++) h = Math.imul(h ^ vm.charCodeAt(i), 0x01000193) >>> 0
  return Math.imul(h, 0x01000193) >>> 0 // the \0 (xor with 0 changes nothing)
}

export function rendezvousFrom (prefix: number, node: string): number {
  let h = prefix
  for (let i = 0; i < node.length; i++) h = Math.imul(h ^ node.charCodeAt(i), 0x01000193) >>> 0
  // a final avalanche so that ids differing in their last character spread too
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b) >>> 0
  h ^= h >>> 13
  return h / 2 ** 32
}

/**
 * Fit, from the mean of cpu and memory utilisation the node would have with the VM.
 * Binpack prefers the fullest node (score = utilisation, in [0, 1]). Spread is a
 * weighted rendezvous hash: -room / ln(hash(vm, node)), so each node is first choice
 * for a share of VMs in proportion to its room. Every VM ranks the nodes on its own
 * (no herding onto the one emptiest node when many VMs are placed at once by many
 * agents). The room is counted in eighths, so that a VM's ranking changes only when a
 * node's room crosses an eighth: agents whose views of the leases differ by a few
 * recent claims still agree (fewer contested claims).
 */
export function fitScore (vm: Demand, node: NodeView, used: Usage, strategy: Strategy, hash?: number): number {
  const frac = (u: number, c: number): number => c <= 0 ? 1 : Math.min(1, u / c)
  const util = (frac(used.cpu + vm.cpu, node.capacity.cpu) + frac(used.memoryBytes + vm.memoryBytes, node.capacity.memoryBytes)) / 2
  if (strategy === 'binpack') return util
  const free = Math.ceil((1 - util) * 8) / 8
  if (free <= 0) return 0
  const h = Math.min(Math.max(hash ?? rendezvous(vm.vm, node.id), 1e-12), 1 - 1e-12)
  return -free / Math.log(h)
}

/** Anti-affinity: -1 for every VM of the group already on the node; it ranks before fit (fewer collisions first). */
export function antiAffinityScore (vm: Demand, used: Usage): number {
  if (vm.antiAffinity == null) return 0
  return -(used.groups.get(vm.antiAffinity) ?? 0)
}

/**
 * Overlay: -1 on a node whose overlay is down, for a VM with connections (its links to
 * VMs elsewhere would carry nothing there; a tester's drain moved one onto such a node);
 * it ranks first, so such a node is the last choice, not excluded: a link between two
 * VMs of one node needs no tunnel, and a grid of one node has no other.
 */
export function overlayScore (vm: Demand, node: NodeView): number {
  return vm.links === true && node.overlayDown != null ? -1 : 0
}

/**
 * Reach: -1 on a node cut off from some member that others reach (a partial cut, as its
 * advert says), for a VM with connections or disks: its link peers or its volumes'
 * holders may be on the far side (bb19: a failover put a VM on the node its peer could
 * not reach, with another as good; a guest on such a node got I/O errors at once). It
 * ranks right after overlay: the last choice, not excluded.
 */
export function reachScore (vm: Demand, node: NodeView): number {
  const cut = node.unreached ?? []
  if (cut.length === 0 || (vm.links !== true && vm.disks !== true)) return 0
  // with its link peers' nodes known and no disks: only a node cut off from one of them
  // (bb44: a drain in a cut put a VM where its peer was not reached, the peer's own node as good)
  if (vm.disks !== true && vm.peerNodes != null) return vm.peerNodes.some(p => cut.includes(p)) ? -1 : 0
  return -1
}

/** Ranks every node for one VM, given what each node already holds. */
export function rank (vm: Demand, nodes: readonly NodeView[], usage: ReadonlyMap<string, Usage>, opts: RankOptions = {}): Ranking {
  const strategy = opts.strategy ?? 'spread'
  const prefix = rendezvousPrefix(vm.vm)
  const scored: NodeScore[] = nodes.map(node => {
    const used = usage.get(node.id) ?? EMPTY
    const tiebreak = rendezvousFrom(prefix, node.id)
    const filtered = feasible(vm, node, used, opts.checks ?? CHECKS)
    if (filtered != null) return { node: node.id, name: node.name, filtered, scores: {}, total: -Infinity, tiebreak }
    const scores = { fit: fitScore(vm, node, used, strategy, tiebreak), antiAffinity: antiAffinityScore(vm, used), overlay: overlayScore(vm, node), reach: reachScore(vm, node) }
    const why = scores.overlay < 0
      ? { why: `its overlay is down (${node.overlayDown!}): the last choice for a VM with connections` }
      : scores.reach < 0 ? { why: `it does not reach ${node.unreached!.length} member${node.unreached!.length === 1 ? '' : 's'} that others do (a partial cut): the last choice for a VM with connections or disks` } : {}
    return { node: node.id, name: node.name, filtered: null, scores, total: scores.overlay * 1e9 + scores.reach * 1e6 + scores.antiAffinity * 1000 + scores.fit, tiebreak, ...why }
  })
  scored.sort((a, b) => {
    if ((a.filtered == null) !== (b.filtered == null)) return a.filtered == null ? -1 : 1
    if (a.filtered != null) return a.name < b.name ? -1 : a.name > b.name ? 1 : a.node < b.node ? -1 : 1
    return (b.scores.overlay ?? 0) - (a.scores.overlay ?? 0) || (b.scores.reach ?? 0) - (a.scores.reach ?? 0) || (b.scores.antiAffinity ?? 0) - (a.scores.antiAffinity ?? 0) || (b.scores.fit ?? 0) - (a.scores.fit ?? 0) || b.tiebreak - a.tiebreak || (a.node < b.node ? -1 : 1)
  })
  const best = scored[0]?.filtered == null ? scored[0]?.node ?? null : null
  return { vm: vm.vm, best, nodes: scored, pending: best == null ? pendingReason(scored) : null }
}

/** "no node fits: 3 cpu, 1 draining" style, from the filtered nodes */
export function pendingReason (scored: readonly NodeScore[]): string {
  if (scored.length === 0) return 'no node is known'
  const by = new Map<string, number>()
  for (const s of scored) if (s.filtered != null) by.set(s.filtered.check, (by.get(s.filtered.check) ?? 0) + 1)
  const parts = [...by].sort(([a], [b]) => a < b ? -1 : 1).map(([c, n]) => `${n} ${c === 'alive' ? 'not alive' : c === 'draining' ? 'draining' : c === 'labels' ? 'lack labels' : `lack ${c}`}`)
  // the example of the commonest reason a node could be made to take it for (bb47: "3
  // lack cpu, 1 draining; e.g. host1: node is draining", the node being drained)
  const passive = (c: string): boolean => c === 'alive' || c === 'draining'
  const [check] = [...by].sort(([a, n], [b, m]) => Number(passive(a)) - Number(passive(b)) || m - n || (a < b ? -1 : 1))[0]!
  const one = scored.find(s => s.filtered?.check === check)!
  return `no node fits (${parts.join(', ')}); e.g. ${one.name}: ${one.filtered!.reason}`
}

/**
 * Places many VMs at once, greedily in the order given (callers sort by VM id so
 * every agent walks the same order): each placement counts against its node before
 * the next VM is ranked. This is how every agent knows, without talking, which of
 * many new VMs are its own to claim.
 */
export function plan (vms: readonly Demand[], nodes: readonly NodeView[], holdings: Iterable<Holding>, opts: RankOptions = {}): Map<string, Ranking> {
  const usage = usageOf(holdings)
  const out = new Map<string, Ranking>()
  for (const vm of vms) {
    const r = rank(vm, nodes, usage, opts)
    out.set(vm.vm, r)
    if (r.best != null) addUsage(usage, { vm: vm.vm, holder: r.best, cpu: vm.cpu, memoryBytes: vm.memoryBytes, antiAffinity: vm.antiAffinity })
  }
  return out
}

/**
 * Where `me` stands for each of many waiting VMs (`positionOf`). Each is ranked on its
 * own against what is held: agents see new VMs at different times, and a plan over
 * different sets would disagree. Except VMs of an anti-affinity group, ranked one after
 * another in the order given (callers sort by id), each counting those before it where
 * they rank best: ranked apart, each saw none of its group anywhere, and a group made at
 * once landed on one node about one time in four with two nodes (a test caught three on
 * one of two). Agents that see different members of a group waiting may disagree; their
 * claims contest, and the rule settles it.
 */
export function positionsOf (vms: readonly Demand[], nodes: readonly NodeView[], holdings: readonly Holding[], me: string, opts: RankOptions = {}): Map<string, { pos: number, feasible: number }> {
  const usage = usageOf(holdings)
  let grouped: Map<string, Usage> | undefined
  const out = new Map<string, { pos: number, feasible: number }>()
  for (const vm of vms) {
    if (vm.antiAffinity == null) {
      out.set(vm.vm, positionOf(vm, nodes, usage, me, opts))
      continue
    }
    grouped ??= usageOf(holdings)
    out.set(vm.vm, positionOf(vm, nodes, grouped, me, opts))
    const best = rank(vm, nodes, grouped, opts).best
    if (best != null) addUsage(grouped, { vm: vm.vm, holder: best, cpu: vm.cpu, memoryBytes: vm.memoryBytes, antiAffinity: vm.antiAffinity })
  }
  return out
}

/**
 * Where `me` stands in `rank(vm, ...)`'s order (0: best; -1: filtered), and how many
 * nodes pass: the same order as `rank`, computed without building the ranking. An
 * agent asks this for every waiting VM at every step, so it allocates nothing per node.
 */
export function positionOf (vm: Demand, nodes: readonly NodeView[], usage: ReadonlyMap<string, Usage>, me: string, opts: RankOptions = {}): { pos: number, feasible: number } {
  const strategy = opts.strategy ?? 'spread'
  const checks = opts.checks ?? CHECKS
  const mine = nodes.find(n => n.id === me)
  const prefix = rendezvousPrefix(vm.vm)
  let mOv = 0
  let mRe = 0
  let mAa = 0
  let mFit = 0
  let mTie = 0
  let mOk = false
  if (mine != null) {
    const used = usage.get(me) ?? EMPTY
    if (feasible(vm, mine, used, checks) == null) {
      mOk = true
      mOv = overlayScore(vm, mine)
      mRe = reachScore(vm, mine)
      mAa = antiAffinityScore(vm, used)
      mTie = rendezvousFrom(prefix, me)
      mFit = fitScore(vm, mine, used, strategy, mTie)
    }
  }
  let pos = 0
  let count = 0
  for (const n of nodes) {
    if (n === mine) { if (mOk) count++; continue }
    const used = usage.get(n.id) ?? EMPTY
    if (feasible(vm, n, used, checks) != null) continue
    count++
    if (!mOk) continue
    // the comparator of `rank`: overlay, reach, anti-affinity, fit, tie-break, then node id
    const ov = overlayScore(vm, n)
    if (ov !== mOv) { if (ov > mOv) pos++; continue }
    const re = reachScore(vm, n)
    if (re !== mRe) { if (re > mRe) pos++; continue }
    const aa = antiAffinityScore(vm, used)
    if (aa !== mAa) { if (aa > mAa) pos++; continue }
    const tie = rendezvousFrom(prefix, n.id)
    const fit = fitScore(vm, n, used, strategy, tie)
    if (fit !== mFit) { if (fit > mFit) pos++; continue }
    if (tie !== mTie ? tie > mTie : n.id < me) pos++
  }
  return { pos: mOk ? pos : -1, feasible: count }
}
