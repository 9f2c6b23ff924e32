// Where each object of a volume lives: a pure function of the object's key and the
// nodes' capacity weights. The draw is Ceph's straw2 (src/crush/mapper.c,
// bucket_straw2_choose): every node draws ln(u)/weight with u a hash of (object, node)
// in (0, 1], and the largest draw wins. Taking the R largest draws gives R distinct
// nodes (weighted rendezvous hashing). Because a node's draw depends only on the object
// and that node, adding a node moves to it exactly the objects it now wins, and
// removing one moves only the objects it held: no other pair changes.

/**
 * Volumes are cut into objects of this size. 4 MiB, as Sheepdog and Ceph's RBD: large
 * enough that a 1 TiB volume is 262144 objects (placement and repair lists stay small),
 * small enough that a repair copies little more than what changed.
 */
export const OBJECT_SIZE = 4 * 1024 * 1024

export interface PlacementNode {
  readonly id: string
  /** capacity weight, e.g. disk bytes free or total; 0 or less takes nothing */
  readonly weight: number
}

/** the name an object is hashed by: volume id and object index */
export const objectKey = (volume: string, index: number): string => `${volume}/${index}`

/** index of the objects a byte range [offset, offset + length) touches */
export function objectsOf (offset: number, length: number, objectSize = OBJECT_SIZE): { first: number, last: number } {
  if (length <= 0) return { first: 0, last: -1 }
  return { first: Math.floor(offset / objectSize), last: Math.floor((offset + length - 1) / objectSize) }
}

/** 32-bit murmur3 finalizer: spreads every input bit over every output bit */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** FNV-1a over UTF-16 code units, then finalized: a string's 32-bit hash */
export function hashString (s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** 52 bits from two independent 32-bit mixes of (object, node): u in (0, 1] */
function unit (objectHash: number, nodeHash: number): number {
  const a = fmix32((objectHash ^ Math.imul(nodeHash, 0x9e3779b1)) >>> 0)
  const b = fmix32((a ^ nodeHash ^ 0x5bd1e995) >>> 0)
  return ((a * 0x100000) + (b >>> 12) + 1) / 0x10000000000000
}

/** straw2's draw: larger wins; -Infinity for a node that takes nothing */
export function draw (objectHash: number, nodeHash: number, weight: number): number {
  if (!(weight > 0)) return -Infinity
  return Math.log(unit(objectHash, nodeHash)) / weight
}

/** a prepared node set: hashes the node ids once for many lookups */
export class Placement {
  private readonly nodes: ReadonlyArray<{ id: string, hash: number, weight: number }>

  constructor (nodes: readonly PlacementNode[]) {
    const seen = new Set<string>()
    for (const n of nodes) {
      if (seen.has(n.id)) throw new Error(`placement: node "${n.id}" is listed twice`)
      if (!Number.isFinite(n.weight)) throw new Error(`placement: node "${n.id}" has weight ${n.weight}, not a finite number`)
      seen.add(n.id)
    }
    this.nodes = nodes.filter(n => n.weight > 0).map(n => ({ id: n.id, hash: hashString(n.id), weight: n.weight }))
  }

  /** how many distinct nodes can hold replicas */
  get size (): number { return this.nodes.length }

  /**
   * The holders of the object with this key, best first (the first is the primary).
   * At most `replicas` node ids; fewer when fewer nodes have a positive weight.
   */
  holders (key: string, replicas: number): string[] {
    const h = hashString(key)
    const top: Array<{ id: string, d: number }> = []
    for (const n of this.nodes) {
      const d = draw(h, n.hash, n.weight)
      if (top.length < replicas) {
        top.push({ id: n.id, d })
        top.sort((x, y) => y.d - x.d)
      } else if (replicas > 0 && d > (top[replicas - 1]?.d ?? -Infinity)) {
        top[replicas - 1] = { id: n.id, d }
        top.sort((x, y) => y.d - x.d)
      }
    }
    return top.map(t => t.id)
  }
}

/** one-shot form of Placement.holders */
export function place (key: string, nodes: readonly PlacementNode[], replicas: number): string[] {
  return new Placement(nodes).holders(key, replicas)
}
