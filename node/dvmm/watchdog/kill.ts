// Killing every VM of a node from its run dirs alone (no driver, no agent): each VM's
// session by its recorded pid, only while that pid's start time still matches, and
// everything in its cgroups (found by their derived name when its record is damaged).
import { spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { allRecords, sameProcessAlive } from '../drivers/common.ts'
import { groupPids, killGroups } from '../host/cgroups.ts'

export const WATCHDOG_KILLED = 'watchdog-killed'

export interface Victim { id: string, driver: string, pid?: number, dir: string, cgroups: string[], damaged?: true, network?: { netns?: string, hostIf?: string, nodeNetns?: string } }

/** names of the VM links the drivers make (host/net.ts): nothing else is handed to `ip` */
const LINK_NAME = /^vg[a-z]{1,2}[0-9a-z-]{1,24}$/
const NETNS_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

function networkOf (rec: { network?: unknown, nodeNetns?: unknown }): Victim['network'] {
  const n = rec.network as { netns?: unknown, hostIf?: unknown } | undefined
  if (n == null || typeof n !== 'object') return undefined
  const netns = typeof n.netns === 'string' && LINK_NAME.test(n.netns) ? n.netns : undefined
  const hostIf = typeof n.hostIf === 'string' && LINK_NAME.test(n.hostIf) ? n.hostIf : undefined
  const nodeNetns = typeof rec.nodeNetns === 'string' && NETNS_NAME.test(rec.nodeNetns) ? rec.nodeNetns : undefined
  return netns == null && hostIf == null ? undefined : { netns, hostIf, nodeNetns }
}

/**
 * Removes the interfaces and namespaces of VMs it killed (best effort): an agent that
 * never comes back would leave them for ever; one that does finds them gone (its
 * driver's clean-up takes a missing one as removed).
 */
export function removeNetworks (victims: readonly Victim[]): void {
  for (const v of victims) {
    const n = v.network
    if (n == null) continue
    if (n.netns != null) {
      spawnSync('ip', ['netns', 'del', n.netns], { stdio: 'ignore' })
      try { rmSync(`/etc/netns/${n.netns}`, { recursive: true, force: true }) } catch {}
    }
    if (n.hostIf != null) spawnSync('ip', [...(n.nodeNetns != null ? ['-n', n.nodeNetns] : []), 'link', 'del', n.hostIf], { stdio: 'ignore' })
  }
}

/** SIGKILLs every live VM under `dataDir`; marks each run dir so its driver reports why. */
export function killAllVms (dataDir: string, now: number): Victim[] {
  const out: Victim[] = []
  for (const { dir, rec, damaged } of allRecords(dataDir)) {
    const live = rec.pid !== undefined && rec.pidStartTicks !== undefined && sameProcessAlive(rec.pid, rec.pidStartTicks, rec.bootId)
    if (!live && groupPids(rec.cgroups).length === 0) continue
    try { writeFileSync(join(dir, WATCHDOG_KILLED), String(now)) } catch {}
    if (live) {
      try { process.kill(-rec.pid!, 'SIGKILL') } catch {}
      try { process.kill(rec.pid!, 'SIGKILL') } catch {}
    }
    killGroups(rec.cgroups)
    const network = networkOf(rec)
    out.push({ id: rec.id, driver: String(rec.driver), pid: rec.pid, dir, cgroups: rec.cgroups, ...(damaged === true ? { damaged } : {}), ...(network != null ? { network } : {}) })
  }
  return out
}
