// What every driver shares: spec validation (pure), the exit classification (pure),
// and the run dir each VM gets under the data dir. The run dir is how a driver, a new
// agent run, and the watchdog find a VM again: vm.json names its pid, the pid's start
// time (so a reused pid is never taken for the VM), its cgroups and its namespace.
import { appendFileSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, existsSync } from 'node:fs'
import { basename, dirname, isAbsolute, join, normalize } from 'node:path'
import { TERMINAL_RE, VM_USER_PATTERN } from '../../../crdt/schema.ts'
import { PARENT as CGROUP_PARENT, findGroups, vmGroupName } from '../host/cgroups.ts'
import { DriverError, type DriverBoot, type DriverName, type DriverVmSpec, type ExitReason, type VmExit, type VmNetwork, type VmState } from './types.ts'
import { escapeControls } from '../control-chars.ts'

const ID = /^[a-z0-9][a-z0-9_.-]{0,62}$/
const USER_RE = new RegExp(VM_USER_PATTERN)

/** Checks a spec's shape and values; `boots` are the boot kinds this driver runs. */
export function validateSpec (raw: unknown, boots: ReadonlyArray<DriverBoot['kind']>): DriverVmSpec {
  const bad = (field: string, why: string): never => { throw new DriverError('bad-spec', `${field}: ${why}`, field) }
  if (raw == null || typeof raw !== 'object') bad('spec', 'must be an object')
  const s = raw as Record<string, unknown>
  if (typeof s.id !== 'string' || !ID.test(s.id)) bad('id', 'must match [a-z0-9][a-z0-9_.-]{0,62}')
  if (typeof s.vcpus !== 'number' || !Number.isFinite(s.vcpus) || s.vcpus <= 0 || s.vcpus > 1024) bad('vcpus', 'must be a number in (0, 1024]')
  if (typeof s.memoryMiB !== 'number' || !Number.isInteger(s.memoryMiB) || s.memoryMiB < 1 || s.memoryMiB > 4 * 1024 * 1024) bad('memoryMiB', 'must be a whole number of MiB, at least 1')
  if (s.network !== undefined && typeof s.network !== 'boolean') bad('network', 'must be true or false')
  if (s.overlay !== undefined) validateOverlay(s.overlay, bad)
  if (s.disks !== undefined) {
    if (!Array.isArray(s.disks) || s.disks.length > 64) bad('disks', 'must be an array of at most 64 {uri}')
    ;(s.disks as unknown[]).forEach((d, i) => {
      const uri = (d as { uri?: unknown } | null)?.uri
      if (typeof uri !== 'string' || !/^nbd(\+unix)?:\/\//.test(uri) || uri.includes('\0') || uri.length > 4096) bad(`disks[${i}].uri`, 'must be an nbd:// or nbd+unix:// URI')
    })
  }
  if (s.incarnation !== undefined && (typeof s.incarnation !== 'string' || s.incarnation.length > 64)) bad('incarnation', 'must be a string of at most 64 characters')
  const b = s.boot as Record<string, unknown> | undefined
  if (b == null || typeof b !== 'object') return bad('boot', 'missing')
  if (!boots.includes(b.kind as DriverBoot['kind'])) bad('boot.kind', `"${String(b.kind)}" is not one this driver runs (${boots.join(', ')})`)
  const str = (v: unknown, field: string, optional = false): void => {
    if (optional && v === undefined) return
    if (typeof v !== 'string' || v === '' || v.includes('\0')) bad(field, 'must be a non-empty string')
  }
  if (b.kind === 'command') {
    if (!Array.isArray(b.command) || b.command.length === 0) bad('boot.command', 'must be a non-empty array of strings')
    // an empty argument is one (printf '%s|%s' '' x); the program must be named
    ;(b.command as unknown[]).forEach((a, i) => { if (i > 0 && a === '') return; str(a, `boot.command[${i}]`) })
    if (b.user !== undefined && (typeof b.user !== 'string' || !USER_RE.test(b.user))) bad('boot.user', 'must be a user name or a numeric uid')
    if (b.env !== undefined) {
      if (b.env == null || typeof b.env !== 'object') bad('boot.env', 'must be an object of strings')
      for (const [k, v] of Object.entries(b.env as object)) if (typeof v !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) bad(`boot.env.${k}`, 'must be NAME: string')
    }
  } else if (b.kind === 'kernel') {
    str(b.kernel, 'boot.kernel')
    str(b.initrd, 'boot.initrd', true)
    if (b.cmdline !== undefined && typeof b.cmdline !== 'string') bad('boot.cmdline', 'must be a string')
  } else if (b.kind === 'disk') {
    str(b.image, 'boot.image')
    if (b.format !== undefined && b.format !== 'raw' && b.format !== 'qcow2') bad('boot.format', 'must be raw or qcow2')
  } else if (b.kind === 'volume') {
    if (!Array.isArray(s.disks) || s.disks.length === 0) bad('boot.kind', 'boots from its first disk, and it has none')
  }
  return raw as DriverVmSpec
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

function validateOverlay (raw: unknown, bad: (field: string, why: string) => never): void {
  if (raw == null || typeof raw !== 'object') bad('overlay', 'must be an object')
  const o = raw as Record<string, unknown>
  if (typeof o.address !== 'string' || !IPV4.test(o.address)) bad('overlay.address', `${JSON.stringify(o.address)} is not an IPv4 address`)
  if (o.names === undefined) return
  if (o.names == null || typeof o.names !== 'object') bad('overlay.names', 'must be an object of name: address')
  for (const [k, v] of Object.entries(o.names as object)) {
    if (!TERMINAL_RE.test(k)) bad(`overlay.names.${k}`, 'is not a terminal name')
    if (typeof v !== 'string' || !IPV4.test(v)) bad(`overlay.names.${k}`, `${JSON.stringify(v)} is not an IPv4 address`)
  }
}

/** A terminal name's environment variable inside a VM: VGRID_TERMINAL_ plus the name in capitals, "-" as "_". */
export function terminalEnv (names: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(names).map(([n, a]) => [`VGRID_TERMINAL_${n.toUpperCase().replace(/-/g, '_')}`, a]))
}

/** /etc/hosts of a VM: localhost, then one line per terminal name. */
export function hostsFile (names: Record<string, string>): string {
  return '127.0.0.1\tlocalhost\n::1\tlocalhost\n' + Object.entries(names).sort(([a], [b]) => a < b ? -1 : 1).map(([n, a]) => `${a}\t${n}\n`).join('')
}

/** Why a VM ended, from what is known when its process is gone (`hostRestarted`: it began in an earlier boot of this machine). */
export function classifyExit (o: { code: number | null, signal: string | null, oomKills: number, stopRequested: boolean, killRequested: boolean, hostRestarted?: boolean, now: number }): VmExit {
  let reason: ExitReason
  if (o.oomKills > 0) reason = 'oom-killed'
  else if (o.killRequested) reason = 'killed'
  else if (o.stopRequested) reason = 'stopped'
  else if (o.code === 0) reason = 'exited'
  // no status written: the wrapper went with the machine, or something killed it
  else if (o.code == null && o.signal == null) reason = o.hostRestarted === true ? 'host-restarted' : 'lost'
  else reason = 'crashed'
  return { code: o.code, signal: o.signal, reason, at: o.now }
}

/** An exit code from a shell wrapper: 128+N means signal N. */
export function decodeShellStatus (status: number): { code: number | null, signal: string | null } {
  if (status > 128 && status < 160) {
    const names: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM' }
    return { code: status, signal: names[status - 128] ?? `SIG${status - 128}` }
  }
  return { code: status, signal: null }
}

// ---- /proc ----------------------------------------------------------------------

let bootTimeMs: number | undefined
const TICKS = 100 // USER_HZ is 100 on every Linux ABI node runs on

/** A process's state letter and start time (clock ticks since boot), or undefined if gone. */
export function procStat (pid: number): { state: string, startTicks: number } | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return undefined
  }
}

/** a /proc/PID/stat line's state and start time (in clock ticks since boot) */
export function parseProcStat (stat: string): { state: string, startTicks: number } {
  // "PID (comm) STATE ...": comm may hold spaces and parentheses, so split at the last ")"
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { state: rest[0] ?? '?', startTicks: Number(rest[19]) }
}

export function ticksToMs (ticks: number): number {
  if (bootTimeMs === undefined) {
    const m = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))
    bootTimeMs = Number(m?.[1] ?? 0) * 1000
  }
  return bootTimeMs + Math.round(ticks * 1000 / TICKS)
}

let bootId: string | undefined

/** This boot of the machine (the kernel's random boot id): a VM record from another boot ran before a restart. */
export function currentBootId (): string | undefined {
  if (bootId === undefined) {
    try { bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() } catch { return undefined }
  }
  return bootId
}

/** Whether `bootId` names an earlier boot of this machine (unknown: no). */
function isOtherBoot (bootId: string): boolean {
  const now = currentBootId()
  return now !== undefined && bootId !== now
}

/** this boot's start, wall ms (/proc/stat btime) */
export function bootTime (): number { return ticksToMs(0) }

/**
 * Whether a run recorded in `rec` began in an earlier boot of this machine. A record
 * without a boot id (its run ended under an agent of an earlier release) counts as one
 * when it began well before this boot did: only to name how it ended, never to decide
 * whether its process runs (a wall clock stepped since could put a live run there).
 */
export function ranBeforeBoot (rec: Pick<VmRecord, 'bootId' | 'startedAt'>): boolean {
  if (rec.bootId !== undefined) return isOtherBoot(rec.bootId)
  return rec.startedAt !== undefined && rec.startedAt < bootTime() - 60_000
}

/**
 * Whether `pid` still is the process that started at `startTicks` (and not a zombie),
 * in the boot `bootId` when given: after a restart of the machine another process may
 * have the same pid and start time (a boot runs the same steps in the same order).
 */
export function sameProcessAlive (pid: number, startTicks: number, bootId?: string): boolean {
  if (bootId !== undefined && isOtherBoot(bootId)) return false
  const s = procStat(pid)
  return s !== undefined && s.startTicks === startTicks && s.state !== 'Z' && s.state !== 'X'
}

// ---- run dirs --------------------------------------------------------------------

/** What a run dir's vm.json holds. */
export interface VmRecord {
  version: 1
  id: string
  driver: DriverName
  spec: DriverVmSpec
  state: VmState
  pid?: number
  pidStartTicks?: number
  startedAt?: number
  /** The machine's boot id when the run began (records of older agents have none). */
  bootId?: string
  /** Cgroup directories holding the VM's processes (one per v1 controller, one for v2). */
  cgroups: string[]
  cgroupVersion?: 'v1' | 'v2'
  network?: VmNetwork & { slot: number }
  /** Set by the node namespace the host ends live in, when not the root one. */
  nodeNetns?: string
  stopRequested?: boolean
  killRequested?: boolean
  /** where this run's output begins in the console log (the earlier run's end comes before it); absent in records of earlier releases */
  consoleStart?: number
  exit?: VmExit
  error?: string
  detail?: Record<string, string>
}

export function runRoot (dataDir: string): string {
  return join(dataDir, 'dvmm', 'run')
}

export class RunDirs {
  readonly root: string
  constructor (dataDir: string, driver: DriverName) {
    this.root = join(runRoot(dataDir), driver)
  }

  dir (id: string): string { return join(this.root, id) }
  console (id: string): string { return join(this.root, id, 'console.log') }

  create (id: string): string {
    const d = this.dir(id)
    mkdirSync(d, { recursive: true, mode: 0o700 })
    return d
  }

  /** Writes vm.json atomically (rename), so a crash never leaves half a record. */
  write (rec: VmRecord): void {
    const f = join(this.dir(rec.id), 'vm.json')
    writeFileSync(f + '.tmp', JSON.stringify(rec, null, 1))
    renameSync(f + '.tmp', f)
  }

  read (id: string, onBad?: (file: string, problem: string) => void): VmRecord | undefined {
    return readRecord(join(this.dir(id), 'vm.json'), onBad)
  }

  ids (): string[] {
    try {
      return readdirSync(this.root).filter(n => ID.test(n) && existsSync(join(this.root, n, 'vm.json')))
    } catch {
      return []
    }
  }

  remove (id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true })
  }
}

const STATES = new Set<string>(['starting', 'running', 'stopping', 'stopped', 'failed'])
const wholeOrAbsent = (v: unknown): boolean => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 0)
const isObject = (v: unknown): v is Record<string, unknown> => v != null && typeof v === 'object' && !Array.isArray(v)

/**
 * What is wrong with a parsed vm.json (null: nothing). Every field a driver or the
 * watchdog acts on is checked: a record damaged on disk must not stop the driver from
 * listing the node's other VMs, nor point a kill at a cgroup that is not a VM's (a
 * group directly under a `vgrid` parent, as createGroups makes them). `kill`: only
 * what a kill reads.
 */
export function recordProblem (r: unknown, only: 'all' | 'kill' = 'all'): string | null {
  if (!isObject(r)) return 'not a JSON object'
  if (r.version !== 1) return `version ${JSON.stringify(r.version)} (this agent reads 1)`
  if (typeof r.id !== 'string') return 'id is not a string'
  // what a kill reads: the process (pid, its start, the boot) and the groups
  for (const k of ['pid', 'pidStartTicks'] as const) if (!wholeOrAbsent(r[k])) return `${k} is not a whole number`
  if (r.pid === 0) return 'pid is 0'
  if (r.bootId !== undefined && typeof r.bootId !== 'string') return 'bootId is not a string'
  if (!Array.isArray(r.cgroups) || !r.cgroups.every(g => typeof g === 'string' && isAbsolute(g) && normalize(g) === g && basename(dirname(g)) === CGROUP_PARENT)) return `cgroups are not a list of vgrid groups (…/${CGROUP_PARENT}/NAME)`
  if (only === 'kill') return null
  if (!ID.test(r.id)) return 'id is not a VM id'
  if (typeof r.driver !== 'string') return 'driver is not a string'
  if (typeof r.state !== 'string' || !STATES.has(r.state)) return `state ${JSON.stringify(r.state)} is not a VM state`
  const spec = r.spec
  if (!isObject(spec) || typeof spec.vcpus !== 'number' || typeof spec.memoryMiB !== 'number' || !isObject(spec.boot)) return 'spec lacks vcpus, memoryMiB or boot'
  if (!wholeOrAbsent(r.startedAt)) return 'startedAt is not a whole number'
  if (r.network !== undefined && (!isObject(r.network) || !Number.isSafeInteger(r.network.slot) || typeof r.network.hostIf !== 'string')) return 'network lacks its slot or interface'
  if (r.nodeNetns !== undefined && typeof r.nodeNetns !== 'string') return 'nodeNetns is not a string'
  return null
}

/**
 * Reads a vm.json; a damaged one is skipped (undefined), never a crash. `onBad` hears
 * why, with the file (a record that cannot be read is a VM the node no longer manages).
 */
export function readRecord (file: string, onBad?: (file: string, problem: string) => void, only: 'all' | 'kill' = 'all'): VmRecord | undefined {
  let r: unknown
  try {
    r = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onBad?.(file, err instanceof SyntaxError ? `not JSON (${err.message})` : (err as Error).message)
    return undefined
  }
  const problem = recordProblem(r, only)
  if (problem != null) {
    onBad?.(file, problem)
    return undefined
  }
  return r as VmRecord
}

/** what a kill of a VM reads (`damaged`: its record could not be read; its groups were found by name) */
export interface KillRecord { dir: string, rec: Pick<VmRecord, 'id' | 'pid' | 'pidStartTicks' | 'bootId' | 'cgroups'> & { driver: string, network?: unknown, nodeNetns?: unknown }, damaged?: true }

/**
 * Every VM record of every driver under a data dir (the watchdog's view): checked only
 * for what a kill reads (pid, its start, boot id, cgroups), so that a record damaged
 * elsewhere still has its VM killed. A run dir whose record is damaged or gone in
 * those fields too gives its VM's groups, found by their derived name (`damaged`).
 */
export function allRecords (dataDir: string): KillRecord[] {
  const out: KillRecord[] = []
  const root = runRoot(dataDir)
  let drivers: string[] = []
  try { drivers = readdirSync(root) } catch {}
  for (const d of drivers) {
    let ids: string[] = []
    try { ids = readdirSync(join(root, d)) } catch {}
    for (const id of ids) {
      const rec = readRecord(join(root, d, id, 'vm.json'), undefined, 'kill')
      if (rec !== undefined) { out.push({ dir: join(root, d, id), rec }); continue }
      const cgroups = ID.test(id) ? findGroups(vmGroupName(d, dataDir, id)) : []
      if (cgroups.length > 0) out.push({ dir: join(root, d, id), rec: { id, driver: d, cgroups }, damaged: true })
    }
  }
  return out
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** a VM disk's export names (NAME~EPOCH~KEY: gvs/export-names.ts) in a text, their keys left out */
export function redactExportKeys (text: string): string {
  return text.replace(/(~\d{1,16})~[0-9A-Za-z]{8,128}/g, '$1~(key)')
}

/**
 * Why a start failed whose VM ended before it was up: its exit status and the tail of
 * its console, or with `console` (the VM's id), where to read it: the reason is read by
 * every local user, the console by root and the vgrid group only (bb48: a command's
 * secrets in its output). A tail said has its control characters shown escaped (a
 * guest's escape sequences and newlines reached the operator's terminal).
 */
export function endedAtOnce (status: string, consoleTail: string, console?: string): string {
  if (consoleTail.trim() === '') return `it ended at once with status ${status} (its console is empty)`
  if (console != null) return `it ended at once with status ${status} (what it printed: vgrid vm console ${console})`
  // QEMU quotes a disk's options when it fails to open one, a VM disk's export key among
  // them: never in a reason others read (rv36)
  return `it ended at once with status ${status}: ${escapeControls(redactExportKeys(consoleTail.trim()))}`
}

/**
 * The last `bytes` of a file, '' if there is none. Read from its end only: a console log
 * of a VM that has run for weeks can be gigabytes, and reading it whole (on the agent's
 * event loop) held the loop for seconds, long enough for the watchdog to fence the node.
 */
export function tailFile (file: string, bytes: number, from = 0): string {
  return tailBytes(file, bytes, from).tail.toString('utf8')
}

/**
 * The last `bytes` of a file past `from` as they are, whether the file holds more before
 * them, and the offset the tail ends at (the file's size as read)
 */
export function tailBytes (file: string, bytes: number, from = 0): { tail: Buffer, cut: boolean, end: number } {
  let fd: number
  try { fd = openSync(file, 'r') } catch { return { tail: Buffer.alloc(0), cut: false, end: 0 } }
  try {
    const size = fstatSync(fd).size
    const want = Math.max(0, Math.min(bytes, size - from))
    const buf = Buffer.alloc(want)
    let got = 0
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, size - want + got)
      if (n === 0) break
      got += n
    }
    return { tail: buf.subarray(0, got), cut: size - from > want, end: size - want + got }
  } catch {
    return { tail: Buffer.alloc(0), cut: false, end: 0 }
  } finally {
    closeSync(fd)
  }
}

/** how much of the run before's console a new run's log starts with */
export const EARLIER_CONSOLE_BYTES = 64 * 1024

/**
 * What a new run's console log starts with: the end of the run before's console, as its
 * bytes were (`cut`: the log held more before them, so they start at a line), then a
 * line saying how that run ended and that a new one starts. Empty when the run before
 * said nothing, or was of another VM of the name (`incarnation`: one removed and made
 * again must not show the old one's output). Pure.
 */
export function earlierConsole (before: { tail: Buffer, cut: boolean }, old: Pick<VmRecord, 'state' | 'exit' | 'error'> & { spec: Pick<DriverVmSpec, 'incarnation'> }, spec: Pick<DriverVmSpec, 'incarnation'>, now: number): Buffer {
  if (old.spec.incarnation !== spec.incarnation) return Buffer.alloc(0)
  const nl = before.cut ? before.tail.indexOf(0x0a) : -1
  const kept = before.cut ? (nl < 0 ? Buffer.alloc(0) : before.tail.subarray(nl + 1)) : before.tail
  if (kept.length === 0) return Buffer.alloc(0)
  const e = old.exit
  const how = e == null ? old.state : e.signal != null ? `${e.reason}, signal ${e.signal}` : e.code != null ? `${e.reason}, status ${e.code}` : e.reason
  const line = `${kept[kept.length - 1] === 0x0a ? '' : '\n'}[vgrid: the run before ended (${how}${old.error != null && e == null ? `: ${escapeControls(old.error.slice(0, 200))}` : ''}); a new run starts at ${new Date(now).toISOString()}]\n`
  return Buffer.concat([kept, Buffer.from(line)])
}

/** a VM's console log past this is cut back to its last CONSOLE_KEEP_BYTES */
export const CONSOLE_MAX_BYTES = 16 * 1024 * 1024
export const CONSOLE_KEEP_BYTES = 1024 * 1024

/**
 * Keeps a console log from filling the disk (it holds the volume store's objects and the
 * document too): past `max` bytes, the file is cut back to its last `keep` bytes, after a
 * line saying how much went. In place (copy and truncate), as the VM's process or QEMU
 * keeps appending through its own descriptor (O_APPEND: its next write lands at the new
 * end); what it writes between the last read and the truncate is lost. The bytes dropped, or 0.
 */
export function trimConsole (file: string, max = CONSOLE_MAX_BYTES, keep = CONSOLE_KEEP_BYTES): number {
  let size: number
  try { size = statSync(file).size } catch { return 0 }
  if (size <= max) return 0
  const first = tailBytes(file, keep)
  let tail = first.tail
  let end = first.end
  // what the VM appended while the tail was read goes with it: only what lands between
  // the last look and the truncate is lost (a CI run under load lost a VM's last line,
  // written while the tail of a busy log was read)
  for (let i = 0; i < 16; i++) {
    const more = tailBytes(file, Number.MAX_SAFE_INTEGER, end)
    if (more.end <= end) break
    tail = Buffer.concat([tail, more.tail])
    end = more.end
  }
  truncateSync(file, 0)
  const dropped = end - tail.length
  appendFileSync(file, Buffer.concat([Buffer.from(`[vgrid: ${dropped} earlier bytes of this console were dropped, the log is kept under ${max} bytes]\n`), tail]))
  return dropped
}
