// Whether QEMU runs under its seccomp sandbox here. The probe starts an empty paused
// machine under -sandbox for a second and a half, at every agent start with the qemu
// driver, beside the accelerator's probe: on a loaded machine that start was slower
// for everything else (CI's timing tests). So the answer is cached in the data dir,
// keyed by the QEMU binary (path, size, mtime) and the running kernel's release, and
// only a verdict: QEMU still running with a seccomp filter on it (/proc says so), or
// QEMU saying it has no sandbox or the kernel refused the filter. Anything else (a QEMU
// still running without its filter yet, or failing otherwise) is asked again next time.
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { release } from 'node:os'
import { dirname } from 'node:path'
import { writeFileDurable } from '../../durable-file.ts'

/** QEMU's seccomp filter: no new programs, no privilege changes, no obsolete system calls */
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny'

export interface SandboxProbe { sandbox: boolean, key: string }

/** when a still running empty machine's filter is looked at, and it is ended */
const RUN_MS = 1500

/**
 * What one probe run says (pure): `filtered` is what /proc said of the QEMU still running
 * after RUN_MS (`Seccomp: 2`, a filter installed); `verdict` false when the run says
 * nothing about seccomp: a QEMU slow to fail on a loaded machine, still running but not
 * yet filtered, must not be taken as sandboxed (rv48), nor an unrelated failure as not.
 */
export function sandboxVerdict (r: { filtered: boolean | undefined, stderr: string }): { sandbox: boolean, verdict: boolean } {
  if (r.filtered === true) return { sandbox: true, verdict: true }
  if (r.filtered === false) return { sandbox: false, verdict: false }
  return { sandbox: false, verdict: /seccomp|sandbox/i.test(r.stderr) }
}

/** `Seccomp:` of a process's status: 2 is filter mode (pure) */
export function seccompFiltered (status: string): boolean | undefined {
  const m = /^Seccomp:\s*(\d+)/m.exec(status)
  return m == null ? undefined : m[1] === '2'
}

/** runs QEMU under the filter; `filtered` undefined when it ended before RUN_MS */
async function runUnderSandbox (qemu: string): Promise<{ filtered: boolean | undefined, stderr: string }> {
  return await new Promise(resolve => {
    let filtered: boolean | undefined
    const p = execFile(qemu, ['-sandbox', SANDBOX, '-machine', 'none', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-monitor', 'none', '-serial', 'none'],
      { timeout: RUN_MS * 4, killSignal: 'SIGKILL' }, (_err, _out, stderr) => { resolve({ filtered, stderr: String(stderr) }) })
    const look = setTimeout(() => {
      if (p.pid == null || p.exitCode != null || p.signalCode != null) return
      try { filtered = seccompFiltered(readFileSync(`/proc/${p.pid}/status`, 'utf8')) ?? false } catch { filtered = false }
      p.kill('SIGKILL')
    }, RUN_MS)
    p.once('exit', () => { clearTimeout(look) })
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
