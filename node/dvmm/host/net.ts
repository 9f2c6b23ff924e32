// A VM's interface on its node: a veth pair into the VM's own namespace (process
// driver) or a tap (qemu). Names derive from the VM id by hash so they fit Linux's 15
// characters and are found again by name after an agent restart. Each VM gets a /30
// from a small per-node link range: .1 on the node's end, .2 in the VM, so the node
// reaches its own VMs until the connection manager addresses and routes them. A VM with
// an overlay address has it routed to its interface before it runs (see routeOverlay).
import { shortHash } from './short-hash.ts'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ip, nsRun } from '../../netns/netns.ts'
import type { VmNetwork, VmOverlay } from '../drivers/types.ts'
import { hostsFile } from '../drivers/common.ts'
import { VM_LINK_RANGE } from '../../../protocol/vm-links.ts'

export const DEFAULT_LINK_RANGE = VM_LINK_RANGE

export const vethName = (id: string): string => `vgp${shortHash(id)}`
export const tapName = (id: string): string => `vgt${shortHash(id)}`
export const vmNetns = (id: string): string => `vgvm-${shortHash(id)}`

function ipToInt (a: string): number {
  const p = a.split('.').map(Number)
  if (p.length !== 4 || p.some(x => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`"${a}" is not an IPv4 address`)
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0
}
const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')

/** The /30 of `slot` in `range` (pure); throws when the range has no such slot. */
export function slotAddresses (range: string, slot: number): { hostAddress: string, vmAddress: string, prefix: number } {
  const [base, bits] = range.split('/')
  const prefix = Number(bits)
  if (base === undefined || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) throw new Error(`link range "${range}" is not an IPv4 CIDR of /8 to /30`)
  const size = 2 ** (30 - prefix)
  if (!Number.isInteger(slot) || slot < 0 || slot >= size) throw new Error(`link range ${range} has no slot ${slot} (it holds ${size} VMs)`)
  const net = (ipToInt(base) & ~(2 ** (32 - prefix) - 1)) >>> 0
  const start = net + slot * 4
  return { hostAddress: intToIp(start + 1), vmAddress: intToIp(start + 2), prefix: 30 }
}

/** The lowest slot not in `used` (pure). */
export function freeSlot (range: string, used: Iterable<number>): number {
  const taken = new Set(used)
  const size = 2 ** (30 - Number(range.split('/')[1]))
  for (let s = 0; s < size; s++) if (!taken.has(s)) return s
  throw new Error(`link range ${range} is full (${size} VMs)`)
}

const inNs = (ns: string | undefined, args: string[]): string[] => ns === undefined ? args : ['-n', ns, ...args]

/**
 * `ip netns exec NS` bind-mounts the files of /etc/netns/NS over /etc: a process VM
 * gets its own /etc/hosts there. Written in place (same inode), so a VM that runs
 * already sees a changed one.
 */
export function vmHostsPath (id: string): string {
  return join('/etc/netns', vmNetns(id), 'hosts')
}

export function writeVmHosts (id: string, names: Record<string, string>): void {
  mkdirSync(join('/etc/netns', vmNetns(id)), { recursive: true })
  writeFileSync(vmHostsPath(id), hostsFile(names))
}

/**
 * Makes the VM's namespace and a veth pair into it; `nodeNetns` is where the node's
 * end lives (root when undefined). With an overlay address the VM also holds it (a
 * /32) and sends from it: the node routes it and the link rules see it.
 */
export async function createVeth (id: string, range: string, slot: number, nodeNetns?: string, overlay?: VmOverlay): Promise<VmNetwork> {
  const ns = vmNetns(id)
  const hostIf = vethName(id)
  const a = slotAddresses(range, slot)
  // leftovers of a crashed run: the pair goes with its namespace
  if (existsSync(`/run/netns/${ns}`)) await deleteVeth(id, nodeNetns)
  await ip(['netns', 'add', ns])
  try {
    return await vethInto(id, ns, hostIf, a, nodeNetns, overlay)
  } catch (err) {
    // a set-up failed half-way leaves nothing behind: the VM may next run on another node, and nothing here would remove it
    await deleteVeth(id, nodeNetns).catch(() => {})
    throw err
  }
}

async function vethInto (id: string, ns: string, hostIf: string, a: ReturnType<typeof slotAddresses>, nodeNetns: string | undefined, overlay: VmOverlay | undefined): Promise<VmNetwork> {
  writeVmHosts(id, overlay?.names ?? {})
  // three `ip -batch` runs instead of ten processes: this is most of a process VM's start time.
  // Both ends come up before the node's end gets its address: on some kernels an end
  // brought up after the other end got its address stays NO-CARRIER.
  await ip([...inNs(nodeNetns, []), '-batch', '-'], { input: `link add ${hostIf} type veth peer name eth0 netns ${ns}\n` })
  const vmSide = ['link set lo up', 'link set eth0 up', `addr add ${a.vmAddress}/${a.prefix} dev eth0`]
  if (overlay === undefined) vmSide.push(`route add default via ${a.hostAddress}`)
  else vmSide.push(`addr add ${overlay.address}/32 dev eth0`, `route add default via ${a.hostAddress} src ${overlay.address}`)
  await ip(['-n', ns, '-batch', '-'], { input: vmSide.join('\n') + '\n' })
  await ip([...inNs(nodeNetns, []), '-batch', '-'], { input: [`link set ${hostIf} up`, `addr add ${a.hostAddress}/${a.prefix} dev ${hostIf}`, ...overlayRoute(hostIf, overlay)].join('\n') + '\n' })
  if (overlay !== undefined) await overlaySysctls(hostIf, nodeNetns)
  return { hostIf, netns: ns, ...a, ...(overlay !== undefined ? { overlayAddress: overlay.address } : {}) }
}

/**
 * The node's end of a VM with an overlay address is set as the connection manager's
 * plan sets it (LocalVmNet.route), before the VM runs: the plan learns of the interface
 * only once the VM started, and until then the anti-spoof rule (`fib saddr . iif`)
 * took the VM's first packets for forged ones (its address not routed there; with
 * rp_filter on, the kernel dropped them before), and on a host where no plan had turned
 * forwarding on yet they were not forwarded. The plan stays the owner: it sets the same
 * again (a no-op) and takes the route away when the VM is no longer addressed here; the
 * route also goes with the interface.
 */
export const overlayRoute = (hostIf: string, overlay: VmOverlay | undefined): string[] =>
  overlay === undefined ? [] : [`route replace ${overlay.address}/32 dev ${hostIf}`]

/** proxy ARP at once (for a VM whose default route has no gateway) and forwarding on its interface only */
export function overlaySysctlWrites (hostIf: string): Array<[string, string]> {
  return [
    [`/proc/sys/net/ipv4/conf/${hostIf}/proxy_arp`, '1'],
    [`/proc/sys/net/ipv4/neigh/${hostIf}/proxy_delay`, '0'],
    [`/proc/sys/net/ipv4/conf/${hostIf}/forwarding`, '1']
  ]
}

async function overlaySysctls (hostIf: string, nodeNetns: string | undefined): Promise<void> {
  const writes = overlaySysctlWrites(hostIf)
  // /proc/sys/net is the writer's own namespace: the node's, when it is not this one
  if (nodeNetns === undefined) for (const [f, v] of writes) writeFileSync(f, v)
  else await nsRun(nodeNetns, 'sh', ['-c', writes.map(([f, v]) => `echo ${v} > ${f}`).join(' && ')])
}

/** Removes the VM's namespace (which takes the pair with it) and a leftover node end. */
export async function deleteVeth (id: string, nodeNetns?: string): Promise<void> {
  await ip(['netns', 'del', vmNetns(id)], { allowFail: true })
  await ip(inNs(nodeNetns, ['link', 'del', vethName(id)]), { allowFail: true })
  rmSync(join('/etc/netns', vmNetns(id)), { recursive: true, force: true })
}

/** Makes the VM's tap on the node with the node's address of its /30. */
export async function createTap (id: string, range: string, slot: number, nodeNetns?: string, overlay?: VmOverlay): Promise<VmNetwork> {
  const hostIf = tapName(id)
  const a = slotAddresses(range, slot)
  await deleteTap(id, nodeNetns)
  await ip(inNs(nodeNetns, ['tuntap', 'add', 'dev', hostIf, 'mode', 'tap']))
  try {
    await ip(inNs(nodeNetns, ['addr', 'add', `${a.hostAddress}/${a.prefix}`, 'dev', hostIf]))
    await ip([...inNs(nodeNetns, []), '-batch', '-'], { input: [`link set ${hostIf} up`, ...overlayRoute(hostIf, overlay)].join('\n') + '\n' })
    if (overlay !== undefined) await overlaySysctls(hostIf, nodeNetns)
  } catch (err) {
    // a set-up failed half-way leaves no tap behind (see createVeth)
    await deleteTap(id, nodeNetns).catch(() => {})
    throw err
  }
  return { hostIf, ...a, ...(overlay !== undefined ? { overlayAddress: overlay.address } : {}) }
}

export async function deleteTap (id: string, nodeNetns?: string): Promise<void> {
  await ip(inNs(nodeNetns, ['link', 'del', tapName(id)]), { allowFail: true })
}
