// Cgroup limits for VMs, on whichever hierarchy this node really has: unified v2 with
// the cpu and memory controllers, or v1 with separate cpu and memory hierarchies. The
// probe reads the mounts and then proves it can make a group under a vgrid-named
// parent; nothing is assumed from the kernel version or the distribution.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { shortHash } from './short-hash.ts'

export const PARENT = 'vgrid'
const PERIOD_US = 100_000

export type CgroupLayout =
  | { version: 'v2', root: string }
  | { version: 'v1', cpu: string, memory: string }

export interface CgroupProbe { ok: boolean, layout?: CgroupLayout, detail: string }

interface Mount { point: string, fstype: string, superOptions: string[] }

/** Parses /proc/self/mountinfo (pure). */
export function parseMountinfo (text: string): Mount[] {
  const out: Mount[] = []
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ')
    if (pre === undefined || post === undefined) continue
    const point = pre.split(' ')[4]
    const [fstype, , sopts] = post.split(' ')
    if (point === undefined || fstype === undefined) continue
    out.push({ point: point.replace(/\\040/g, ' '), fstype, superOptions: (sopts ?? '').split(',') })
  }
  return out
}

/** Picks a layout from the mounts (pure): v2 when its root offers cpu and memory, else v1. */
export function chooseLayout (mounts: Mount[], v2Controllers: (point: string) => string[]): { layout?: CgroupLayout, why: string } {
  const why: string[] = []
  for (const m of mounts.filter(m => m.fstype === 'cgroup2')) {
    const c = v2Controllers(m.point)
    if (c.includes('cpu') && c.includes('memory')) return { layout: { version: 'v2', root: m.point }, why: `cgroup v2 at ${m.point} has cpu and memory` }
    why.push(`cgroup v2 at ${m.point} lacks ${['cpu', 'memory'].filter(x => !c.includes(x)).join(' and ')}`)
  }
  const v1 = mounts.filter(m => m.fstype === 'cgroup')
  const cpu = v1.find(m => m.superOptions.includes('cpu'))
  const memory = v1.find(m => m.superOptions.includes('memory'))
  if (cpu !== undefined && memory !== undefined) {
    return { layout: { version: 'v1', cpu: cpu.point, memory: memory.point }, why: [...why, `cgroup v1 cpu at ${cpu.point}, memory at ${memory.point}`].join('; ') }
  }
  why.push('no cgroup v1 hierarchy with cpu and memory')
  return { why: why.join('; ') }
}

function controllers (point: string): string[] {
  try { return readFileSync(join(point, 'cgroup.controllers'), 'utf8').trim().split(/\s+/) } catch { return [] }
}

/**
 * The real probe: read the mounts, then make a group of this process's own beside the
 * vgrid parent and remove it again (on v2 with cpu and memory delegated to its
 * children, as the parent's must be). The parent itself is made by the first VM's
 * groups and goes with the last: a probe that made and removed it raced other agents'
 * VM starts on the same machine (rv32).
 */
export function probeCgroups (): CgroupProbe {
  let mounts: Mount[]
  try { mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')) } catch (err) {
    return { ok: false, detail: `cannot read /proc/self/mountinfo: ${(err as Error).message}` }
  }
  const { layout, why } = chooseLayout(mounts, controllers)
  if (layout === undefined) return { ok: false, detail: why }
  try {
    if (layout.version === 'v2') {
      // children get cpu and memory only if every ancestor delegates them
      writeFileSync(join(layout.root, 'cgroup.subtree_control'), '+cpu +memory')
      probeGroupDir(join(layout.root, PROBE_GROUP), g => { writeFileSync(join(g, 'cgroup.subtree_control'), '+cpu +memory') })
    } else {
      probeGroupDir(join(layout.cpu, PROBE_GROUP))
      probeGroupDir(join(layout.memory, PROBE_GROUP))
    }
  } catch (err) {
    return { ok: false, detail: `${why}, but making a group failed: ${(err as Error).message}` }
  }
  return { ok: true, layout, detail: why }
}

export interface Limits { cpus: number, memoryBytes: number }

/**
 * The name of a VM's groups: its driver, the data dir's hash (two agents on one machine
 * may run VMs of the same name) and its id. Derived, never only recorded, so that a VM
 * whose run record is damaged is still found and killed by its groups.
 */
export const vmGroupName = (driver: string, dataDir: string, id: string): string => `${driver}-${dataDirScope(dataDir)}-${id}`

/** what machine-wide names of one data dir's VMs carry (groups, interfaces): two agents on one machine may run VMs of the same name */
export const dataDirScope = (dataDir: string): string => shortHash(resolve(dataDir))

/** Where groups of this name may be under these mounts (pure): under every cgroup hierarchy's vgrid parent. */
export function groupCandidates (mounts: Mount[], name: string): string[] {
  return mounts.filter(m => m.fstype === 'cgroup' || m.fstype === 'cgroup2').map(m => join(m.point, PARENT, name))
}

function machineMounts (): Mount[] {
  try { return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')) } catch { return [] }
}

/** The existing groups of this name on this machine, whatever layout made them (the watchdog has no probe). */
export function findGroups (name: string): string[] {
  return [...new Set(groupCandidates(machineMounts(), name))].filter(p => existsSync(p))
}

/**
 * Every existing group of one data dir's VMs (vmGroupName carries its scope), in every
 * hierarchy: also those of VMs that ended with no agent to remove their groups (killed
 * by the watchdog of an agent that never came back), for whoever removes the data dir.
 */
export function groupsOfDataDir (dataDir: string): string[] {
  const scope = `-${dataDirScope(dataDir)}-`
  const out = new Set<string>()
  for (const parent of new Set(groupCandidates(machineMounts(), ''))) {
    let names: string[] = []
    try { names = readdirSync(parent, { withFileTypes: true }).filter(e => e.isDirectory()).map(e => e.name) } catch {}
    for (const n of names) if (n.includes(scope)) out.add(join(parent, n))
  }
  return [...out]
}

/** The group directories of one VM: one for v2, cpu then memory for v1. */
export function groupPaths (layout: CgroupLayout, name: string): string[] {
  return layout.version === 'v2'
    ? [join(layout.root, PARENT, name)]
    : [join(layout.cpu, PARENT, name), join(layout.memory, PARENT, name)]
}

/** Makes a VM's groups with its limits; returns their paths. */
export function createGroups (layout: CgroupLayout, name: string, limits: Limits): string[] {
  const paths = groupPaths(layout, name)
  for (let attempt = 1; ; attempt++) {
    try {
      makeGroups(layout, paths)
      writeLimits(layout, paths, limits)
      return paths
    } catch (err) {
      // another agent on this machine removed the parent (its last VM went) between two
      // steps here (rv32): made again from the start; a group made under a parent that
      // was made again without delegation has no cpu.max (the write fails) and goes first
      const code = (err as NodeJS.ErrnoException).code
      if (attempt >= 3 || (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM')) throw err
      if (layout.version === 'v2') try { rmdirSync(paths[0]!) } catch {}
    }
  }
}

function writeLimits (layout: CgroupLayout, paths: string[], limits: Limits): void {
  const quota = Math.max(1000, Math.round(limits.cpus * PERIOD_US))
  if (layout.version === 'v2') {
    const [g] = paths as [string]
    writeFileSync(join(g, 'cpu.max'), `${quota} ${PERIOD_US}`)
    writeFileSync(join(g, 'memory.max'), String(limits.memoryBytes))
    // guaranteed memory is real memory: no swapping the VM out to stay under the limit
    if (existsSync(join(g, 'memory.swap.max'))) writeFileSync(join(g, 'memory.swap.max'), '0')
  } else {
    const [cpu, mem] = paths as [string, string]
    writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(PERIOD_US))
    writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(quota))
    writeFileSync(join(mem, 'memory.limit_in_bytes'), String(limits.memoryBytes))
    try { writeFileSync(join(mem, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)) } catch {}
  }
}

/**
 * Whether a VM group is a v1 group of the cpu controller alone (not co-mounted with
 * memory): a process of the VM's that must run whatever the VM does (its wrapper, its
 * guard) leaves it for its parent, which has no quota, and stays held by the memory
 * group. The wrappers in host-base.ts make the same test in shell.
 */
export function cpuOnlyGroup (path: string): boolean {
  return existsSync(join(path, 'cpu.cfs_quota_us')) && !existsSync(join(path, 'memory.limit_in_bytes'))
}

/** The cpu quota a group holds, in CPUs (for tests and `inspect`). */
export function readCpuLimit (paths: string[]): number | undefined {
  for (const p of paths) {
    try {
      const [q, per] = readFileSync(join(p, 'cpu.max'), 'utf8').trim().split(' ')
      return q === 'max' ? Infinity : Number(q) / Number(per)
    } catch {}
    try {
      const q = Number(readFileSync(join(p, 'cpu.cfs_quota_us'), 'utf8'))
      const per = Number(readFileSync(join(p, 'cpu.cfs_period_us'), 'utf8'))
      return q < 0 ? Infinity : q / per
    } catch {}
  }
  return undefined
}

/** CPU time the groups' processes used, in microseconds (v2 cpu.stat, v1 cpuacct.usage or /proc). */
export function cpuUsageUs (paths: string[]): number {
  for (const p of paths) {
    try {
      const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(p, 'cpu.stat'), 'utf8'))
      if (m != null) return Number(m[1])
    } catch {}
    try { return Number(readFileSync(join(p, 'cpuacct.usage'), 'utf8')) / 1000 } catch {}
  }
  // v1 with cpuacct in a hierarchy of its own: the live processes' own times
  let ticks = 0
  for (const pid of groupPids(paths)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(f[11]) + Number(f[12]) // utime, stime
    } catch {}
  }
  return ticks * 10_000 // USER_HZ 100
}

/** How many times the kernel OOM-killed a process of these groups. */
export function oomKills (paths: string[]): number {
  for (const p of paths) {
    for (const f of ['memory.events', 'memory.oom_control']) {
      try {
        const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(p, f), 'utf8'))
        if (m != null) return Number(m[1])
      } catch {}
    }
  }
  return 0
}

/** PIDs in these groups. */
export function groupPids (paths: string[]): number[] {
  const pids = new Set<number>()
  for (const p of paths) {
    try {
      for (const s of readFileSync(join(p, 'cgroup.procs'), 'utf8').split('\n')) if (/^\d+$/.test(s)) pids.add(Number(s))
    } catch {}
  }
  return [...pids]
}

/**
 * Lifts the groups' CPU quota: a process killed needs CPU time to exit, and one stuck in
 * its group's out-of-memory kill in a tiny quota (0.01 CPU) never got it, so SIGKILLs
 * took no effect for minutes (bb25). What is killed has no use for a limit.
 */
export function liftCpuQuota (paths: string[]): void {
  for (const p of paths) {
    try { writeFileSync(join(p, 'cpu.max'), 'max') } catch {}
    try { writeFileSync(join(p, 'cpu.cfs_quota_us'), '-1') } catch {}
  }
}

/** SIGKILLs every process in the groups (v2's cgroup.kill where there is one), their CPU quota lifted first. */
export function killGroups (paths: string[]): number {
  liftCpuQuota(paths)
  let n = 0
  for (const p of paths) {
    if (existsSync(join(p, 'cgroup.kill'))) {
      try { writeFileSync(join(p, 'cgroup.kill'), '1'); n++ } catch {}
    }
  }
  for (const pid of groupPids(paths)) {
    try { process.kill(pid, 'SIGKILL'); n++ } catch {}
  }
  return n
}

/** Removes the groups (they must be empty; killed processes leave them within ms). */
export async function removeGroups (paths: string[]): Promise<void> {
  for (const p of paths) {
    for (let i = 0; i < 100; i++) {
      try { rmdirSync(p); break } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT') break
        killGroups([p])
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    }
    // the drivers' parent group goes with its last VM (rmdir refuses while another VM is in it;
    // createGroups makes it again for the next, and on v2 delegates cpu and memory to it again)
    const parent = dirname(p)
    if (basename(parent) === PARENT) await removeParentWhenFree(parent)
  }
}

/** the probe's own group, beside the vgrid parent: one per process, so no other agent's */
export const PROBE_GROUP = `${PARENT}-probe-${process.pid}`

/**
 * Makes a group directory to see that groups can be made here (and runs `check` on it),
 * and removes it again: an agent that runs no VM leaves no group behind (the probe runs
 * at every start and while it fails).
 */
export function probeGroupDir (path: string, check?: (path: string) => void): void {
  mkdirSync(path, { recursive: true })
  try {
    check?.(path)
  } finally {
    try { rmdirSync(path) } catch {}
  }
}

/** The vgrid parent (delegating cpu and memory, on v2) and a VM's groups under it. */
function makeGroups (layout: CgroupLayout, paths: string[]): void {
  if (layout.version === 'v2') {
    // the parent goes with the last VM (removeGroups): made again, it delegates nothing
    // until told, and the VM's group would have no cpu.max or memory.max to write
    mkdirSync(join(layout.root, PARENT), { recursive: true })
    writeFileSync(join(layout.root, PARENT, 'cgroup.subtree_control'), '+cpu +memory')
  }
  // (Node's recursive mkdir makes a parent removed meanwhile again)
  for (const p of paths) mkdirSync(p, { recursive: true })
}

/** parents still held by a process when their last VM went, and how many more looks each gets */
const parentsHeld = new Map<string, number>()
let parentSweep: NodeJS.Timeout | undefined
/** how often, and how many times, a held parent is looked at again */
export const PARENT_SWEEP = { everyMs: 500, times: 120 }

/**
 * Removes a VM parent group once no VM's group is left in it. On cgroup v1 a VM's
 * guard and wrapper sit in the parent's cpu group (host-base.ts) and may leave it a
 * moment after their VM: rmdir then fails with EBUSY. It is tried again for 200 ms,
 * then in the background for up to a minute, so that the last VM's parent does not
 * stay for good. Resolves once the first 200 ms are over.
 */
export async function removeParentWhenFree (parent: string): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const r = removeParent(parent)
    if (r !== 'held') return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  parentsHeld.set(parent, PARENT_SWEEP.times)
  if (parentSweep != null) return
  parentSweep = setInterval(() => {
    for (const [g, left] of parentsHeld) {
      if (removeParent(g) !== 'held' || left <= 1) parentsHeld.delete(g)
      else parentsHeld.set(g, left - 1)
    }
    if (parentsHeld.size === 0) {
      clearInterval(parentSweep)
      parentSweep = undefined
    }
  }, PARENT_SWEEP.everyMs)
  parentSweep.unref()
}

/** 'gone', 'in use' (a VM's group is in it: its own removal takes the parent) or 'held' (only processes are) */
function removeParent (parent: string): 'gone' | 'in use' | 'held' {
  try {
    rmdirSync(parent)
    return 'gone'
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return 'gone'
    let children = true
    try { children = readdirSync(parent, { withFileTypes: true }).some(e => e.isDirectory()) } catch {}
    return code === 'EBUSY' && !children ? 'held' : 'in use'
  }
}
