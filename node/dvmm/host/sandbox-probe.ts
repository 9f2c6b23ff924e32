// Whether QEMU runs under its seccomp sandbox here. The probe starts an empty paused
// machine under -sandbox for a second and a half, at every agent start with the qemu
// driver, beside the accelerator's probe: on a loaded machine that start was slower
// for everything else (CI's timing tests). So the answer is cached in the data dir,
// keyed by the QEMU binary (path, size, mtime) and the running kernel's release, and
// only a verdict: QEMU still running under the filter, or QEMU saying it has no
// sandbox or the kernel refused the filter. Anything else is asked again next time.
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { release } from 'node:os'
import { dirname } from 'node:path'
import { writeFileDurable } from '../../durable-file.ts'

/** QEMU's seccomp filter: no new programs, no privilege changes, no obsolete system calls */
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny'

export interface SandboxProbe { sandbox: boolean, key: string }

/** how long an empty machine must keep running under the filter to count as sandboxed */
const RUN_MS = 1500

/** What one probe run says (pure): `verdict` false when it says nothing about seccomp. */
export function sandboxVerdict (r: { killed: boolean, stderr: string }): { sandbox: boolean, verdict: boolean } {
  if (r.killed) return { sandbox: true, verdict: true }
  return { sandbox: false, verdict: /seccomp|sandbox/i.test(r.stderr) }
}

async function runUnderSandbox (qemu: string): Promise<{ killed: boolean, stderr: string }> {
  return await new Promise(resolve => {
    execFile(qemu, ['-sandbox', SANDBOX, '-machine', 'none', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-monitor', 'none', '-serial', 'none'],
      { timeout: RUN_MS, killSignal: 'SIGKILL' }, (err, _out, stderr) => {
        resolve({ killed: err != null && (err as { killed?: boolean }).killed === true, stderr: String(stderr) })
      })
  })
}

/**
 * Whether QEMU runs under -sandbox here: built with seccomp, and the kernel takes the
 * filter (a parse alone, `-version`, proved neither: rv47). An empty machine, paused, is
 * started: one that still runs after RUN_MS has its filter; one that cannot exits.
 */
export async function probeSandbox (qemu: string, cacheFile: string): Promise<boolean> {
  let key: string
  try {
    const q = statSync(qemu)
    key = `${qemu}:${q.size}:${q.mtimeMs}:${release()}`
  } catch {
    return false
  }
  try {
    const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as SandboxProbe
    if (cached.key === key && typeof cached.sandbox === 'boolean') return cached.sandbox
  } catch {}
  const v = sandboxVerdict(await runUnderSandbox(qemu))
  if (v.verdict) {
    try {
      mkdirSync(dirname(cacheFile), { recursive: true })
      await writeFileDurable(cacheFile, JSON.stringify({ sandbox: v.sandbox, key } satisfies SandboxProbe))
    } catch {}
  }
  return v.sandbox
}
