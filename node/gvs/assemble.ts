// An object damaged on every copy is still whole when each of its blocks is sound on
// some copy: every 4 KiB block has its own checksum, and reads already go to another
// copy for a block that fails its (replicated-volume.ts). Scrub and repair then build a
// sound copy block by block from the copies whose blocks are sound, and rewrite the
// damaged copies with it, instead of leaving the object damaged everywhere.
import type { ReplicaTransport } from './replication.ts'
import { NO_VERSION, compareVersions, formatVersion, newest, type Version } from './versions.ts'

/** one copy of an object, and its damaged blocks (verify's answer) */
export interface CheckedCopy { node: string, bad: readonly number[] }

/** blocks [first, first + count) are read from `node` */
export interface AssemblyRun { node: string, first: number, count: number }

/**
 * Which copy each block is read from, as runs of blocks, or the blocks damaged on every
 * copy (the object cannot be made whole from these). Pure. The copy with the fewest
 * damaged blocks gives every block it has sound (few, long reads); each of its damaged
 * blocks comes from the first other copy where that block is sound.
 */
export function planAssembly (copies: readonly CheckedCopy[], blocks: number): { runs: AssemblyRun[] } | { unreadable: number[] } {
  const bad = copies.map(c => new Set(c.bad))
  const order = copies.map((_, i) => i).sort((a, b) => bad[a]!.size - bad[b]!.size)
  const from: number[] = []
  const unreadable: number[] = []
  for (let b = 0; b < blocks; b++) {
    const i = order.find(i => !bad[i]!.has(b))
    if (i == null) unreadable.push(b)
    else from.push(i)
  }
  if (unreadable.length > 0 || copies.length === 0) return { unreadable }
  const runs: AssemblyRun[] = []
  for (let b = 0; b < blocks; b++) {
    const last = runs.at(-1)
    const node = copies[from[b]!]!.node
    if (last != null && last.node === node) last.count++
    else runs.push({ node, first: b, count: 1 })
  }
  return { runs }
}

export interface Assembled { data: Uint8Array, version: Version }

/**
 * A sound copy of one object built from copies each damaged in some blocks, or why
 * not. Only copies at the newest version among them take part, and each is at that
 * version before and after its blocks are read (a write landing meanwhile would mix two
 * versions: not assembled, the next scrub tries again). Blocks are read with `read`,
 * which checks each block's checksum (a block damaged since verify fails the read).
 */
export async function assembleObject (transport: ReplicaTransport, layer: string, index: number, copies: readonly CheckedCopy[], geometry: { objectSize: number, blockSize: number }, nameOf: (node: string) => string = n => n): Promise<Assembled | { error: string, readable: boolean }> {
  const stat = async (node: string): Promise<Version | null> => {
    const r = (await transport.call(node, { op: 'stat', volume: layer, index, probe: true })).reply
    return r.present === true ? r.version ?? NO_VERSION : null
  }
  try {
    const versions = await Promise.all(copies.map(async c => await stat(c.node)))
    const top = newest(versions.filter(v => v != null))
    const current = copies.filter((_, i) => versions[i] != null && compareVersions(versions[i], top) === 0)
    const plan = planAssembly(current, geometry.objectSize / geometry.blockSize)
    if ('unreadable' in plan) {
      const few = plan.unreadable.slice(0, 8).join(', ') + (plan.unreadable.length > 8 ? ` and ${plan.unreadable.length - 8} more` : '')
      return { error: `block${plan.unreadable.length === 1 ? '' : 's'} ${few} ${plan.unreadable.length === 1 ? 'is' : 'are'} damaged on every copy checked (${current.map(c => nameOf(c.node)).join(', ')})`, readable: false }
    }
    const data = new Uint8Array(geometry.objectSize)
    await Promise.all(plan.runs.map(async r => {
      const got = await transport.call(r.node, { op: 'read', volume: layer, index, offset: r.first * geometry.blockSize, length: r.count * geometry.blockSize })
      if (got.data?.length !== r.count * geometry.blockSize) throw new Error(`${nameOf(r.node)}: short read of blocks ${r.first}-${r.first + r.count - 1}`)
      data.set(got.data, r.first * geometry.blockSize)
    }))
    const used = [...new Set(plan.runs.map(r => r.node))]
    const after = await Promise.all(used.map(async n => await stat(n)))
    const moved = used.filter((_, i) => after[i] == null || compareVersions(after[i], top) !== 0)
    if (moved.length > 0) return { error: `the copy on ${moved.map(nameOf).join(', ')} changed from version ${formatVersion(top)} while its sound blocks were read (a write landed): not assembled`, readable: true }
    return { data, version: top }
  } catch (err) {
    // a block that failed its read may be damaged everywhere by now: not said readable
    return { error: `assembling it from the copies' sound blocks failed: ${(err as Error).message}`, readable: false }
  }
}
