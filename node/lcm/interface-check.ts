// What the WireGuard interface needs put back (pure): an interface set down (by hand,
// by a network tool) loses the routes through it, and setting it up again does not
// bring them back; a tester's links then carried nothing for good with health ok.

export interface InterfaceNow {
  /** `ip -j link show dev IF`'s flags */
  flags: readonly string[]
  /** the destinations of the routes through it now (`ip -j route show dev IF`) */
  routes: readonly string[]
}

export interface InterfaceWanted {
  /** the routes it must carry: the VM range, and the node range once it has an address */
  routes: readonly string[]
}

/** a /proc/net/route address (hex, host byte order: little-endian here) as dotted IPv4 */
const procAddr = (hex: string): number[] => [6, 4, 2, 0].map(i => parseInt(hex.slice(i, i + 2), 16))

/**
 * The IPv4 routes of the main table through `ifname`, as CIDRs, from /proc/net/route's
 * text (pure): read every few seconds without running `ip` (the check spawned two
 * processes each time; only a route missing needs `ip` now).
 */
export function procRoutesOf (text: string, ifname: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[0] !== ifname || f.length < 8 || !/^[0-9A-Fa-f]{8}$/.test(f[1]!) || !/^[0-9A-Fa-f]{8}$/.test(f[7]!)) continue
    const bits = procAddr(f[7]!).reduce((n, b) => n + b.toString(2).replaceAll('0', '').length, 0)
    out.push(`${procAddr(f[1]!).join('.')}/${bits}`)
  }
  return out
}

/** what to do: set it up, and the routes to put back (empty when it is as it should be) */
export function interfaceRepairs (now: InterfaceNow, wanted: InterfaceWanted): { up: boolean, routes: string[] } {
  const have = new Set(now.routes)
  return { up: !now.flags.includes('UP'), routes: wanted.routes.filter(r => !have.has(r)) }
}
