// Whether the holders have room to fold a deleted snapshot's layer (layer-reclaim.ts):
// a fold copies each object of the lower layer that the upper one lacks into the upper
// one on every holder, and frees the lower one only once all are copied, so for a while
// each holder keeps both. Folding into a disk without room for that filled it (bb33: a
// node at 11 MiB free, the fold stuck, the node's other volumes' writes failing), so the
// fold waits until every holder can take it and keep a reserve for its clients' writes,
// as Ceph stops backfill into an OSD past its backfillfull ratio. Pure.
import { bytesText } from './cli-format.ts'

/**
 * what a fold leaves free on a holder for its clients' writes: this share of its disk,
 * and at least FOLD_RESERVE_MIN. Small: deleting snapshots is how a nearly full node is
 * given room, and a fold frees more than it copies once done (rv38: 5 % held every fold
 * on a 1 TB disk with 40 GB free for ever)
 */
export const FOLD_RESERVE_SHARE = 0.01
export const FOLD_RESERVE_MIN = 64 * 1024 * 1024

export interface NodeRoom { free: number, capacity: number }

/**
 * Why the fold must wait for room (the first holder short of it), or null. `indexes`:
 * the objects it copies; `room`: a node's free and whole disk as its advert says (null:
 * not known, which does not hold the fold up).
 */
export function foldRoomShort (indexes: Iterable<number>, holdersOf: (index: number) => readonly string[], objectSize: number, room: (node: string) => NodeRoom | null, nameOf: (node: string) => string = n => n): string | null {
  const need = new Map<string, number>()
  for (const i of indexes) for (const h of holdersOf(i)) need.set(h, (need.get(h) ?? 0) + objectSize)
  for (const [node, bytes] of [...need].sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) {
    const r = room(node)
    if (r == null) continue
    const reserve = Math.max(FOLD_RESERVE_MIN, Math.floor(r.capacity * FOLD_RESERVE_SHARE))
    if (r.free - bytes >= reserve) continue
    return `${nameOf(node)} has ${bytesText(r.free)} free, and folding the layer copies up to ${bytesText(bytes)} of its objects there before the layer's own copies go (keeping ${bytesText(reserve)} free for writes): it waits for room there (free some, or add nodes)`
  }
  return null
}
