// The data dir holds the node's keys, the cluster document and the volumes' objects
// (GVS writes its files 0644 in 0755 directories, readable by anyone who can reach
// them): it is kept 0700, so that no other local user can. The agent makes it so when
// it creates it; one the operator made (mkdir: 0755), or one restored from a backup, is
// made 0700 at start with a warning naming it and its old mode, as secret-file.ts does
// for the key files. One that cannot be (not a directory, not ours to chmod) stops the
// agent with an error naming it: it would serve every volume's contents to other users.
import { chmod, mkdir, stat } from 'node:fs/promises'
import type { Logger } from './log.ts'

/** Creates the data dir 0700, or makes an existing one 0700 if group or others have any access to it (see above). */
export async function secureDataDir (dir: string, log: Pick<Logger, 'warn'>, fs: { chmod: typeof chmod } = { chmod }): Promise<void> {
  const named = (what: string, err: unknown): Error => new Error(`data dir ${dir} ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    // a file of that name: said below
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw named('cannot be created', err)
  }
  let mode: number
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) throw new Error(`data dir ${dir} is not a directory`)
    mode = st.mode & 0o7777
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code == null ? err : named('cannot be read', err)
  }
  if ((mode & 0o077) === 0) return
  try {
    await fs.chmod(dir, 0o700)
  } catch (err) {
    throw new Error(`data dir ${dir} is open to other users (mode ${mode.toString(8)}) and cannot be made 0700: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}. Make it 0700 (chmod 700 ${dir}) or use another --data-dir`)
  }
  log.warn(`the data dir was open to other users (mode ${mode.toString(8)}): made 0700`, { dir, oldMode: mode.toString(8) })
}
