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

/** what to do: set it up, and the routes to put back (empty when it is as it should be) */
export function interfaceRepairs (now: InterfaceNow, wanted: InterfaceWanted): { up: boolean, routes: string[] } {
  const have = new Set(now.routes)
  return { up: !now.flags.includes('UP'), routes: wanted.routes.filter(r => !have.has(r)) }
}
