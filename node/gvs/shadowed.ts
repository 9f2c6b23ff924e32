// Whether an object of a layer is still read by a volume. A layer under a volume's top
// (a snapshot's, or one a deleted snapshot left until it is folded away) is read only
// through the stacks that hold it, and only where no layer above it in that stack has
// the object: the first write to an object copies it up into the top, and from then on
// the volume reads it there. A copy damaged on every holder that nothing reads any more
// keeps no volume degraded (a tester rewrote a snapshot's damaged object through the
// volume, deleted the snapshot, and the volume stayed degraded for good). Judged per
// volume, as the record is: a clone that still reads the object carries its own
// record (planClone copies them), so a volume whose stacks all have the object above
// is not held degraded by another's reads (a tester: a volume whose own import covered
// the object stayed degraded for good, as a clone of an older snapshot read it).
import type { Volume } from '../../crdt/index.ts'
import type { ReplicaTransport } from './replication.ts'
import { objectKey } from './placement.ts'
import { layersOf, placementKeyOf, snapshotLayers } from './volumes.ts'

/**
 * The layers above `layer` in each stack of `v` that reads through it (its top's, its
 * snapshots'), top first. An empty list inside: read directly.
 */
export function stacksAbove (v: Volume, layer: string): string[][] {
  const stacks = [layersOf(v), ...Object.values(v.snapshots).map(s => snapshotLayers(v, s))]
  return stacks.filter(st => st.includes(layer)).map(st => st.slice(0, st.indexOf(layer)))
}

/**
 * Whether `v` no longer reads object `index` of `layer`: every stack of `v` through it
 * has the object in a layer above (asked of the object's holders). Unsure (a holder
 * does not answer): read.
 */
export async function shadowed (c: { transport: ReplicaTransport, holders: (key: string, r: number) => string[] }, v: Volume, layer: string, index: number): Promise<boolean> {
  const above = stacksAbove(v, layer)
  for (const st of above) {
    if (st.length === 0) return false
    const holders = c.holders(objectKey(placementKeyOf(v), index), v.replicas)
    let present = false
    for (const h of holders) {
      try {
        const { reply } = await c.transport.call(h, { op: 'stat', volume: st[0]!, index, under: st.slice(1) })
        if (reply.present === true) { present = true; break }
      } catch {}
    }
    if (!present) return false
  }
  return true
}
