// A node whose overlay (WireGuard) stays down moves its running VMs with connections
// to nodes whose overlay is up: their links to VMs on other nodes carry nothing here.
// Placement already puts such a node last for them (rank.ts overlayScore); this is the
// same rule for the VMs already there (a tester's linked VM sat on such a node, every
// other node saying ok). A stop parks the lease and any node places it anew, this one
// last. The same for a link whose other end runs on a node this one does not reach
// while others do (a partial cut: cutMoves). Pure.
import { isParked, rank, sameVm, usageOf, type NodeView, type Strategy } from '../../crdt/placement/index.ts'
import { demandOf, holdings, type DocView } from './view.ts'
import type { Lease, Vm } from '../../crdt/index.ts'

/** how long the overlay stays down before VMs move: a wireguard-go made again takes about a second, a retry a few */
export const OVERLAY_MOVE_AFTER_MS = 30_000

export interface OverlayMovesInput {
  me: string
  now: number
  doc: DocView
  nodes: readonly NodeView[]
  /** this node's overlay is down, since when (`now`'s clock) and why; null: up, or no overlay */
  overlay: { why: string, since: number } | null
  /** the VMs this node runs and may stop now (its lease, desired running, nothing in flight) */
  running: readonly string[]
  afterMs: number
  strategy: Strategy
  nameOf?: (node: string) => string
}

export interface OverlayMoves {
  stop: Array<{ vm: string, why: string }>
  /** ms until the overlay has been down long enough (Infinity: nothing to wait for) */
  wakeInMs: number
}

/**
 * The VMs with connections to stop here so that they run where the overlay is up: once
 * it has been down `afterMs`, and only those for which another node whose overlay is up
 * ranks best (one that fits nowhere else stays: a move would bring it back here). This
 * node's own advert must say its overlay is down, as others read it, or they would rank
 * it first again.
 */
export function overlayMoves (i: OverlayMovesInput): OverlayMoves {
  const none = { stop: [], wakeInMs: Infinity }
  if (i.overlay == null) return none
  const linked = i.running.filter(id => { const vm = i.doc.vms.get(id); return vm != null && demandOf(vm, i.doc).links === true })
  if (linked.length === 0) return none
  const downMs = i.now - i.overlay.since
  if (downMs < i.afterMs) return { stop: [], wakeInMs: i.afterMs - downMs }
  if (i.nodes.find(n => n.id === i.me)?.overlayDown == null) return none
  const byId = new Map(i.nodes.map(n => [n.id, n]))
  // each ranked against what the others hold, none of the movers counted anywhere
  const usage = usageOf(holdings(i.doc, new Set(linked)))
  const stop: OverlayMoves['stop'] = []
  for (const id of linked) {
    const best = rank(demandOf(i.doc.vms.get(id)!, i.doc), i.nodes, usage, { strategy: i.strategy }).best
    if (best == null || best === i.me || byId.get(best)?.overlayDown != null) continue
    stop.push({ vm: id, why: `this node's overlay has been down for ${Math.round(downMs / 1000)} s (${i.overlay.why}): its connections carry nothing here; moved to a node whose overlay is up (${i.nameOf?.(best) ?? best} ranks best)` })
  }
  return { stop, wakeInMs: Infinity }
}

/** how many move intervals the end that moves second waits for the other end's node to move its end */
const OTHER_END_WAITS = 5

export interface CutMovesInput {
  me: string
  now: number
  doc: DocView
  nodes: readonly NodeView[]
  /** members this node does not reach while another does and whose tunnel from here carries nothing (a partial cut), since when (`now`'s clock) */
  cut: ReadonlyMap<string, number>
  /** the VMs at the other ends of a VM's links that carry traffic when whole (by VM id) */
  peers: (vm: string) => readonly string[]
  /** the VMs this node runs and may stop now (as for overlayMoves) */
  running: readonly string[]
  /** when this node last claimed a lease it holds (`now`'s clock; absent: before this run) */
  claimedAt: ReadonlyMap<string, number>
  afterMs: number
  strategy: Strategy
  nameOf?: (node: string) => string
}

/**
 * The VMs to stop here because a link of theirs goes to a VM on a node this node has not
 * reached for `afterMs` while others do (a partial cut: the tunnel between the two
 * carries nothing, bb42), so that they run where both ends are reached: only those for
 * which a node cut off from none of their link peers' nodes ranks best (movesTo; the
 * peer's own node counts). This node's advert must name what it does not reach (others
 * would rank it first again). One end moves, not both: the end on the node cut off from
 * fewer members (on a tie, the larger node id) waits while the other end could move (by
 * the ranking every node computes alike) and its node names the cut, for up to
 * OTHER_END_WAITS intervals (rv44, bb44). A VM claimed here after the cut began stays:
 * placement chose this node knowing of it (no stop, place, stop loop).
 */
export function cutMoves (i: CutMovesInput): OverlayMoves {
  if (i.cut.size === 0 || (i.nodes.find(n => n.id === i.me)?.unreached?.length ?? 0) === 0) return { stop: [], wakeInMs: Infinity }
  const byId = new Map(i.nodes.map(n => [n.id, n]))
  const unreached = (id: string): number => byId.get(id)?.unreached?.length ?? 0
  // the other end first: its node is cut off from more members (or as many, and sorts
  // first), and says it does not reach this one (so it moves its end itself)
  const otherFirst = (node: string): boolean => (byId.get(node)?.unreached?.includes(i.me) ?? false) && (unreached(node) > unreached(i.me) || (unreached(node) === unreached(i.me) && node < i.me))
  let wakeInMs = Infinity
  const wait = (ms: number): void => { wakeInMs = Math.min(wakeInMs, ms) }
  const movers: Array<{ vm: string, node: string, peer: string, ms: number, also: Array<{ peer: string, node: string }> }> = []
  for (const id of i.running) {
    for (const peer of i.peers(id)) {
      const w = peerRun(i.doc, peer)
      const pv = i.doc.vms.get(peer)
      const since = w == null || w.holder === i.me ? undefined : i.cut.get(w.holder)
      if (since == null || pv!.desired !== 'running') continue
      if ((i.claimedAt.get(id) ?? -Infinity) >= since) continue
      const ms = i.now - since
      if (ms < i.afterMs) { wait(i.afterMs - ms); continue }
      // the other end moves itself whenever it can (room appearing late included, bb44:
      // both ends moved in one step 74 s into a cut); this end only if it cannot, or if
      // its node has not done so in OTHER_END_WAITS intervals (it may not see the cut so)
      if (ms < OTHER_END_WAITS * i.afterMs && otherFirst(w!.holder) && movesTo(pv!, w!.holder, i.doc, i.nodes, usageOf(holdings(i.doc, new Set([peer]))), i.strategy) != null) { wait(OTHER_END_WAITS * i.afterMs - ms); continue }
      // its other links across a cut are said too (bb44: only the first was)
      const also = i.peers(id).filter(p => p !== peer).flatMap(p => {
        const pw = peerRun(i.doc, p)
        return pw == null || pw.holder === i.me || !i.cut.has(pw.holder) ? [] : [{ peer: p, node: pw.holder }]
      })
      movers.push({ vm: id, node: w!.holder, peer, ms, also })
      break
    }
  }
  if (movers.length === 0) return { stop: [], wakeInMs }
  const usage = usageOf(holdings(i.doc, new Set(movers.map(m => m.vm))))
  const stop: OverlayMoves['stop'] = []
  for (const m of movers) {
    const best = movesTo(i.doc.vms.get(m.vm)!, i.me, i.doc, i.nodes, usage, i.strategy)
    if (best == null) continue
    const name = (n: string): string => i.nameOf?.(n) ?? n
    const also = m.also.map(a => `, nor ${name(a.node)}, where ${a.peer} runs`).join('')
    const ends = m.also.length === 0 ? 'both' : 'all its link peers\' nodes'
    stop.push({ vm: m.vm, why: `this node has not reached ${name(m.node)}, where ${m.peer} runs, for ${Math.round(m.ms / 1000)} s while others do (a partial cut)${also}: ${m.also.length === 0 ? 'their link carries' : 'those links carry'} nothing; moved to a node that reaches ${ends} (${name(best)} ranks best)` })
  }
  return { stop, wakeInMs }
}

/**
 * What `vm ls` says of a running VM whose link goes to a VM on a node its own node does
 * not reach while others do (adverts' `unreached`), whichever node is asked (bb44: a
 * linked VM that could not move said nothing): whether one end moves (cutMoves), or
 * neither can and both stay. Null when none of its links crosses a cut. Pure.
 */
export function cutLinkNote (vmId: string, doc: DocView, nodes: readonly NodeView[], peers: readonly string[], nameOf: (node: string) => string = n => n): string | null {
  const w = doc.leases.get(vmId)?.winner
  const vm = doc.vms.get(vmId)
  const byId = new Map(nodes.map(n => [n.id, n]))
  const cut = w == null ? [] : byId.get(w.holder)?.unreached ?? []
  if (w == null || vm == null || cut.length === 0) return null
  const movable = (v: typeof vm, holder: string): boolean => movesTo(v, holder, doc, nodes, usageOf(holdings(doc, new Set([v.id])))) != null
  for (const peer of peers) {
    const pw = peerRun(doc, peer)
    const pv = doc.vms.get(peer)
    if (pw == null || pw.holder === w.holder || !cut.includes(pw.holder)) continue
    const what = `its link to ${peer} on ${nameOf(pw.holder)} carries nothing: ${nameOf(w.holder)} does not reach ${nameOf(pw.holder)} while others do (a partial cut)`
    return movable(vm, w.holder) || movable(pv!, pw.holder)
      ? `${what}; one of the two moves to a node that reaches both once the cut has lasted ${Math.round(OVERLAY_MOVE_AFTER_MS / 1000)} s`
      : `${what}; no node that reaches both fits either of them, so they stay until the network heals or room is made on such a node`
  }
  return null
}

/** a link peer's lease where it runs or is on its way to (not stopped, parked, or a former VM's run) */
function peerRun (doc: DocView, peer: string): Lease | null {
  const w = doc.leases.get(peer)?.winner
  const vm = doc.vms.get(peer)
  return w == null || vm == null || w.status === 'stopped' || w.status === 'failed' || isParked(w) || !sameVm(w.made, vm.created) ? null : w
}

/**
 * Where a VM on `from` would go to have its links carried: the best-ranked node, if that
 * is another one whose overlay is up and which is cut off from none of its link peers'
 * nodes (rank.ts: overlay and reach scores; without the peers known, from no member).
 */
function movesTo (vm: Vm, from: string, doc: DocView, nodes: readonly NodeView[], usage: ReturnType<typeof usageOf>, strategy?: Strategy): string | null {
  const r = rank(demandOf(vm, doc), nodes, usage, { strategy })
  const top = r.nodes[0]
  if (r.best == null || r.best === from || top == null || (top.scores.reach ?? 0) < 0 || (top.scores.overlay ?? 0) < 0) return null
  return r.best
}
