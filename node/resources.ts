// What this server has for VMs: detected from the host (its memory less what the host
// keeps for itself), overridable with --capacity (tests use it to model servers of
// different sizes).
import { cpus, totalmem, loadavg } from 'node:os'
import { statfs } from 'node:fs/promises'
import type { Resources } from '../protocol/advert.ts'
import type { HealthProblem } from './api/types.ts'

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
  // volume limits are said in PiB: a size may be given in them too
  p: 1024 ** 5, pb: 1024 ** 5, pib: 1024 ** 5
}

/**
 * "512M", "4G", "1.5T", "1P", "1048576" -> bytes (units of 1024; "MB", "MiB", "mb" alike;
 * "Mb", written for megabits, is refused).
 * Throws a message naming the bad value, also for a fraction that is not whole bytes
 * ("1.0000001K" was rounded down to 1K without a word).
 */
export function parseSize (text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = m == null ? undefined : UNITS[(m[2] ?? '').toLowerCase()]
  if (m == null || unit == null) throw new Error(`"${text}" is not a size (use e.g. 512M, 4G, 2T, 1P)`)
  // "32Mb" is written for megabits: refused, not taken as 32 MiB without a word (a tester)
  if (/^[KMGTP]b$/.test(m[2] ?? '')) throw new Error(`"${text}" reads as ${m[2]!.startsWith('K') ? 'kilo' : m[2]!.startsWith('M') ? 'mega' : m[2]!.startsWith('G') ? 'giga' : m[2]!.startsWith('T') ? 'tera' : 'peta'}bits: a size is in bytes (say ${m[1]}${m[2]![0]} or ${m[1]}${m[2]![0]}iB, units of 1024)`)
  const n = Number(m[1]) * unit
  // the bytes it came to, where a unit made them (for a bare number they are the number)
  if (!Number.isInteger(n) && Number.isFinite(n)) throw new Error(`"${text}" is not a whole number of bytes${m[2] !== '' ? ` (${n})` : ''}`)
  return n
}

/**
 * A number of vCPUs as people write it: decimal digits ("1", "0.5", ".5", "2"), with
 * whitespace around taken as sizes take it (" 1"). Number() alone also took 1e9, 0x1
 * and "" (as 0); `vgrid vm create --cpu` refuses those, and so does --capacity.
 * Throws naming the value; `what` says where it came from (e.g. `--cpu`).
 */
export function parseCpu (text: string, what: string): number {
  const t = text.trim()
  // a sign only so that -1 is told it must be above zero, not that it is no number
  const n = /^-?(?:\d+(?:\.\d+)?|\.\d+)$/.test(t) ? Number(t) : NaN
  if (!Number.isFinite(n)) throw new Error(`${what} "${text}" is not a number of vCPUs (e.g. 1, 0.5, 2)`)
  if (!(n > 0)) throw new Error(`${what} "${text}": must be above zero`)
  return n
}

export type CapacityOverride = Partial<Resources>

/** a size of --capacity: past 2^53 bytes no longer exact (bb41: mem=99999999T was advertised as 1.1e20 bytes) */
function capacitySize (key: string, v: string): number {
  const n = parseSize(v)
  if (!Number.isSafeInteger(n)) throw new Error(`--capacity: ${key}=${v} is more than a node can have (at most ${Number.MAX_SAFE_INTEGER} bytes, just under 8P)`)
  return n
}

/** "cpu=4,mem=8G,disk=100G" -> override. */
export function parseCapacity (text: string): CapacityOverride {
  const out: CapacityOverride = {}
  const parts = text.split(',').map(p => p.trim()).filter(p => p !== '')
  // an empty one overrides nothing, as before (refusing it would stop an upgraded agent whose config has one: rv40)
  const seen = new Set<string>()
  for (const part of parts) {
    const [k, v] = part.split('=', 2).map(s => s.trim())
    if (v == null || v === '') throw new Error(`--capacity: "${part}" is not key=value`)
    // cpu=1,cpu=2: the last silently won (bb35)
    const key = k === 'memory' ? 'mem' : k!
    if (seen.has(key)) throw new Error(`--capacity: ${key} is given twice: give each resource once`)
    seen.add(key)
    if (k === 'cpu') {
      out.cpu = parseCpu(v, '--capacity: cpu')
    } else if (k === 'mem' || k === 'memory') {
      out.memoryBytes = capacitySize(key, v)
    } else if (k === 'disk') {
      out.diskBytes = capacitySize(key, v)
    } else {
      throw new Error(`--capacity: unknown resource "${k}" (use cpu, mem, disk)`)
    }
  }
  return out
}

const GiB = 1024 ** 3

/**
 * The memory a server keeps for itself, outside what VMs may reserve, when --capacity
 * gives none: its kernel, page cache, this agent, QEMU's own memory beside each guest's
 * (qemu.ts: up to 160 MiB) and the volume store's (pure). A tenth of it, at least
 * 512 MiB, at most 8 GiB, never over half: VMs given all of RAM, as before, left the
 * host to swap or its OOM killer to pick a guest (Nomad's `reserved`, Kubernetes'
 * system-reserved, say the same; there the operator sets it).
 */
export function hostMemoryReserve (totalBytes: number): number {
  return Math.min(Math.max(Math.round(totalBytes / 10), GiB / 2), 8 * GiB, Math.floor(totalBytes / 2))
}

export async function detectCapacity (dataDir: string, override: CapacityOverride = {}): Promise<Resources> {
  let diskBytes = override.diskBytes
  if (diskBytes == null) {
    const fs = await statfs(dataDir)
    diskBytes = fs.blocks * fs.bsize
  }
  return {
    cpu: override.cpu ?? cpus().length,
    memoryBytes: override.memoryBytes ?? totalmem() - hostMemoryReserve(totalmem()),
    diskBytes
  }
}

export function loadAverage (): [number, number, number] {
  const [a = 0, b = 0, c = 0] = loadavg()
  return [a, b, c]
}

export function subtract (a: Resources, b: Resources): Resources {
  return {
    cpu: Math.max(0, a.cpu - b.cpu),
    memoryBytes: Math.max(0, a.memoryBytes - b.memoryBytes),
    diskBytes: Math.max(0, a.diskBytes - b.diskBytes)
  }
}

/**
 * What a node advertises free (pure): its capacity less what is reserved for its VMs,
 * with the disk also less what its volume store holds there (`stored`: its copies fill
 * the disk given, they are not reserved for any VM) and never more than the room left on
 * the file system (`room`: data written fills it, whatever the capacity says).
 */
export function freeOf (capacity: Resources, reserved: Resources, disk: { stored?: number | null, room?: number | null } = {}): Resources {
  const free = subtract(capacity, reserved)
  if (disk.stored != null) free.diskBytes = Math.max(0, free.diskBytes - disk.stored)
  if (disk.room != null) free.diskBytes = Math.min(free.diskBytes, disk.room)
  return free
}

export const ZERO: Resources = { cpu: 0, memoryBytes: 0, diskBytes: 0 }

const mibText = (b: number): string => `${(b / 1024 / 1024).toFixed(b < 10 * 1024 * 1024 ? 1 : 0)} MiB`

/** below this much free room (or a hundredth of the disk, whichever is less) the data dir's disk counts as full */
export const DATA_DISK_LOW_BYTES = 64 * 1024 * 1024

/**
 * The data dir's disk nearly or wholly full (pure): the cluster document, VM run records
 * and the watchdog's files live there. The volume store's own refusals are `disk-full`
 * (node/gvs/disk-full.ts); this says so even with no volume written.
 */
export function dataDiskProblem (dataDir: string, free: number, total: number): Omit<HealthProblem, 'since'> | null {
  if (total <= 0 || free >= Math.min(DATA_DISK_LOW_BYTES, total / 100)) return null
  return { service: 'agent', cause: 'data-disk-full', message: `the disk of the data dir ${dataDir} has ${mibText(free)} free of ${mibText(total)}: changes to the cluster document fail (503 disk_full) once it has none, VMs are not placed here, and VM records wait until it has room; free some` }
}

/**
 * A disk capacity given (--capacity disk=...) larger than the data dir's whole file
 * system (pure): the volume store places objects by the capacity, so the node is given
 * more than it can hold, and writes to its objects fail once it fills while the rest of
 * the grid has room.
 */
export function diskCapacityProblem (dataDir: string, capacity: number, total: number): Omit<HealthProblem, 'since'> | null {
  if (total <= 0 || capacity <= total) return null
  const say = (b: number): string => b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`
  return { service: 'agent', cause: 'disk-capacity-too-large', message: `this node's disk capacity (${say(capacity)}, --capacity disk) is more than the file system of the data dir ${dataDir} holds (${say(total)}): volumes place objects here by the capacity, and writes to them fail once it fills; give --capacity disk at most ${say(total)}` }
}

/** the data dir's disk, measured at most every `everyMs` (a status request reads the last measure) */
export class DataDisk {
  private last: { free: number, total: number } | null = null
  private at = 0
  private measuring: Promise<void> | null = null
  private since: number | null = null
  private capacitySince: number | null = null
  private readonly dataDir: string
  private readonly everyMs: number
  private readonly capacity: number | null
  /** `capacity`: the disk capacity the node advertises, checked against the file system */
  constructor (dataDir: string, everyMs = 5000, capacity: number | null = null) {
    this.dataDir = dataDir
    this.everyMs = everyMs
    this.capacity = capacity
  }

  /**
   * Why the data dir's disk counts as full now, as of the last measure (null: it has
   * room, or none was made yet): for the advert, so placement keeps VMs off this node
   * (their run records cannot be written). Measures again in the background when stale,
   * calling `onChange` when the answer changes.
   */
  fullWhy (onChange?: () => void): string | null {
    const now = (): string | null => this.last == null || dataDiskProblem(this.dataDir, this.last.free, this.last.total) == null ? null : `${mibText(this.last.free)} free of ${mibText(this.last.total)}`
    const before = now()
    if (this.measuring == null && this.stale()) void this.measure().then(() => { if (now() !== before) onChange?.() })
    return before
  }

  private stale (): boolean { return Date.now() - this.at >= this.everyMs }

  /** the disk measured again when the last measure is stale (one at a time) */
  private async measure (): Promise<void> {
    if (!this.stale()) return
    this.measuring ??= statfs(this.dataDir).then(fs => { this.last = { free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize } }, () => {}).finally(() => { this.at = Date.now(); this.measuring = null })
    await this.measuring
  }

  async problems (): Promise<HealthProblem[]> {
    await this.measure()
    const out: HealthProblem[] = []
    const p = this.last == null ? null : dataDiskProblem(this.dataDir, this.last.free, this.last.total)
    if (p == null) this.since = null
    else out.push({ ...p, since: new Date(this.since ??= Date.now()).toISOString() })
    const c = this.last == null || this.capacity == null ? null : diskCapacityProblem(this.dataDir, this.capacity, this.last.total)
    if (c == null) this.capacitySince = null
    else out.push({ ...c, since: new Date(this.capacitySince ??= Date.now()).toISOString() })
    return out
  }
}
