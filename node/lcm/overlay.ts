// Overlay addresses, pure.
//
// The prefix: every cluster gets an IPv4 /16 inside 100.64.0.0/10 (the carrier-grade
// NAT range, as Tailscale uses it: rarely routed on a LAN, so overlay addresses do not
// shadow real networks) chosen by the first byte of SHA-256(cluster id), and an IPv6
// ULA /48 (fd00::/8 plus 40 bits of the same hash, as RFC 4193 asks for a random
// global id). The lower half of the /16 numbers nodes (their WireGuard interfaces),
// the upper half VMs; the IPv6 /48 uses subnet 0 for nodes and 1 for VMs with the
// same index, so each VM has one index and two addresses.
//
// The allocation: a VM's index is stored in the cluster document (wesher hashes
// names into 10/8 and accepts collisions; vgrid must not). An index is claimed by
// whoever creates the VM, first trying hash(id) and probing to a free one. Two
// claims made concurrently on different nodes may collide; allocate() resolves it
// the same way on every node: the earlier claim (`at`, then id) keeps the index, the
// other is moved to the next free slot from its hash, and whoever holds that VM
// writes the new index back. The index belongs to the VM, not to its node, so a VM
// restarted elsewhere keeps its address.
import { createHash } from 'node:crypto'

/** indexes per half of the /16: .0.1 to .127.254 for nodes, .128.1 to .255.254 for VMs */
export const SLOTS = 32766

export interface OverlayPrefix {
  /** the cluster's /16, e.g. 100.87.0.0/16 */
  v4: string
  /** the VM half, e.g. 100.87.128.0/17: traffic from or to it is VM traffic */
  vmV4: string
  nodeV4: string
  /** the cluster's ULA /48, e.g. fd12:3456:789a::/48 */
  v6: string
  /** second octet of the v4 /16 */
  octet: number
  /** the three first groups of the /48 */
  v6Groups: [string, string, string]
}

function hash (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

export function overlayPrefix (clusterId: string): OverlayPrefix {
  if (clusterId === '') throw new Error('cluster id is empty')
  const h = hash(`vgrid-overlay:${clusterId}`)
  const octet = 64 + (h[0]! % 64)
  const g = (i: number): string => ((h[i]! << 8) | h[i + 1]!).toString(16)
  const v6Groups: [string, string, string] = [(0xfd00 | h[1]!).toString(16), g(2), g(4)]
  return {
    v4: `100.${octet}.0.0/16`,
    vmV4: `100.${octet}.128.0/17`,
    nodeV4: `100.${octet}.0.0/17`,
    v6: `${v6Groups.join(':')}::/48`,
    octet,
    v6Groups
  }
}

function v4At (p: OverlayPrefix, base: number, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= SLOTS) throw new Error(`overlay index ${index} is outside 0-${SLOTS - 1}`)
  const n = base + index + 1
  return `100.${p.octet}.${n >> 8}.${n & 255}`
}

export function vmAddress (p: OverlayPrefix, index: number): { v4: string, v6: string } {
  return { v4: v4At(p, 0x8000, index), v6: `${p.v6Groups.join(':')}:1::${(index + 1).toString(16)}` }
}

export function nodeAddress (p: OverlayPrefix, index: number): { v4: string, v6: string } {
  return { v4: v4At(p, 0, index), v6: `${p.v6Groups.join(':')}:0::${(index + 1).toString(16)}` }
}

/** Where probing for `id` starts: spreads first claims so concurrent ones rarely meet. */
export function preferredIndex (id: string): number {
  return hash(`vgrid-slot:${id}`).readUInt32BE(0) % SLOTS
}

export interface Claim {
  id: string
  /** when the claim was written (ms); the earlier keeps a contested index */
  at: number
  /** the index stored in the document; null or invalid: none yet */
  index: number | null | undefined
}

export interface Allocation {
  index: number
  /** differs from the stored index: the holder (or creator) must write it */
  changed: boolean
  reason: string
}

const earlier = (a: Claim, b: Claim): number => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
const validIndex = (i: unknown): i is number => typeof i === 'number' && Number.isInteger(i) && i >= 0 && i < SLOTS

/** The first free index probing from `id`'s preferred one. */
export function nextFree (id: string, taken: ReadonlySet<number>): number {
  if (taken.size >= SLOTS) throw new Error(`no free overlay address: all ${SLOTS} are taken`)
  let i = preferredIndex(id)
  while (taken.has(i)) i = (i + 1) % SLOTS
  return i
}

/**
 * Resolves every claim to a distinct index, the same on every node for the same
 * input: stored indexes are kept, earliest claim first; a claim that lost its index
 * to an earlier one, or never had one, gets the next free index from its hash.
 */
export function allocate (claims: readonly Claim[]): Map<string, Allocation> {
  const out = new Map<string, Allocation>()
  const holder = new Map<number, string>()
  const ordered = [...claims].sort(earlier)
  const pending: Array<{ c: Claim, reason: string }> = []
  for (const c of ordered) {
    if (out.has(c.id)) continue
    if (!validIndex(c.index)) {
      pending.push({ c, reason: c.index == null ? 'no address yet' : `stored index ${String(c.index)} is invalid` })
      continue
    }
    const other = holder.get(c.index)
    if (other != null) {
      pending.push({ c, reason: `index ${c.index} also claimed by ${other}, whose claim is earlier` })
      continue
    }
    holder.set(c.index, c.id)
    out.set(c.id, { index: c.index, changed: false, reason: 'stored' })
  }
  const taken = new Set(holder.keys())
  for (const { c, reason } of pending) {
    if (out.has(c.id)) continue
    const index = nextFree(c.id, taken)
    taken.add(index)
    out.set(c.id, { index, changed: true, reason })
  }
  return out
}
