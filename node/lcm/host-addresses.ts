// What the LCM reads of this host's own addresses (os.networkInterfaces()), as pure
// functions of that listing: the address to advertise as the WireGuard endpoint, and a
// key that changes when any address does (the service polls it to notice roaming).
import type { NetworkInterfaceInfo } from 'node:os'

export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>

/** The first non-loopback IPv4 not on the overlay interface and not an overlay address (100.OCTET.x.x). */
export function firstAddress (ifs: Interfaces, overlayIf: string, octet: number): string | null {
  for (const [name, list] of Object.entries(ifs)) {
    if (name === overlayIf) continue
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.internal && !a.address.startsWith(`100.${octet}.`)) return a.address
    }
  }
  return null
}

/** Every non-loopback address of the host but the overlay interface's, sorted, as one string. */
export function addressKey (ifs: Interfaces, overlayIf: string): string {
  return Object.entries(ifs).filter(([n]) => n !== overlayIf)
    .flatMap(([, l]) => (l ?? []).filter(a => !a.internal).map(a => a.address)).sort().join(',')
}
