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
import { currentBootId, parseProcStat, sameProcessAlive } from '../drivers/common.ts'
import { watchdogPaths } from './paths.ts'

export interface SupervisorRecord { pid: number, startTicks: number, bootId?: string }

/** the supervisor's command line names its script and this data dir (supervisor-main.ts DATA_DIR TIMEOUT_MS [CHECK_MS]) */
export function isSupervisorCmdline (argv: readonly string[], dataDir: string): boolean {
  const i = argv.findIndex(a => /supervisor-main(\.[cm]?[jt]s)?$/.test(a))
  return i >= 0 && argv[i + 1] === dataDir
}

/** read errors that say this process cannot look now (no descriptor, no memory), not that the file is gone */
const BLIND = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN'])

class Blind extends Error {}

/** a read that throws Blind when this process cannot look (BLIND), undefined when there is nothing to read */
function readOr<T> (f: () => T): T | undefined {
  try {
    return f()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code != null && BLIND.has(code)) throw new Blind(`${code}: ${(err as Error).message}`)
    return undefined
  }
}

function cmdlineOf (pid: number): string[] | undefined {
  return readOr(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(a => a !== ''))
}

/** whether a process with this pid exists (a signal 0 needs no file descriptor) */
function pidExists (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/**
 * Whether this data dir's supervisor runs: its pid, 'gone', or why this process cannot
 * tell now (no file descriptor left: bb24 flooded an agent's API). Only a 'gone' found
 * by reads that worked lets a new one start: a second would run beside it.
 */
export function supervisorState (dataDir: string): { pid: number } | 'gone' | { unknown: string } {
  try {
    const pid = lookUp(dataDir)
    return pid === undefined ? 'gone' : { pid }
  } catch (err) {
    if (err instanceof Blind) return { unknown: err.message }
    throw err
  }
}

/** The supervisor's pid when one runs for `dataDir`, else undefined (also when this process cannot tell: see supervisorState). */
export function liveSupervisor (dataDir: string): number | undefined {
  const s = supervisorState(dataDir)
  return typeof s === 'object' && 'pid' in s ? s.pid : undefined
}

function lookUp (dataDir: string): number | undefined {
  const file = watchdogPaths(dataDir).pid
  let p: SupervisorRecord
  try {
    p = JSON.parse(readFileSync(file, 'utf8')) as SupervisorRecord
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code != null && BLIND.has(code)) throw new Blind(`${code}: ${(err as Error).message}`)
    return code === 'ENOENT' ? undefined : findSupervisor(dataDir)
  }
  if (typeof p?.pid !== 'number' || typeof p.startTicks !== 'number') return findSupervisor(dataDir)
  if (!sameProcessAlive(p.pid, p.startTicks, p.bootId)) {
    // it reads the process's stat and takes a read that failed for want of a descriptor
    // for a process gone: one of that pid still there is looked at again, and a read
    // that fails so now is Blind, not gone
    if (!pidExists(p.pid)) return undefined
    const stat = readOr(() => readFileSync(`/proc/${p.pid}/stat`, 'utf8'))
    if (stat === undefined) return undefined
    const st = parseProcStat(stat)
    const same = sameProcessAlive(p.pid, p.startTicks, p.bootId) || (st.startTicks === p.startTicks && st.state !== 'Z' && st.state !== 'X' && (p.bootId === undefined || p.bootId === currentBootId()))
    if (!same) return undefined
  }
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
  const pids = readOr(() => readdirSync('/proc').filter(n => /^\d+$/.test(n))) ?? []
  for (const n of pids) {
    const pid = Number(n)
    const argv = cmdlineOf(pid)
    if (pid === process.pid || argv === undefined || !isSupervisorCmdline(argv, dataDir)) continue
    const stat = readOr(() => readFileSync(`/proc/${pid}/stat`, 'utf8'))
    if (stat === undefined) continue
    const st = parseProcStat(stat)
    try { writeFileDurableSync(watchdogPaths(dataDir).pid, JSON.stringify({ pid, startTicks: st.startTicks, bootId: currentBootId() })) } catch {}
    return pid
  }
  return undefined
}
