// The data dir holds the node's keys, the cluster document and the volumes' objects
// (GVS writes its files 0644 in 0755 directories, readable by anyone who can reach
// them): it is kept 0700, so that no other local user can. The agent makes it so when
// it creates it; one the operator made (mkdir: 0755), or one restored from a backup, is
// made 0700 at start with a warning naming it and its old mode, as secret-file.ts does
// for the key files. One that cannot be (not a directory, not ours to chmod) stops the
// agent with an error naming it: it would serve every volume's contents to other users.
// Only a directory that is vgrid's is chmod'ed: one that holds nothing but what vgrid
// writes there (a new file system's lost+found aside). A shared one (`--data-dir /var/lib`)
// stops the agent instead: made 0700, every other service's files under it would have
// been out of their users' reach.
import { chmod, chown, mkdir, readdir, stat } from 'node:fs/promises'
import { existsSync, readdirSync, statfsSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Logger } from './log.ts'

/**
 * Whether a directory entry is one a vgrid data dir holds: its keys, document, stores,
 * sockets and records (with their `.tmp` and `.corrupt-...` siblings), or a new file
 * system's lost+found.
 */
const VGRID_ENTRY = /^(lost\+found|agent\.lock|identity\.key|cluster\.key|wireguard\.key|api\.(token|sock)|nbd\.sock|state|dvmm|images|gvs(-[a-z.]+)?|incarnation\.json|peers\.json|roll-seen\.json)([.-].*)?$/

/** why the directory is not one vgrid may make 0700 (null: every entry is vgrid's, or none is there) */
export function sharedDirProblem (dir: string, entries: string[]): string | null {
  // one file of vgrid's among others proves nothing (`vgrid init --data-dir /var/lib` wrote cluster.key there)
  const others = entries.filter(e => !VGRID_ENTRY.test(e)).sort()
  if (others.length === 0) return null
  return `data dir ${dir} is open to other users and holds files that are not vgrid's (${others.slice(0, 3).join(', ')}${others.length > 3 ? `, and ${others.length - 3} more` : ''}): vgrid keeps its data dir 0700 and does not change the mode of a directory others use. Give it a directory of its own (e.g. ${dir.replace(/\/+$/, '')}/vgrid)`
}

/**
 * Throws when `dir` is open to other users and holds files that are not vgrid's (see
 * above): checked before the agent writes anything there (its lock file).
 */
export function refuseSharedDir (dir: string): void {
  let problem: string | null = null
  try {
    const st = statSync(dir)
    if (st.isDirectory() && (st.mode & 0o077) !== 0) problem = sharedDirProblem(dir, readdirSync(dir))
  } catch { /* said by secureDataDir, which names the cause */ }
  if (problem != null) throw new Error(problem)
}

/** kernel file systems that cannot hold files (statfs f_type): proc and sysfs */
const KERNEL_FS: ReadonlyMap<number, string> = new Map([[0x9fa0, 'proc'], [0x62656572, 'sysfs']])
const KERNEL_DIRS = [['/proc', 'proc'], ['/sys', 'sysfs']] as const

/** the kernel file system (proc, sysfs) `path` is on, or would be made on; null: another */
export function kernelFsOf (path: string): string | null {
  const abs = resolve(path)
  const under = kernelDirOf(abs)
  if (under != null) return under[1]
  try { return KERNEL_FS.get(statfsSync(existsSync(abs) ? abs : dirname(abs)).type) ?? null } catch { return null }
}

/** the kernel's directory (/proc, /sys) an absolute path is under, with its file system */
const kernelDirOf = (abs: string): readonly [string, string] | undefined => KERNEL_DIRS.find(([top]) => abs === top || abs.startsWith(`${top}/`))

export interface PlaceFs {
  statSync: (p: string) => { isDirectory: () => boolean }
  statfsSync: (p: string) => { type: number }
}

/**
 * Why `dir` cannot be a data dir, found before anything is made there (null: it may
 * be): under /proc or /sys, or its nearest existing ancestor on a proc or sysfs file
 * system (Node's recursive mkdir there loops forever at full CPU), or it or an
 * ancestor exists and is not a directory (mkdir said only "EEXIST"). Other troubles
 * (no permission) are left to the mkdir that names them.
 */
export function dataDirPlaceProblem (dir: string, fs: PlaceFs = { statSync, statfsSync }): string | null {
  const fix = 'give a directory on a disk (e.g. /var/lib/vgrid)'
  // '' would be the working directory to the agent and nothing to mkdir (bb35)
  if (dir.trim() === '') return `data dir is empty: ${fix}`
  const abs = resolve(dir)
  const under = kernelDirOf(abs)
  if (under != null) return `data dir ${dir} is under ${under[0]}, the kernel's ${under[1]} file system, which cannot hold data: ${fix}`
  for (let p = abs; ; p = dirname(p)) {
    let isDir: boolean
    try {
      isDir = fs.statSync(p).isDirectory()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && dirname(p) !== p) continue
      // ENOTDIR is said where the walk finds the file; anything else by the mkdir
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR' && dirname(p) !== p) continue
      return null
    }
    if (!isDir) return p === abs ? `data dir ${dir} exists and is not a directory: give a directory (or a path where one can be made)` : `data dir ${dir} cannot be made: ${p} exists and is not a directory`
    let kind: string | undefined
    try { kind = KERNEL_FS.get(fs.statfsSync(p).type) } catch { return null }
    if (kind != null) return `data dir ${dir} would be on ${p}, a ${kind} file system (the kernel's), which cannot hold data: ${fix}`
    return null
  }
}

/**
 * Creates the data dir 0700, or makes an existing one 0700 if group or others have any
 * access to it (see above); 0710 of the vgrid group (`adminGid`, given only while it
 * holds the API and NBD sockets, openToAdmins) stays: once the sockets are elsewhere,
 * the dir is made 0700 again.
 */
export async function secureDataDir (dir: string, log: Pick<Logger, 'info' | 'warn'>, fs: { chmod: typeof chmod } = { chmod }, adminGid?: number | null): Promise<void> {
  const named = (what: string, err: unknown): Error => new Error(`data dir ${dir} ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  // before mkdir, which would loop forever on /proc
  const place = dataDirPlaceProblem(dir)
  if (place != null) throw new Error(place)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    // a file of that name: said below
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw named('cannot be created', err)
  }
  let mode: number
  let gid: number
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) throw new Error(`data dir ${dir} is not a directory`)
    mode = st.mode & 0o7777
    gid = st.gid
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code == null ? err : named('cannot be read', err)
  }
  if ((mode & 0o077) === 0 || ((mode & 0o077) === 0o010 && adminGid != null && gid === adminGid)) return
  let entries: string[]
  try {
    entries = await readdir(dir)
  } catch (err) {
    throw named('cannot be listed', err)
  }
  const shared = sharedDirProblem(dir, entries)
  if (shared != null) throw new Error(shared)
  try {
    await fs.chmod(dir, 0o700)
  } catch (err) {
    throw new Error(`data dir ${dir} is open to other users (mode ${mode.toString(8)}) and cannot be made 0700: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}. Make it 0700 (chmod 700 ${dir}) or use another --data-dir`)
  }
  if (mode === 0o710 && adminGid == null) log.info('the data dir no longer holds the API and NBD sockets: made 0700', { dir, oldMode: mode.toString(8) })
  else log.warn(`the data dir was open to other users (mode ${mode.toString(8)}): made 0700`, { dir, oldMode: mode.toString(8) })
}

/** whether any of these sockets is in the data dir itself (pure) */
export function holdsSockets (dir: string, sockets: readonly string[]): boolean {
  return sockets.some(s => dirname(s) === resolve(dir))
}

/**
 * The data dir made 0710 of the vgrid group when the agent's API or NBD socket is in it
 * (a data dir not the default one; the default's sockets are in /run/vgrid): the
 * sockets are 0660 of the group, and a 0700 dir kept its members out of them (bb48).
 * Its files stay out of their reach but by name, and they may read every volume and
 * console anyway; no one else may enter it.
 */
export async function openToAdmins (dir: string, sockets: readonly string[], adminGid: number | null, log: Pick<Logger, 'info' | 'warn'>): Promise<void> {
  if (adminGid == null || !holdsSockets(dir, sockets)) return
  try {
    const st = await stat(dir)
    if ((st.mode & 0o777) === 0o710 && st.gid === adminGid) return
    await chown(dir, st.uid, adminGid)
    await chmod(dir, 0o710)
    log.info('the data dir holds the API and NBD sockets: made 0710 of the vgrid group, so that its members reach them', { dir })
  } catch (err) {
    log.warn('could not open the data dir to the vgrid group: its members cannot reach the sockets in it', { dir, error: (err as Error).message })
  }
}
