// One agent runs the overlay per network namespace: the WireGuard port, the overlay
// range's routes and the link tables are the namespace's, and a second agent would
// remove the first one's interface and table as an earlier agent's leftovers. Held as a
// flock of a file named after the namespace (its inode) in a directory only root may
// enter (file-lock.ts: freed when the process ends, however it ends; the abstract unix
// socket used before could be bound by any user of the namespace, and the agent did not
// start again: bb48). The agent command takes it before the agent joins the grid (a
// second agent refused only at the LCM's start had joined first, and stayed in every
// table as dead); the LCM takes it again at its start (tests run it alone), shared
// within the process.
import { chmodSync, mkdirSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { socketHolderPids } from '../netns/netns.ts'
import { listeningUnixInodes } from './leftovers.ts'
import { dirname, join } from 'node:path'
import { takeFileLock, type FileLock } from '../file-lock.ts'

/** the abstract unix socket an agent of an earlier release held for its overlay */
const OLDER_OVERLAY_LOCK = '@vgrid-overlay'

/** the inodes of listening unix sockets named `name` in a /proc/net/unix text (pure) */
export const unixListenerInodes = (procNetUnix: string, name: string): number[] => listeningUnixInodes(procNetUnix, path => path === name)

/**
 * A root process holding the abstract overlay lock of an earlier release in this
 * namespace: an agent of that release runs the overlay here, which a new agent's flock
 * does not see (rv48: the new one removed its interface and table as leftovers). Only
 * root's counts: any user may bind that name (bb48), and must not keep an agent out.
 */
async function olderOverlayAgent (): Promise<number | undefined> {
  const inodes = unixListenerInodes(await readFile('/proc/net/unix', 'utf8').catch(() => ''), OLDER_OVERLAY_LOCK)
  for (const pid of await socketHolderPids(inodes)) {
    if (pid === process.pid) continue
    const uid = /^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1]
    if (uid === '0') return pid
  }
  return undefined
}

/** where the namespaces' overlay locks are: root's alone */
export const OVERLAY_LOCK_DIR = '/run/vgrid/locks'

/** this network namespace's overlay lock file: named by the namespace's inode */
function lockPath (): string {
  // /run/vgrid holds the API and NBD sockets too, for the vgrid group: 0755 (rv47: made
  // 0700 here, with the lock dir, it kept the group out of them); only the locks are root's
  mkdirSync(dirname(OVERLAY_LOCK_DIR), { recursive: true, mode: 0o755 })
  mkdirSync(OVERLAY_LOCK_DIR, { recursive: true, mode: 0o700 })
  chmodSync(OVERLAY_LOCK_DIR, 0o700)
  return join(OVERLAY_LOCK_DIR, `overlay-${statSync('/proc/self/ns/net').ino}.lock`)
}

export class OverlayInUse extends Error {}

/** the lock this process holds, or is taking (two takers at once in one process share it) */
let held: Promise<FileLock | null> | null = null
let holders = 0
/** the last release, until its holder has let go: a take right after it waits (an overlay stopped and started again) */
let letGo: Promise<void> = Promise.resolve()

/** Takes this namespace's overlay lock (shared within this process); throws OverlayInUse when another process holds it. Returns its release. */
export async function takeOverlayNamespace (): Promise<() => void> {
  if (held == null) await letGo
  held ??= takeFileLock(lockPath())
  const taken = held
  const lock = await taken.catch((err: unknown) => { if (held === taken) held = null; throw err })
  const older = lock != null && holders === 0 ? await olderOverlayAgent() : undefined
  if (lock == null || older != null) {
    if (held === taken) held = null
    if (lock != null) letGo = lock.release()
    throw new OverlayInUse(`another vgrid agent${older != null ? `, of an earlier release (pid ${older}),` : ''} runs the overlay in this network namespace: one per namespace (its WireGuard port, the overlay routes and the link rules are the namespace's); stop that one, or start this one with --no-overlay`)
  }
  holders++
  let released = false
  return () => {
    if (released) return
    released = true
    if (--holders > 0) return
    letGo = lock.release()
    held = null
  }
}
