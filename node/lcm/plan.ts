// The LCM's decisions, pure: from the members table, the cluster document's VMs,
// leases and roll, and this node's id, what the WireGuard peers and the VM
// addresses should be. The service (service.ts) only applies the differences.
import type { MemberTable } from '../../protocol/membership.ts'
import { allocate, nodeAddress, vmAddress, type Allocation, type OverlayPrefix } from './overlay.ts'
import { isValidEndpoint, isValidKey, type PeerConfig, type PeerState } from './wireguard-format.ts'
import { peerAllowedIps, type NodeTunnel, type VmPlace } from './rules.ts'
import { KEEPALIVE_S } from './tunnel-health.ts'

/** What the plan reads of the document (a narrow view, filled from crdt's Reader). */
export interface DocView {
  vms: Array<{ id: string, at: number, created?: number, overlayIndex?: unknown, inputs?: readonly string[], outputs?: readonly string[] }>
  leases: Array<{ vm: string, holder: string }>
  roll: Array<{ node: string, joined: number, overlayIndex?: unknown }>
}

export interface Addressing {
  vms: VmPlace[]
  vmAlloc: Map<string, Allocation>
  nodeAddr: Map<string, string>
}

/**
 * Every VM's and node's overlay address. VMs: their stored index, conflicts settled
 * by overlay.allocate(). Nodes: the roll (plus members not on it yet) through the
 * same rule, keyed by join time.
 */
export function addressing (p: OverlayPrefix, doc: DocView, members: Iterable<string>): Addressing {
  const vmAlloc = allocate(doc.vms.map(v => ({ id: v.id, at: v.at, index: typeof v.overlayIndex === 'number' ? v.overlayIndex : null })))
  const holder = new Map(doc.leases.map(l => [l.vm, l.holder]))
  const vms = doc.vms.map(v => ({ vm: v.id, address: vmAddress(p, vmAlloc.get(v.id)!.index).v4, node: holder.get(v.id) ?? null, inputs: v.inputs, outputs: v.outputs }))
  const nodes = new Map(doc.roll.map(r => [r.node, { id: r.node, at: r.joined, index: typeof r.overlayIndex === 'number' ? r.overlayIndex : null }]))
  // a member not yet on the roll sorts after every rolled one
  for (const m of members) if (!nodes.has(m)) nodes.set(m, { id: m, at: Number.MAX_SAFE_INTEGER, index: null })
  const nodeAlloc = allocate([...nodes.values()])
  const nodeAddr = new Map([...nodeAlloc].map(([id, a]) => [id, nodeAddress(p, a.index).v4]))
  return { vms, vmAlloc, nodeAddr }
}

export interface Rejected { node: string, reason: 'bad-key' | 'bad-endpoint' | 'duplicate-key', detail: string }

export interface PeerPlan {
  /** by node id */
  peers: Map<string, PeerConfig>
  tunnels: NodeTunnel[]
  rejected: Rejected[]
}

/**
 * The peers this node should have: every alive or suspect member other than itself
 * whose advert carries a valid WireGuard key and endpoint (a suspect may come back:
 * dropping its tunnel would cut its VMs for nothing). Dead and left members have no
 * peer. A malformed key or endpoint is rejected, with the reason.
 */
export function planPeers (self: string, selfKey: string | null, members: MemberTable, addr: Addressing, keepaliveS = KEEPALIVE_S): PeerPlan {
  const tunnels: NodeTunnel[] = []
  const rejected: Rejected[] = []
  const seenKeys = new Map<string, string>()
  if (selfKey != null) seenKeys.set(selfKey, self)
  for (const m of [...members.values()].sort((a, b) => a.nodeId < b.nodeId ? -1 : 1)) {
    if (m.nodeId === self || (m.state !== 'alive' && m.state !== 'suspect')) continue
    const wg = m.advert.wireguard
    if (wg == null) continue
    if (!isValidKey(wg.publicKey)) { rejected.push({ node: m.nodeId, reason: 'bad-key', detail: `public key ${JSON.stringify(String(wg.publicKey).slice(0, 60))} is not a WireGuard key` }); continue }
    if (!isValidEndpoint(wg.endpoint)) { rejected.push({ node: m.nodeId, reason: 'bad-endpoint', detail: `endpoint ${JSON.stringify(String(wg.endpoint).slice(0, 60))} is not ADDRESS:PORT` }); continue }
    const other = seenKeys.get(wg.publicKey)
    if (other != null) { rejected.push({ node: m.nodeId, reason: 'duplicate-key', detail: `public key already used by ${other}` }); continue }
    seenKeys.set(wg.publicKey, m.nodeId)
    const address = addr.nodeAddr.get(m.nodeId)
    if (address == null) continue
    tunnels.push({ node: m.nodeId, publicKey: wg.publicKey, endpoint: wg.endpoint, address })
  }
  const allowed = peerAllowedIps(self, tunnels, addr.vms)
  const peers = new Map(tunnels.map(t => [t.node, { publicKey: t.publicKey, endpoint: t.endpoint, allowedIps: allowed.get(t.node) ?? [], persistentKeepalive: keepaliveS }]))
  return { peers, tunnels, rejected }
}

export interface PeerOps {
  set: PeerConfig[]
  remove: string[]
}

/**
 * What to change on the interface: peers that are missing or differ are set, peers
 * no member wants are removed. The endpoint counts as different only when the
 * advert names another one than we last applied (`applied`): an endpoint the
 * interface learned by roaming is newer than an advert that still names the old one.
 */
export function diffPeers (current: PeerState[], desired: Iterable<PeerConfig>, applied: ReadonlyMap<string, string | null> = new Map()): PeerOps {
  const have = new Map(current.map(p => [p.publicKey, p]))
  const set: PeerConfig[] = []
  const wanted = new Set<string>()
  for (const d of desired) {
    wanted.add(d.publicKey)
    const h = have.get(d.publicKey)
    const same = h != null &&
      [...h.allowedIps].sort().join(',') === [...d.allowedIps].sort().join(',') &&
      h.persistentKeepalive === (d.persistentKeepalive ?? 0) &&
      (applied.has(d.publicKey) ? applied.get(d.publicKey) === d.endpoint : h.endpoint === d.endpoint)
    if (!same) set.push(d)
  }
  return { set, remove: current.map(p => p.publicKey).filter(k => !wanted.has(k)) }
}
