// Fault injection for the durability suite: small tmpfs mounts to fill, immutable
// files, and the bookkeeping of which writes were acknowledged and which refused.
// Everything is undone by name in t.teardown, also when a test fails.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, open, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import type { AgentProcess } from '../helpers/agent-process.ts'
import { call } from '../state-grid.ts'

const run = promisify(execFile)

/** Why this machine cannot run the root-only fault tests, or null if it can. */
export async function cannotMount (): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'needs root (tmpfs mounts, chattr)'
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-fault-probe-'))
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir])
    await run('umount', [dir])
    return null
  } catch (err) {
    return `cannot mount tmpfs: ${(err as Error).message}`
  } finally {
    await rmdir(dir).catch(() => {})
  }
}

/** A tmpfs of `size` (e.g. '8m') on a fresh directory, unmounted and removed at teardown. */
export async function mountTmpfs (t: ExecutionContext, size: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vgrid-fault-'))
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir])
  t.teardown(async () => {
    await run('umount', ['-l', dir]).catch(() => {})
    await rmdir(dir).catch(() => {})
  })
  return dir
}

/** Fills the filesystem holding `dir` until ENOSPC; returns the filler file (delete it to free the space). */
export async function fillDisk (dir: string): Promise<string> {
  const file = join(dir, 'filler')
  const fh = await open(file, 'w')
  const chunk = Buffer.alloc(16 * 1024, 0x5a)
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(chunk)
      if (bytesWritten < chunk.length) break
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  } finally {
    await fh.close()
  }
  return file
}

export async function freeDisk (file: string): Promise<void> {
  await rm(file, { force: true })
}

export async function chattr (flag: '+i' | '-i', path: string): Promise<void> {
  await run('chattr', [flag, path])
}

/** Writes made by a test: acknowledged (200) or refused (with the status). */
export class Ledger {
  readonly acked = new Map<string, string>()
  readonly refused = new Map<string, number>()
  /** writes whose fate the client cannot know (the agent died or the call timed out) */
  readonly unknown = new Set<string>()
  private n = 0

  /** One label write on `node` through `a`; returns the status (0 if the call failed). */
  async write (a: AgentProcess, node: string, prefix: string): Promise<number> {
    const key = `${prefix}-${this.n++}`
    const value = `v-${key}`
    let status = 0
    try {
      status = (await call(a, 'PUT', `/v1/nodes/${encodeURIComponent(node)}/labels/${encodeURIComponent(key)}`, { value }, 20_000)).status
    } catch {
      this.unknown.add(key)
      return 0
    }
    if (status === 200) this.acked.set(key, value)
    else this.refused.set(key, status)
    return status
  }

  /** What of the ledger a document's labels contradict: acknowledged writes missing, refused writes present. */
  check (labels: Record<string, string>): { missing: string[], present: string[] } {
    return {
      missing: [...this.acked].filter(([k, v]) => labels[k] !== v).map(([k]) => k),
      present: [...this.refused.keys()].filter(k => k in labels)
    }
  }
}

export async function labelsOn (a: AgentProcess, node: string): Promise<Record<string, string>> {
  return ((await call(a, 'GET', `/v1/nodes/${encodeURIComponent(node)}`)).body as { labels: Record<string, string> }).labels
}

export function errorLines (log: string, pattern: RegExp): string[] {
  return log.split('\n').filter(l => / ERROR /.test(l) && pattern.test(l))
}
