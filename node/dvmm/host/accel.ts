// Which accelerator QEMU VMs get on this node. Opening /dev/kvm proves little: on a
// machine that is itself a guest (PVM), KVM creates VMs but a stock kernel dies in
// them with "KVM internal error". So the probe boots a real kernel under KVM with a
// timeout and accepts KVM only if the kernel gets as far as looking for its root fs.
// The answer is cached in the data dir, keyed by the QEMU binary and kernel it tried,
// but only a guest's own verdict: /dev/kvm not opening (a module loaded later) or QEMU
// failing to run at all (a package half installed: the binary's mtime, in the key,
// stays when its firmware lands) are checked again on the next probe.
import { constants, mkdirSync, openSync, closeSync, readFileSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { writeFileDurable } from '../../durable-file.ts'
import { spawnTied } from './tied-child.ts'

export interface AccelProbe { accel: 'kvm' | 'tcg', detail: string, key: string, at: number }

/** Did this console output show a kernel that booted through to its root fs search? (pure) */
export function kernelBooted (out: string): boolean {
  return /VFS: Unable to mount root|Kernel panic - not syncing|Run \/init/.test(out)
}

function devKvmOpens (): string | undefined {
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR))
    return undefined
  } catch (err) {
    return `/dev/kvm does not open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
  }
}

/** `verdict`: a guest ran under KVM, so the answer holds for this QEMU and kernel */
async function bootUnderKvm (qemu: string, kernel: string, timeoutMs: number): Promise<{ ok: boolean, detail: string, verdict: boolean }> {
  return await new Promise(resolve => {
    // tied to the agent: one stopped or killed before the timeout must not leave a
    // QEMU spinning on a guest that never boots
    const p = spawnTied(qemu, ['-machine', 'q35,accel=kvm', '-cpu', 'host', '-m', '128', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 root=/dev/vgrid-probe-none', '-serial', 'stdio'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let done = false
    const finish = (ok: boolean, detail: string, verdict = true): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      p.kill('SIGKILL')
      resolve({ ok, detail, verdict })
    }
    const timer = setTimeout(() => {
      const why = /KVM internal error/.test(err + out) ? 'a KVM guest stopped with "KVM internal error"' : 'the kernel did not boot'
      finish(false, `${why} within ${timeoutMs} ms under KVM`)
    }, timeoutMs)
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); if (kernelBooted(out)) finish(true, 'a kernel booted under KVM') })
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); if (/KVM internal error/.test(err)) finish(false, 'a KVM guest stopped with "KVM internal error"') })
    p.on('error', e => finish(false, `cannot run ${qemu}: ${e.message}`, false))
    p.on('exit', code => { if (!kernelBooted(out)) finish(false, `QEMU with KVM exited (${String(code)}): ${err.trim().split('\n').slice(-2).join(' ')}`, false) })
  })
}

/** Probes (or reads the cached answer): KVM only when a kernel really boots under it. */
export async function probeAccel (o: { qemu: string, kernel: string, cacheFile: string, timeoutMs?: number, now: number }): Promise<AccelProbe> {
  let key: string
  try {
    const q = statSync(o.qemu)
    const k = statSync(o.kernel)
    key = `${o.qemu}:${q.mtimeMs}:${o.kernel}:${k.mtimeMs}`
  } catch (err) {
    return { accel: 'tcg', detail: `cannot probe KVM: ${(err as Error).message}`, key: '', at: o.now }
  }
  try {
    const cached = JSON.parse(readFileSync(o.cacheFile, 'utf8')) as AccelProbe
    if (cached.key === key && (cached.accel === 'kvm' || cached.accel === 'tcg')) return cached
  } catch {}
  const no = devKvmOpens()
  const r = no !== undefined ? { ok: false, detail: no, verdict: false } : await bootUnderKvm(o.qemu, o.kernel, o.timeoutMs ?? 15_000)
  const result: AccelProbe = { accel: r.ok ? 'kvm' : 'tcg', detail: r.ok ? r.detail : `TCG: ${r.detail}`, key, at: o.now }
  if (!r.verdict) return result
  try {
    mkdirSync(dirname(o.cacheFile), { recursive: true })
    await writeFileDurable(o.cacheFile, JSON.stringify(result))
  } catch {}
  return result
}
