// Which process is this data dir's watchdog supervisor: pid.json ({pid, startTicks,
// bootId}) names it, checked against the live process. A pid.json of a release before
// boot ids were recorded has none: after the machine restarted, a process of the new
// boot with the same pid and start time would pass for the supervisor. Such a record
// counts only if the process's command line is the supervisor's for this data dir,
// and is stamped with the boot id once found so (the first agent run of a release
// that records them, in the same boot, closes the gap). A pid.json that is damaged
// (not JSON, no pid) says nothing: the supervisor is then looked for by its command
// line among the machine's processes and recorded again, so a restarted agent adopts
// it instead of starting a second one beside it (a black-box tester's finding).
import { readFileSync, readdirSync } from 'node:fs'
import { writeFileDurableSync } from '../../durable-file.ts'
import { currentBootId, procStat, sameProcessAlive } from '../drivers/common.ts'
import { watchdogPaths } from './paths.ts'

export interface SupervisorRecord { pid: number, startTicks: number, bootId?: string }

/** the supervisor's command line names its script and this data dir (supervisor-main.ts DATA_DIR TIMEOUT_MS [CHECK_MS]) */
export function isSupervisorCmdline (argv: readonly string[], dataDir: string): boolean {
  const i = argv.findIndex(a => /supervisor-main(\.[cm]?[jt]s)?$/.test(a))
  return i >= 0 && argv[i + 1] === dataDir
}

function cmdlineOf (pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(a => a !== '')
  } catch {
    return undefined
  }
}

/** The supervisor's pid when one runs for `dataDir`, else undefined. */
export function liveSupervisor (dataDir: string): number | undefined {
  const file = watchdogPaths(dataDir).pid
  let p: SupervisorRecord
  try {
    p = JSON.parse(readFileSync(file, 'utf8')) as SupervisorRecord
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : findSupervisor(dataDir)
  }
  if (typeof p?.pid !== 'number' || typeof p.startTicks !== 'number') return findSupervisor(dataDir)
  if (!sameProcessAlive(p.pid, p.startTicks, p.bootId)) return undefined
  if (p.bootId !== undefined) return p.pid
  const argv = cmdlineOf(p.pid)
  if (argv === undefined || !isSupervisorCmdline(argv, dataDir)) return undefined
  const bootId = currentBootId()
  if (bootId !== undefined) {
    try { writeFileDurableSync(file, JSON.stringify({ ...p, bootId })) } catch {}
  }
  return p.pid
}

/** a supervisor of this data dir found by its command line (its record damaged), recorded again; else undefined */
function findSupervisor (dataDir: string): number | undefined {
  let pids: string[] = []
  try { pids = readdirSync('/proc').filter(n => /^\d+$/.test(n)) } catch {}
  for (const n of pids) {
    const pid = Number(n)
    const argv = cmdlineOf(pid)
    if (pid === process.pid || argv === undefined || !isSupervisorCmdline(argv, dataDir)) continue
    const st = procStat(pid)
    if (st == null) continue
    try { writeFileDurableSync(watchdogPaths(dataDir).pid, JSON.stringify({ pid, startTicks: st.startTicks, bootId: currentBootId() })) } catch {}
    return pid
  }
  return undefined
}
