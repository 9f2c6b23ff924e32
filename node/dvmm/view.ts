// The placement inputs as one agent sees them, built from the cluster document and
// the membership table (pure): nodes from the member roll and the alive members,
// VMs as demands, leases as holdings. Every agent that holds the same document and
// sees the same members builds the same inputs.
import type { Lease, Reader, RollEntry, Vm } from '../../crdt/index.ts'
import { haCheck, holdingOf, idle, isParked, reserves, winner, type Demand, type HaReport, type Holding, type NodeView, type Strategy } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import { FENCE_TIMEOUT_MS } from './timing.ts'
import { sameVm } from './history.ts'
import { bootsFromVolume } from './boot-fields.ts'
import { oneLinkPerOutput, standingLinks } from '../lcm/links.ts'
import type { Link } from '../lcm/rules.ts'

export interface LeaseView {
  /** the claim every agent reads (highest epoch, then the smaller holder) */
  winner: Lease
  /** every valid concurrent claim (usually one) */
  claims: Lease[]
}

export interface DocView {
  vms: Map<string, Vm>
  leases: Map<string, LeaseView>
  roll: Map<string, RollEntry>
  /** each VM's link peers (VM ids; links the LCM applies); absent: not read (placement then takes every cut-off node for a far one) */
  peers?: ReadonlyMap<string, readonly string[]>
}

export function docView (r: Reader): DocView {
  const vms = new Map(r.list('vms').map(v => [v.id, v]))
  const leases = new Map<string, LeaseView>()
  for (const [key, res] of r.all('leases')) {
    // the resolved value is cached across versions; only a contest needs every claim
    if (!res.contested) { leases.set(key, { winner: res.value, claims: [res.value] }); continue }
    const claims = r.candidates('leases', key)
    const w = winner(claims)
    if (w != null) leases.set(key, { winner: w, claims })
  }
  const roll = new Map(r.list('roll').map(e => [e.node, e]))
  return { vms, leases, roll, peers: linkPeers(r.list('connections'), vms) }
}

/** each VM's link peers, by the links the LCM applies (standing, one per output) */
export function linkPeers (connections: ReadonlyArray<Link & { at: number }>, vms: ReadonlyMap<string, { created?: number }>): Map<string, string[]> {
  const peers = new Map<string, string[]>()
  const add = (a: string, b: string): void => { peers.set(a, [...peers.get(a) ?? [], b]) }
  for (const c of oneLinkPerOutput(standingLinks(connections, vms).links).links) { add(c.from.vm, c.to.vm); add(c.to.vm, c.from.vm) }
  return peers
}

/**
 * What placement weighs of a VM. With `doc`, the nodes its link peers run on (or are
 * claimed for): a node cut off from one of them is its last choice, one cut off from
 * others only is not (bb44: a drain during a cut put a VM on the node its peer's node
 * did not reach, its peer's own node as good).
 */
export const demandOf = (vm: Vm, doc?: Pick<DocView, 'leases' | 'peers'>): Demand => ({
  vm: vm.id,
  cpu: vm.spec.cpu,
  memoryBytes: vm.spec.memoryBytes,
  constraints: vm.spec.constraints,
  antiAffinity: vm.spec.antiAffinity,
  driver: vm.spec.driver,
  ...((vm.spec.inputs?.length ?? 0) + (vm.spec.outputs?.length ?? 0) > 0 ? { links: true } : {}),
  ...((vm.spec.volumes?.length ?? 0) > 0 ? { disks: true } : {}),
  ...(bootsFromVolume(vm.spec) ? { volumeBoot: true } : {}),
  ...(doc?.peers != null ? { peerNodes: peerNodesOf(vm.id, doc) } : {})
})

const peerNodesOf = (id: string, doc: Pick<DocView, 'leases' | 'peers'>): string[] => {
  const out = new Set<string>()
  for (const p of doc.peers?.get(id) ?? []) {
    const w = doc.leases.get(p)?.winner
    if (w != null && !idle(w) && !isParked(w)) out.add(w.holder)
  }
  return [...out].sort()
}

/**
 * Nodes: everyone on the roll plus alive members not on it yet (a node records
 * itself as it starts, so that is brief). Only members alive in this agent's table
 * are alive; labels are the node's own (advert) overlaid with the document's.
 */
export function nodeViews (doc: DocView, members: MemberTable, labelsOf: (node: string) => Record<string, string>, me: string): NodeView[] {
  const ids = new Set([...doc.roll.keys(), ...[...members.values()].filter(m => m.state === 'alive').map(m => m.nodeId)])
  return [...ids].sort().map(id => {
    const m = members.get(id)
    const e = doc.roll.get(id)
    const alive = id === me || m?.state === 'alive'
    // the members it does not reach that are alive: one that left since reaches nobody (bb31:
    // a node cut from one that then stopped stayed the last choice, and a group piled elsewhere)
    const unreached = alive ? (m?.advert.unreached ?? []).filter(u => u === me || members.get(u)?.state === 'alive') : []
    return {
      id,
      name: m?.advert.name ?? e?.name ?? id,
      alive,
      // this node itself counts as alive since ever (its own fence is not judged by this)
      ...(alive ? { aliveSince: id === me ? -Infinity : m!.since } : {}),
      draining: e?.draining === true,
      capacity: { cpu: m?.advert.capacity.cpu ?? 0, memoryBytes: m?.advert.capacity.memoryBytes ?? 0 },
      labels: { ...m?.advert.labels, ...labelsOf(id) },
      ...(m?.advert.vmHost != null ? { drivers: m.advert.vmHost.drivers, ...(m.advert.vmHost.volumeBoot === true ? { volumeBoot: true } : {}) } : {}),
      ...(alive && m?.advert.overlayDown != null ? { overlayDown: m.advert.overlayDown } : {}),
      ...(alive && m?.advert.dataDiskFull != null ? { dataDiskFull: m.advert.dataDiskFull } : {}),
      ...(unreached.length > 0 ? { unreached } : {}),
      // dead members too: a takeover of a dead holder's leases waits for its fence (an
      // agent that advertises none runs the default)
      ...(m != null ? { fenceTimeoutMs: m.advert.fenceTimeoutMs ?? FENCE_TIMEOUT_MS } : {}),
      ...(m?.advert.silenceMs != null ? { silenceMs: m.advert.silenceMs } : {}),
      ...(m?.advert.livenessMs != null ? { livenessMs: m.advert.livenessMs } : {})
    }
  })
}

/** what every node holds, by the winning claims; a lease of a deleted VM still holds */
export function holdings (doc: DocView, except: ReadonlySet<string> = new Set()): Holding[] {
  const out: Holding[] = []
  for (const [vm, l] of doc.leases) {
    if (except.has(vm) || !reserves(l.winner)) continue
    out.push(holdingOf(l.winner, doc.vms.get(vm)?.spec.antiAffinity))
  }
  return out
}

/** the VM waits for a holder: desired running, with no lease or a parked one (it is placed anew over it) */
export const awaitsPlacement = (vm: Vm, l: LeaseView | undefined): boolean => vm.desired === 'running' && (l == null || isParked(l.winner))

/** the lease is a former VM's of this name (removed, then made again: decide.ts), not this VM's */
export const formerLease = (vm: Vm, l: LeaseView | undefined): boolean => l != null && !sameVm(l.winner.made, vm.created)

/** the VM's state as the API shows it */
export function vmState (vm: Vm, l: LeaseView | undefined): 'pending' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' {
  if (awaitsPlacement(vm, l)) return 'pending'
  // a former VM's run is not this one's: it waits for a place (decide.ts says why)
  if (formerLease(vm, l)) return vm.desired === 'running' ? 'pending' : 'stopped'
  if (l == null) return 'stopped'
  switch (l.winner.status) {
    case 'running': return vm.desired === 'running' ? 'running' : 'stopping'
    case 'stopping': return 'stopping'
    // left stopped by the crash rule, or by restart never after a crash, while it should
    // run: failed, as the README says (bb51: `vm ls --state failed` missed them); a clean
    // end its policy keeps (`completed`) or a stop on request (parked) is stopped
    case 'stopped': return vm.desired === 'running' && l.winner.completed !== true && l.winner.parked !== true ? 'failed' : 'stopped'
    case 'failed': return 'failed'
    default: return vm.desired === 'running' ? 'starting' : 'stopping'
  }
}

/** AppLogic's "HA ok": could every VM with a lease be placed again if any one node failed? (over the alive nodes) */
export function haOf (reader: Reader, members: MemberTable, me: string, strategy: Strategy): HaReport {
  const doc = docView(reader)
  const nodes = nodeViews(doc, members, n => reader.labelsOf(n), me).filter(n => n.alive)
  const demands = new Map([...doc.vms.values()].filter(v => doc.leases.has(v.id)).map(v => [v.id, demandOf(v, doc)]))
  return haCheck(demands, nodes, holdings(doc), { strategy })
}
