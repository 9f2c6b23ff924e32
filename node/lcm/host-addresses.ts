// What the LCM reads of this host's own addresses (os.networkInterfaces()), as pure
// functions of that listing: the address to advertise as the WireGuard endpoint, and a
// key that changes when any address does (the service polls it to notice roaming).
// Neither looks at the overlay interface or at VMs' interfaces: a VM's node-side
// interface has an address of its own (10.254.x.1), which is no way to reach this host,
// and a VM started or stopped is no change of the host's addresses.
import type { NetworkInterfaceInfo } from 'node:os'
import { isVmInterface } from './rules.ts'

export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>

const hostInterface = (name: string, overlayIf: string): boolean => name !== overlayIf && !isVmInterface(name)

/** The first non-loopback IPv4 on a host interface that is not an overlay address (100.OCTET.x.x). */
export function firstAddress (ifs: Interfaces, overlayIf: string, octet: number): string | null {
  for (const [name, list] of Object.entries(ifs)) {
    if (!hostInterface(name, overlayIf)) continue
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.internal && !a.address.startsWith(`100.${octet}.`)) return a.address
    }
  }
  return null
}

/** Every non-loopback address of the host's interfaces, sorted, as one string. */
export function addressKey (ifs: Interfaces, overlayIf: string): string {
  return Object.entries(ifs).filter(([n]) => hostInterface(n, overlayIf))
    .flatMap(([, l]) => (l ?? []).filter(a => !a.internal).map(a => a.address)).sort().join(',')
}
