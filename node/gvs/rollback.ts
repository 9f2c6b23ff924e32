// `vgrid vol rollback VOL@SNAP`: a volume back to one of its snapshots, in place (bb50:
// restoring meant a clone, `vm rm` and `vm create --volume` with the clone). Layers make
// it constant time, as a clone is: the volume's stack becomes a new empty top over the
// snapshot's frozen layers, and its size the snapshot's. What it wrote since is dropped:
// the layers nothing reads any more (the old top, and those of no snapshot left) are
// freed as any unread layer is (layer-reclaim.ts). Every snapshot stays, those taken
// after this one too. Pure; the route does the checks' I/O and the write.
import type { Lease, Snapshot, Volume, Vm } from '../../crdt/index.ts'
import { ConflictError, NotFoundError, ValidationError, quoteGiven } from '../errors.ts'
import { snapshotOf } from '../../crdt/index.ts'
import { checkWriters, layersOf, MAX_LAYERS, nextLayer, referencedLayers, snapshotLayers, snapshotSize, volumeUsers } from './volumes.ts'
import type { NodeWriters } from './say-writers.ts'

/**
 * Refused (409 in-use) while a VM runs from the volume (its guest would find its disk
 * changed under it) or an NBD session writes to it (its writes would land in a layer
 * nothing reads). A stopped VM's disk may go back: it finds the snapshot's data when it
 * starts, as after a restore.
 */
export function checkRollback (v: Volume, vms: Iterable<Vm>, leases: Iterable<Lease> = [], writers: readonly NodeWriters[] = []): void {
  const running = volumeUsers(v, vms, leases).running
  if (running.length > 0) throw new ConflictError(`volume "${v.path}" is in use by VM ${running.map(x => `"${x.name}"`).join(', ')}, whose guest would find its disk changed under it: stop ${running.length === 1 ? 'it' : 'them'} first (vgrid vm stop --wait)`, 'in-use')
  checkWriters(v, writers)
}

export interface RollbackPlan {
  snapshot: Snapshot
  /** the volume's stack from now on, top first: a new empty top over the snapshot's layers */
  layers: string[]
  sizeBytes: number
  /** the layers this volume read that nothing reads afterwards: what it wrote since the snapshot */
  dropped: string[]
}

/** the rollback of `v` to its snapshot `name`, planned on the volume as the write finds it; `others`: every other volume (a clone may read its layers) */
export function planRollback (v: Volume, name: unknown, others: readonly Volume[]): RollbackPlan {
  if (typeof name !== 'string' || name === '') throw new ValidationError('snapshot', 'snapshot must be the name of one of the volume\'s snapshots')
  const snapshot = snapshotOf(v, name)
  if (snapshot == null) {
    const has = Object.keys(v.snapshots).sort()
    throw new NotFoundError(`volume "${v.path}" has no snapshot ${quoteGiven(name, 128)} (${has.length === 0 ? 'it has none' : `it has ${has.join(', ')}`})`)
  }
  const under = snapshotLayers(v, snapshot)
  if (under.length >= MAX_LAYERS) throw new ConflictError(`snapshot ${v.path}@${name} reads through ${under.length} layers: the volume back on it would be over the ${MAX_LAYERS} a volume may have`, 'too-many-layers')
  // numbered past every layer of its line, the old top too: a name once used never comes back (a node may still hold its objects)
  const layers = [nextLayer(v), ...under]
  const after = { ...v, layers }
  const still = referencedLayers([after, ...others.filter(x => x.id !== v.id)])
  return { snapshot, layers, sizeBytes: snapshotSize(v, snapshot), dropped: layersOf(v).filter(l => !still.has(l)) }
}

/** the write's patch of the volume: its stack and size, and no record of damage in a layer it no longer reads (it would show degraded for ever) */
export function rollbackPatch (v: Volume, plan: RollbackPlan): Partial<Volume> {
  const gone = new Set(plan.dropped)
  const unsound = v.unsound == null ? undefined : Object.fromEntries(Object.entries(v.unsound).filter(([k]) => !gone.has(k.slice(0, k.lastIndexOf('/')))))
  return { layers: plan.layers, sizeBytes: plan.sizeBytes, ...(unsound != null && Object.keys(unsound).length !== Object.keys(v.unsound!).length ? { unsound } : {}) }
}
