// Whether QEMU runs under its seccomp sandbox here. The probe starts an empty paused
// machine under -sandbox until /proc shows its filter (up to 6 s), beside the
// accelerator's probe: run for 1.5 s at every agent start with the qemu driver, it made
// a loaded machine's start slower for everything else (CI's timing tests). So the answer is cached in the data dir,
// keyed by the QEMU binary (path, size, mtime) and the running kernel's release, and
// only a verdict: QEMU still running with a seccomp filter on it (/proc says so), or
// QEMU saying it has no sandbox or the kernel refused the filter. Anything else (a QEMU
// still running without its filter yet, or failing otherwise) is asked again next time.
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { release } from 'node:os'
import { dirname } from 'node:path'
import { writeFileDurable } from '../../durable-file.ts'
import { spawnTied } from './tied-child.ts'

/** QEMU's seccomp filter: no new programs, no privilege changes, no obsolete system calls */
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny'

export interface SandboxProbe { sandbox: boolean, key: string }

/** how long a still running empty machine is looked at for its filter, at most */
const LOOK_FOR_MS = 6000

/**
 * What one probe run says (pure): `filtered` is what /proc said of the QEMU still running
 * (a filter of its own installed, looked for up to LOOK_FOR_MS); `verdict` false when the run says
 * nothing about seccomp: a QEMU slow to fail on a loaded machine, still running but not
 * yet filtered, must not be taken as sandboxed (rv48), nor an unrelated failure as not.
 */
export function sandboxVerdict (r: { filtered: boolean | undefined, stderr: string }): { sandbox: boolean, verdict: boolean } {
  if (r.filtered === true) return { sandbox: true, verdict: true }
  if (r.filtered === false) return { sandbox: false, verdict: false }
  return { sandbox: false, verdict: /seccomp|sandbox/i.test(r.stderr) }
}

/**
 * Whether a process's status shows a seccomp filter of its own (pure): `Seccomp: 2` and
 * more filters than `own` (the agent's, from /proc/self/status): a filter is inherited,
 * and an agent run under one (a container's profile, a unit's SystemCallFilter) would
 * see every child filtered (rv49). Undefined when the status tells nothing.
 */
export function seccompFiltered (status: string, own = ''): boolean | undefined {
  const m = /^Seccomp:\s*(\d+)/m.exec(status)
  if (m == null) return undefined
  const filters = (text: string): number => Number(/^Seccomp_filters:\s*(\d+)/m.exec(text)?.[1] ?? 0)
  return m[1] === '2' && (filters(status) > filters(own) || !/^Seccomp:\s*2/m.test(own))
}

/** how often a running probe's status is looked at, until it shows its filter or LOOK_FOR_MS */
const LOOK_MS = 100

/** runs QEMU under the filter; `filtered` undefined when it ended by itself */
async function runUnderSandbox (qemu: string, lookForMs: number): Promise<{ filtered: boolean | undefined, stderr: string }> {
  let own = ''
  try { own = readFileSync('/proc/self/status', 'utf8') } catch {}
  return await new Promise(resolve => {
    let filtered: boolean | undefined
    let stderr = ''
    // tied to the agent: one killed during the probe leaves no paused QEMU behind (rv49)
    const p = spawnTied(qemu, ['-sandbox', SANDBOX, '-machine', 'none', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-monitor', 'none', '-serial', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] })
    p.stdout.resume()
    p.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
    const until = Date.now() + lookForMs
    // looked at until it shows its filter, not once (rv49: a QEMU slow to start on a loaded machine)
    const look = (): void => {
      if (p.pid == null || p.exitCode != null || p.signalCode != null) return
      let status = ''
      try { status = readFileSync(`/proc/${p.pid}/status`, 'utf8') } catch {}
      const f = seccompFiltered(status, own)
      if (f === true || Date.now() >= until) {
        filtered = f === true
        p.kill('SIGKILL')
        return
      }
      timer = setTimeout(look, LOOK_MS)
    }
    let timer = setTimeout(look, LOOK_MS)
    p.once('error', () => { clearTimeout(timer); resolve({ filtered: undefined, stderr }) })
    p.once('close', () => { clearTimeout(timer); resolve({ filtered, stderr }) })
  })
}

/**
 * Whether QEMU runs under -sandbox here: built with seccomp, and the kernel takes the
 * filter (a parse alone, `-version`, proved neither: rv47). An empty machine, paused, is
 * started: one that runs with a filter of its own has it; one that cannot exits.
 */
export async function probeSandbox (qemu: string, cacheFile: string, lookForMs = LOOK_FOR_MS): Promise<boolean> {
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
  const v = sandboxVerdict(await runUnderSandbox(qemu, lookForMs))
  if (v.verdict) {
    try {
      mkdirSync(dirname(cacheFile), { recursive: true })
      await writeFileDurable(cacheFile, JSON.stringify({ sandbox: v.sandbox, key } satisfies SandboxProbe))
    } catch {}
  }
  return v.sandbox
}
