// One agent per data dir. A second agent started on the dir of a running one would load
// the same keys and document, appear in the grid as the same node under its own name,
// and remove the first one's sockets as it set up its own. So the agent command takes
// this lock before anything else touches the dir, and refuses to start without it.
//
// The lock is an abstract unix socket named after the dir (its real path): binding it
// is atomic, and the kernel releases it when the process ends, however it ends, so a
// crashed agent leaves no stale lock. Abstract names belong to a network namespace, so
// the holder is also recorded in <data-dir>/agent.lock ({pid, startTicks, bootId}): an
// agent of the same dir in another namespace that still runs refuses the second too.
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { currentBootId, procStat, sameProcessAlive } from './dvmm/drivers/common.ts'
import { refuseSharedDir } from './data-dir.ts'

export const lockFile = (dataDir: string): string => join(dataDir, 'agent.lock')

export class DataDirInUse extends Error {}

export interface DataDirLock { release: () => void }

/** the abstract socket name of a data dir's lock (without the leading NUL) */
export function lockName (dataDir: string): string {
  let real = dataDir
  try { real = realpathSync(dataDir) } catch {}
  return `vgrid-agent-${createHash('sha256').update(real).digest('hex').slice(0, 32)}`
}

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

/**
 * Binds the abstract unix socket `name` (of this network namespace) as a lock: the
 * server, or null when another process holds it. Released by the kernel when the
 * process ends, however it ends.
 */
export async function bindAbstractLock (name: string): Promise<Server | null> {
  const server: Server = createServer()
  const bound = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EADDRINUSE') resolve(false); else reject(err) })
    server.listen(`\0${name}`, () => { resolve(true) })
  })
  if (!bound) return null
  server.unref()
  return server
}

/** Takes the data dir's lock (creating the dir), or throws DataDirInUse naming the agent that holds it. */
export async function lockDataDir (dataDir: string): Promise<DataDirLock> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  // a shared directory (--data-dir /var/lib) gets no lock file of ours either
  refuseSharedDir(dataDir)
  const server = await bindAbstractLock(lockName(dataDir)).catch((err: Error) => { throw new Error(`cannot lock data dir ${dataDir}: ${err.message}`) })
  if (server == null) throw inUse(dataDir, holder(dataDir))
  // an agent of this dir in another network namespace
  let other: ReturnType<typeof holder>
  try { other = holder(dataDir) } catch (err) { server.close(); throw err }
  if (other != null) {
    server.close()
    throw inUse(dataDir, other)
  }
  try {
    writeFileSync(lockFile(dataDir), JSON.stringify({ pid: process.pid, startTicks: procStat(process.pid)?.startTicks, bootId: currentBootId() }) + '\n', { mode: 0o600 })
  } catch {}
  return { release: () => { server.close() } }
}
