// One agent per data dir. A second agent started on the dir of a running one would load
// the same keys and document, appear in the grid as the same node under its own name,
// and remove the first one's sockets as it set up its own. So the agent command takes
// this lock before anything else touches the dir, and refuses to start without it.
//
// The lock is a flock of <data-dir>/agent.lock (file-lock.ts), held while the agent
// lives, however it ends; the data dir is root's alone, so no other user can take it
// first (bb48: the abstract unix socket used before could be bound by any user, and
// the agent did not start again). The file also records the holder ({pid, startTicks,
// bootId}), named when a second agent is refused.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { currentBootId, procStat, sameProcessAlive } from './dvmm/drivers/common.ts'
import { refuseSharedDir } from './data-dir.ts'
import { takeFileLock } from './file-lock.ts'

export const lockFile = (dataDir: string): string => join(dataDir, 'agent.lock')

export class DataDirInUse extends Error {}

export interface DataDirLock { release: () => Promise<void> }

/** the agent the lock file names, while it runs (not this process) */
function holder (dataDir: string): { pid: number, since?: string } | undefined {
  let rec: { pid?: unknown, startTicks?: unknown, bootId?: unknown } | null
  try { rec = JSON.parse(readFileSync(lockFile(dataDir), 'utf8')) as typeof rec } catch { return undefined }
  // a file of another shape (null, a number) names no agent: ours replaces it
  if (rec == null || typeof rec !== 'object' || typeof rec.pid !== 'number' || typeof rec.startTicks !== 'number' || rec.pid === process.pid) return undefined
  if (!sameProcessAlive(rec.pid, rec.startTicks, typeof rec.bootId === 'string' ? rec.bootId : undefined)) return undefined
  return { pid: rec.pid }
}

const inUse = (dataDir: string, who: { pid: number } | undefined): DataDirInUse =>
  new DataDirInUse(`data dir ${dataDir} is in use by another vgrid agent${who != null ? ` (pid ${who.pid})` : ''}: one agent per data dir; stop that one first, or give this one a data dir of its own (--data-dir)`)

/** Takes the data dir's lock (creating the dir), or throws DataDirInUse naming the agent that holds it. */
export async function lockDataDir (dataDir: string, onLost?: (why: string) => void): Promise<DataDirLock> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  // a shared directory (--data-dir /var/lib) gets no lock file of ours either
  refuseSharedDir(dataDir)
  const lock = await takeFileLock(lockFile(dataDir), onLost).catch((err: Error) => { throw new Error(`cannot lock data dir ${dataDir}: ${err.message}`) })
  if (lock == null) throw inUse(dataDir, holder(dataDir))
  // an agent of an earlier release, which held an abstract socket and not this flock,
  // runs on the dir still (an upgrade that started the new agent before the old one ended)
  let older: ReturnType<typeof holder>
  try { older = holder(dataDir) } catch (err) { await lock.release(); throw err }
  if (older != null) {
    await lock.release()
    throw inUse(dataDir, older)
  }
  try {
    // in place (the lock is on this file's inode), 0600
    writeFileSync(lockFile(dataDir), JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)?.startTicks, bootId: currentBootId() }) + '\n', { mode: 0o600 })
    chmodSync(lockFile(dataDir), 0o600)
  } catch {}
  return lock
}
