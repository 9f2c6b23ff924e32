// One agent runs the overlay per network namespace: the WireGuard port, the overlay
// range's routes and the link tables are the namespace's, and a second agent would
// remove the first one's interface and table as an earlier agent's leftovers. Held as an
// abstract unix socket (abstract names are per network namespace, and the kernel frees
// one when its process ends, however it ends: data-dir-lock.ts's mechanism). The agent
// command takes it before the agent joins the grid (a second agent refused only at the
// LCM's start had joined first, and stayed in every table as dead); the LCM takes it
// again at its start (tests run it alone), shared within the process.
import type { Server } from 'node:net'
import { bindAbstractLock } from '../data-dir-lock.ts'

const OVERLAY_LOCK = 'vgrid-overlay'

export class OverlayInUse extends Error {}

let held: Server | null = null
let holders = 0

/** Takes this namespace's overlay lock (shared within this process); throws OverlayInUse when another process holds it. Returns its release. */
export async function takeOverlayNamespace (): Promise<() => void> {
  if (held == null) {
    const server = await bindAbstractLock(OVERLAY_LOCK)
    if (server == null) throw new OverlayInUse('another vgrid agent runs the overlay in this network namespace: one per namespace (its WireGuard port, the overlay routes and the link rules are the namespace\'s); stop that one, or start this one with --no-overlay')
    held = server
  }
  holders++
  let released = false
  return () => {
    if (released) return
    released = true
    if (--holders > 0) return
    held?.close()
    held = null
  }
}
