// Files in the data dir that hold secrets (the cluster key, the node's identity, the
// API token). They are read with errors that name the file (a bare "EISDIR" told the
// operator nothing), and kept root-only: one that others may read (copied in with cp,
// restored from a backup) is made 0600 again, with a warning.
import { chmod, readFile, stat } from 'node:fs/promises'
import type { Logger } from './log.ts'

/** The file's bytes, or undefined when there is none; throws naming the file when it cannot be read. */
export async function readSecretFile (path: string, what: string, log?: Logger): Promise<Buffer | undefined> {
  const named = (err: unknown): Error => new Error(`${what} ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  let mode: number
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new Error(`${what} ${path} is not a regular file`)
    mode = st.mode & 0o777
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw (err as NodeJS.ErrnoException).code == null ? err : named(err)
  }
  if ((mode & 0o077) !== 0) {
    try {
      await chmod(path, 0o600)
      log?.warn(`${what} was readable by others (mode ${mode.toString(8)}): made 0600`, { file: path })
    } catch (err) {
      throw new Error(`${what} ${path} is readable by others (mode ${mode.toString(8)}) and cannot be made 0600: ${(err as Error).message}`)
    }
  }
  try {
    return await readFile(path)
  } catch (err) {
    throw named(err)
  }
}
