// A VM's volumes as its disks: before the VM runs, its holder raises each volume's
// writer epoch in the document (crdt/placement/volume-epoch.ts; a restart under the
// same lease keeps it), fences it on every live node, and opens the disks pinned to it
// (invariant 3 for volumes).
import type { Vm, Writer } from '../../crdt/index.ts'
import { volumeEpoch } from '../../crdt/placement/index.ts'
import { diskOwners, diskTaken, diskTakenWhy } from './disk-owner.ts'

/** tries at fencing a VM's volume before its start fails */
const FENCE_ATTEMPTS = 3

/** what DVMM needs of the volume store for a VM's disks */
export interface VolumeAccess {
  /**
   * the NBD URI this node's agent serves the volume at (pinned to a writer epoch this
   * node fenced, when given), or null when there is no such volume
   */
  uriOf: (volumeId: string, epoch?: number) => string | null
  /** makes `epoch` the volume's writer epoch on every live node (GvsService.fence) */
  fence: (volumeId: string, epoch: number) => Promise<void>
  /** the NBD sessions writing the volume on each live node (GvsService.writersOf): a VM is not started under one */
  writers?: (volumeId: string) => Promise<Array<{ node: string, name?: string, writers: number, vmDisks?: number }>>
  /** the volumes' health (GvsService.health): a VM runs on while its disk is degraded or unavailable, and says so */
  health?: (volumeIds: string[]) => Promise<ReadonlyMap<string, DiskHealth>>
}

/** a volume's health as a VM's disk shows it */
export interface DiskHealth { state: string, reasons: string[] }

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
  return ids.map(v => {
    const uri = store.uriOf(v, epochs.get(v))
    if (uri == null) throw new Error(`volume ${v} does not exist`)
    return { uri }
  })
}
