// Killing every VM of a node from its run dirs alone (no driver, no agent): each VM's
// session by its recorded pid, only while that pid's start time still matches, and
// everything in its cgroups (found by their derived name when its record is damaged).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { allRecords, sameProcessAlive } from '../drivers/common.ts'
import { groupPids, killGroups } from '../host/cgroups.ts'

export const WATCHDOG_KILLED = 'watchdog-killed'

export interface Victim { id: string, driver: string, pid?: number, dir: string, cgroups: string[], damaged?: true }

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
    out.push({ id: rec.id, driver: String(rec.driver), pid: rec.pid, dir, cgroups: rec.cgroups, ...(damaged === true ? { damaged } : {}) })
  }
  return out
}
