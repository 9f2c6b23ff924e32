// A VM's volumes as its disks: before the VM runs, its holder raises each volume's
// writer epoch in the document (crdt/placement/volume-epoch.ts; a restart under the
// same lease keeps it), fences it on every live node, and opens the disks pinned to it
// (invariant 3 for volumes). Before that, it waits while a disk has objects no live node
// holds the newest copy of (disksReadable): a guest booted on them gets I/O errors.
import type { Reader, Volume, Vm, Writer } from '../../crdt/index.ts'
import { volumeEpoch } from '../../crdt/placement/index.ts'
import type { MemberTable } from '../../protocol/membership.ts'
import type { Logger } from '../log.ts'
import { activeIntervals } from '../gvs/write-intervals.ts'
import { diskOwners, diskTaken, diskTakenWhy } from './disk-owner.ts'
import { bootsFromVolume } from './boot-fields.ts'

/** tries at fencing a VM's volume before its start fails */
const FENCE_ATTEMPTS = 3
/**
 * how long a start waits for the volume store to say whether its disks can be read (its
 * own bounds: an inventory 3 s, a coordinator's answer 5 s); past it the VM starts, as
 * it did before the check (a volume store that cannot answer must not hold every start)
 */
export const DISK_HEALTH_WAIT_MS = 6000

/** what DVMM needs of the volume store for a VM's disks */
export interface VolumeAccess {
  /**
   * the NBD URI this node's agent serves the volume at (pinned to a writer epoch this
   * node fenced, when given), or null when there is no such volume
   */
  uriOf: (volumeId: string, epoch?: number) => string | null
  /** makes `epoch` the volume's writer epoch on every live node (GvsService.fence) */
  fence: (volumeId: string, epoch: number) => Promise<void>
  /** bytes of a VM's disk through its export pinned at `epoch` here (GvsService.readDisk): a boot volume's first sector */
  readDisk?: (volumeId: string, epoch: number, offset: number, length: number) => Promise<Uint8Array>
  /** the NBD sessions writing the volume on each live node (GvsService.writersOf): a VM is not started under one */
  writers?: (volumeId: string) => Promise<Array<{ node: string, name?: string, writers: number, vmDisks?: number }>>
  /** the volumes' health (GvsService.health): a VM runs on while its disk is degraded or unavailable, and says so; a start waits while objects are unavailable (disksReadable) */
  health?: (volumeIds: string[]) => Promise<ReadonlyMap<string, DiskHealth>>
}

/**
 * a volume's health as a VM's disk shows it (GvsService.health's VolumeHealthView).
 * `unreadable`: the objects no live node holds the newest copy of, where the volume store
 * counts them apart (absent: read from its reasons, unreadableObjects)
 */
export interface DiskHealth { state: string, reasons: string[], unreadable?: number }

/**
 * The reasons of the volume store's health (node/gvs/health.ts volumeHealth) that count
 * objects a read cannot be served: "N objects are unavailable, ..." (every holder of a
 * write interval of theirs is down) and "N objects have no live copy ...". Fewer copies
 * than R, damage a scrub found, a repair's failures are not: the disk reads.
 */
const UNREADABLE_REASONS = [/^(\d+) objects? (?:is|are) unavailable\b/, /^(\d+) objects? ha(?:s|ve) no live copy\b/]

/**
 * How many objects of a disk no live node holds the newest copy of (pure): the volume
 * store's own count where it gives one, else its reasons'. 0: it reads (healthy, or
 * degraded but every object has a live newest copy), or nothing is known.
 */
export function unreadableObjects (h: DiskHealth | undefined): number {
  if (h == null || h.state === 'healthy') return 0
  if (typeof h.unreadable === 'number') return h.unreadable
  let n = 0
  for (const r of h.reasons) {
    for (const re of UNREADABLE_REASONS) {
      const m = re.exec(r)
      if (m != null) { n += Number(m[1]); break }
    }
  }
  return n
}

/**
 * The nodes a volume's writes went to that are not alive (pure): those its write
 * intervals in force place copies on (node/gvs/write-intervals.ts), not given up by a
 * forget. An unavailable object's newest copies are on some of them.
 */
export function downWriters (v: Pick<Volume, 'writeIntervals' | 'writeIntervalsClearedBefore' | 'writeIntervalsRepaired'> | undefined, alive: (node: string) => boolean): string[] {
  const out = new Set<string>()
  for (const s of Object.values(activeIntervals(v))) {
    const lost = new Set(s.lost ?? [])
    for (const n of s.nodes) if (n.weight > 0 && !lost.has(n.id) && !alive(n.id)) out.add(n.id)
  }
  return [...out].sort()
}

/** one disk of a VM as the start's check sees it: its path, its health (undefined: not known) and the names of the nodes its writes went to that are down */
export interface DiskReadability { path: string, health: DiskHealth | undefined, down: readonly string[] }

const names = (xs: readonly string[]): string => xs.length <= 3 ? xs.length === 1 ? xs[0]! : `${xs.slice(0, -1).join(', ')} and ${xs.at(-1)!}` : `${xs.slice(0, 3).join(', ')} and ${xs.length - 3} more`

/**
 * Why a VM may not start yet (pure): one of its disks has objects no live node holds
 * the newest copy of, which a guest would read as I/O errors from its first sector (a
 * tester's failed-over VM booted so, and nothing said to restart it once the node with
 * the copies was back). Null: it starts. A disk with fewer copies than it should have,
 * every object readable, does not hold it back, nor does one whose health is not known.
 */
export function diskWaitReason (disks: readonly DiskReadability[]): string | null {
  const blocked = disks.map(d => ({ ...d, n: unreadableObjects(d.health) })).filter(d => d.n > 0)
  const first = blocked[0]
  if (first == null) return null
  const where = first.down.length > 0 ? `their newest copies are on ${names(first.down)}, down` : 'the nodes their newest copies are on do not answer'
  const more = blocked.length > 1 ? ` (and ${blocked.length - 1} more of its disks)` : ''
  const s = first.n === 1 ? '1 object is' : `${first.n} objects are`
  return `waiting for its disk ${first.path}: ${s} unavailable (${where})${more}; it starts once ${first.n === 1 ? 'it is' : 'they are'} readable again (vgrid node forget of a node gone for good gives its writes up)`
}

/**
 * Why a boot volume whose first 512 bytes are `head` boots nothing (pure): the firmware
 * boots a disk whose first sector ends in a boot signature (an MBR, or GPT's protective
 * one); null when it has one
 */
export function bootVolumeProblem (head: Uint8Array, path: string): string | null {
  if (head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa) return null
  const what = head.every(b => b === 0) ? 'its first sector is all zeros (nothing was written there)' : 'its first sector has no boot signature (neither an MBR nor GPT\'s protective one)'
  return `its boot volume ${path} has nothing to boot: ${what}; stop the VM (vgrid vm stop), write a bootable disk image into the volume (vgrid vol import FILE ${path}) and start it again, or give the VM a kernel to boot`
}

/** a boot volume with nothing to boot (bootVolumeProblem): the start fails at once, not counted as a crash and not tried again */
export class NothingToBoot extends Error {
  override name = 'NothingToBoot'
}

/** a start that waits for its disks to be readable (disksReadable): no crash, tried again */
export class DiskWait extends Error {
  override name = 'DiskWait'
}

export interface DisksReadableComponents {
  state: { read: () => Pick<Reader, 'get'> }
  volumes?: VolumeAccess
  /** who is alive, to name the nodes a disk waits for (absent: none named) */
  membership?: { readonly members: MemberTable }
  log?: Pick<Logger, 'warn'>
}

/**
 * Before a VM with volumes starts: throws DiskWait (with the reason, diskWaitReason)
 * while one of its disks has objects no live node holds the newest copy of, as the
 * volume store's health says. The health is asked for at most `waitMs`; not known by
 * then (or no volume store's health here), the VM starts.
 */
export async function disksReadable (c: DisksReadableComponents, vm: Vm, waitMs = DISK_HEALTH_WAIT_MS): Promise<void> {
  const ids = vm.spec.volumes
  const health = c.volumes?.health
  if (ids.length === 0 || health == null) return
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<null>(resolve => { timer = setTimeout(() => { resolve(null) }, waitMs) })
  let known: ReadonlyMap<string, DiskHealth> | null
  try {
    known = await Promise.race([health(ids), late])
  } catch (err) {
    c.log?.warn('could not learn whether a VM\'s disks can be read: started without', { vm: vm.id, err: (err as Error).message })
    return
  } finally { clearTimeout(timer) }
  if (known == null) {
    c.log?.warn(`the volume store did not say within ${waitMs / 1000} s whether a VM's disks can be read: started without`, { vm: vm.id })
    return
  }
  const r = c.state.read()
  const members = c.membership?.members
  const nameOf = (id: string): string => members?.get(id)?.advert.name ?? r.get('roll', id)?.value.name ?? id
  const alive = (id: string): boolean => members == null || members.get(id)?.state === 'alive'
  const why = diskWaitReason(ids.map(v => {
    const vol = r.get('volumes', v)?.value
    return { path: vol?.path ?? v, health: known.get(v), down: downWriters(vol, alive).map(nameOf) }
  }))
  if (why != null) throw new DiskWait(why)
}

export interface VmDisksComponents {
  peerId: string
  state: { write: <T>(fn: (w: Writer) => T, message?: string) => Promise<T> }
  /** the volume store on this node (absent: it does not run here) */
  volumes?: VolumeAccess
}

/**
 * The VM's volumes as NBD disks served by this node's agent. Before the VM runs,
 * each volume's writer epoch goes past every earlier writer's (its base at least the
 * VM's lease epoch, its slot this node's, kept for a restart under the same lease:
 * crdt/placement/volume-epoch.ts): replicas
 * refuse the writes of a previous holder that still runs, and of a node that claimed
 * the same lease at the same epoch and lost. The disks are opened pinned to it.
 */
export async function attachVolumes (c: VmDisksComponents, vm: Vm, leaseEpoch: number): Promise<Array<{ uri: string }>> {
  const ids = vm.spec.volumes
  if (ids.length === 0) return []
  const store = c.volumes
  if (store == null) throw new Error('the volume store does not run on this node')
  for (const v of ids) if (store.uriOf(v) == null) throw new Error(`volume ${v} does not exist`)
  const epochs = new Map<string, number>()
  const paths = new Map<string, string>()
  await c.state.write(w => {
    // the lease may have gone to another node since the step decided to start
    const lease = w.reader.get('leases', vm.id)?.value
    if (lease?.holder !== c.peerId) throw new Error(`its lease is no longer this node's (${lease == null ? 'no lease' : `${lease.holder}'s, epoch ${lease.epoch}`})`)
    // the last look before it writes: another VM made first has one of its disks (disk-owner.ts)
    const taken = diskTaken(vm, diskOwners(w.reader.list('vms')))
    if (taken != null) throw new Error(diskTakenWhy(taken, v => w.reader.get('volumes', v)?.value.path ?? v))
    for (const v of ids) {
      const cur = w.reader.get('volumes', v)?.value
      if (cur == null) throw new Error(`volume ${v} does not exist`)
      const epoch = volumeEpoch(cur.epoch ?? 1, Math.max(leaseEpoch, lease.epoch), c.peerId)
      epochs.set(v, epoch)
      paths.set(v, cur.path)
      w.update('volumes', v, { epoch })
    }
  }, `dvmm: ${vm.id} takes its volumes`)
  // every live replica learns the new epoch before the VM writes: from then on a
  // previous holder still running is refused on every object, not only on those this
  // VM writes first (a node briefly unreachable gets two more tries)
  for (const [v, epoch] of epochs) {
    for (let attempt = 1; ; attempt++) {
      try {
        await store.fence(v, epoch)
        break
      } catch (err) {
        if (attempt >= FENCE_ATTEMPTS) throw err
        await new Promise(resolve => setTimeout(resolve, 1000))
      }
    }
  }
  // a guest booting from its first volume with nothing to boot there "ran" for ever in
  // the firmware, saying nothing (bb46): its start fails, saying why
  const first = ids[0]!
  if (bootsFromVolume(vm.spec) && store.readDisk != null) {
    const path = paths.get(first) ?? first
    let head: Uint8Array
    try {
      head = await store.readDisk(first, epochs.get(first)!, 0, 512)
    } catch (err) {
      // the volume store's fault, not the VM's (a copy silent for a moment): no crash, looked at again (rv46)
      throw new DiskWait(`waiting for its boot volume ${path}: its first sector could not be read (${(err as Error).message}); it starts once it can be`)
    }
    const problem = bootVolumeProblem(head, path)
    if (problem != null) throw new NothingToBoot(problem)
  }
  return ids.map(v => {
    const uri = store.uriOf(v, epochs.get(v))
    if (uri == null) throw new Error(`volume ${v} does not exist`)
    return { uri }
  })
}
