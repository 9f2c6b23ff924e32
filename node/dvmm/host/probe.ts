// What this node can run, for its advert and `vgrid nodes`: which cgroup hierarchy
// holds VM limits and which accelerator QEMU VMs get, each with the probe's reason.
import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { which } from '../../netns/netns.ts'
import { probeAccel } from './accel.ts'
import { probeCgroups } from './cgroups.ts'
import { runRoot } from '../drivers/common.ts'

export interface HostProbe {
  cgroup: { version: 'v1' | 'v2' | 'none', detail: string }
  qemu: { available: boolean, accel?: 'kvm' | 'tcg', detail: string }
  drivers: Array<'process' | 'qemu'>
  /** why a driver is left out for its run directory (a file in the way: bb41), when one is */
  runDirs?: string
}

/** why the driver's run directory under the data dir cannot be made (null: it is there) */
export function runDirProblem (dataDir: string, driver: string): string | null {
  const dir = join(runRoot(dataDir), driver)
  try { mkdirSync(dir, { recursive: true, mode: 0o700 }); return null } catch (err) {
    return `${dir} cannot be made (${(err as Error).message}): move what is in the way`
  }
}

export async function probeHost (o: { dataDir: string, now: number, qemu?: string, probeKernel?: string }): Promise<HostProbe> {
  const cg = probeCgroups()
  const cgroup = { version: cg.layout?.version ?? 'none' as const, detail: cg.detail }
  const qemuBin = o.qemu ?? which('qemu-system-x86_64')
  let qemu: HostProbe['qemu'] = { available: false, detail: 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)' }
  if (qemuBin !== undefined) {
    let kernel = o.probeKernel
    if (kernel === undefined) {
      try { kernel = join('/boot', readdirSync('/boot').filter(f => f.startsWith('vmlinuz-')).sort().at(-1) ?? 'vmlinuz') } catch { kernel = '/boot/vmlinuz' }
    }
    const a = await probeAccel({ qemu: qemuBin, kernel, cacheFile: join(o.dataDir, 'dvmm', 'qemu-accel.json'), now: o.now })
    qemu = { available: true, accel: a.accel, detail: a.detail }
  }
  const drivers: HostProbe['drivers'] = []
  // a driver whose VMs' records cannot be written fails every start: not offered (bb41:
  // placement kept choosing the node, three crashes a VM)
  const problems: string[] = []
  const runs = (d: 'process' | 'qemu'): boolean => { const p = runDirProblem(o.dataDir, d); if (p != null) problems.push(p); return p == null }
  if (cg.ok && process.getuid?.() === 0 && which('ip') !== undefined && runs('process')) drivers.push('process')
  if (cg.ok && qemu.available && runs('qemu')) drivers.push('qemu')
  return { cgroup, qemu, drivers, ...(problems.length > 0 ? { runDirs: problems.join('; ') } : {}) }
}

/** Every driver a probe can find: a node missing one may gain it (a package installed, cgroups mounted). */
export const ALL_DRIVERS: ReadonlyArray<HostProbe['drivers'][number]> = ['process', 'qemu']

/** What of a probe the advert carries (`vmHost`): a probe that changes none of it needs no new advert (pure). */
export function probeChanged (prev: HostProbe | undefined, next: HostProbe): boolean {
  if (prev === undefined) return true
  const sig = (p: HostProbe): string => JSON.stringify([p.cgroup.version, p.qemu.available, p.qemu.accel ?? null, [...p.drivers].sort()])
  return sig(prev) !== sig(next)
}

/**
 * After a probe (`next` undefined: it failed), whether to report it and when to probe
 * again (pure). Again in `retryMs` while it failed or found a driver missing; once
 * every driver is found, never: nothing short of removing packages changes that, and
 * the drivers keep their own first probe for the agent's life (drivers/host-base.ts),
 * so a later accelerator answer in the advert could contradict the one QEMU VMs get.
 */
export function afterProbe (prev: HostProbe | undefined, next: HostProbe | undefined, retryMs: number): { report: boolean, againInMs?: number } {
  if (next === undefined) return { report: false, againInMs: retryMs }
  const complete = ALL_DRIVERS.every(d => next.drivers.includes(d))
  return { report: probeChanged(prev, next), ...(complete ? {} : { againInMs: retryMs }) }
}
