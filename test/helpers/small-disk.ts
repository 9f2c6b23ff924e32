// A 2 MiB tmpfs to fill up (a full disk without filling the machine's): mounted for one
// test and unmounted when it ends. Needs root; elsewhere the test is skipped, saying why.
import type { ExecutionContext } from 'ava'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** the mount point, or null when the test was skipped (it has passed, with the reason logged) */
export async function smallDisk (t: ExecutionContext): Promise<string | null> {
  if (process.getuid?.() !== 0) { t.log('skipped: mounting a small tmpfs needs root'); t.pass(); return null }
  const mnt = await mkdtemp(join(tmpdir(), 'gvs-full-'))
  try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]) } catch (err) {
    await rm(mnt, { recursive: true, force: true })
    t.log(`skipped: cannot mount a tmpfs here: ${String(err)}`); t.pass(); return null
  }
  t.teardown(async () => { execFileSync('umount', [mnt]); await rm(mnt, { recursive: true, force: true }) })
  return mnt
}
