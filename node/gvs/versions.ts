// Object versions. Every write to an object carries (epoch, seq): the writer's epoch
// (its lease, invariant 3) and a sequence number the writer counts up per object. A
// replica keeps the highest version it has applied, in the object's side file. Copies
// of one object compare by version: the highest is the newest, and a copy with a lower
// version missed writes (its node was down or cut off while they were made) and is
// replaced, never served, before the object takes writes or reads again
// (replicated-volume.ts settle, repair.ts planRepair). Epochs order writers; within
// one epoch the single writer orders its own writes.
export interface Version { readonly epoch: number, readonly seq: number }

/** what an absent object, or one written before versions existed, counts as */
export const NO_VERSION: Version = { epoch: 0, seq: 0 }

/** negative when a is older than b, 0 when equal, positive when newer */
export const compareVersions = (a: Version, b: Version): number => a.epoch !== b.epoch ? a.epoch - b.epoch : a.seq - b.seq

export const newer = (a: Version, b: Version): boolean => compareVersions(a, b) > 0

/** the newest of some versions (NO_VERSION for none) */
export const newest = (vs: Iterable<Version>): Version => {
  let best = NO_VERSION
  for (const v of vs) if (newer(v, best)) best = v
  return best
}

export const formatVersion = (v: Version): string => `${v.epoch}.${v.seq}`

/** bytes of a version in a side file, after the checksums: epoch and seq, u64 big-endian each */
export const VERSION_BYTES = 16

export function encodeVersion (v: Version): Uint8Array {
  const buf = new Uint8Array(VERSION_BYTES)
  const dv = new DataView(buf.buffer)
  dv.setBigUint64(0, BigInt(v.epoch))
  dv.setBigUint64(8, BigInt(v.seq))
  return buf
}

/** a version read from a side file; null when its numbers cannot be one */
export function decodeVersion (buf: Uint8Array): Version | null {
  if (buf.length !== VERSION_BYTES) return null
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const epoch = dv.getBigUint64(0)
  const seq = dv.getBigUint64(8)
  if (epoch > BigInt(Number.MAX_SAFE_INTEGER) || seq > BigInt(Number.MAX_SAFE_INTEGER)) return null
  return { epoch: Number(epoch), seq: Number(seq) }
}

/**
 * what one node said of its copy of one object; `floor`: the writer epoch it refuses
 * writers below (absent: an agent of an earlier release did not say); `digest`: of its
 * block checksums, when asked (absent: not asked, or an earlier release)
 */
export interface CopySeen { node: string, present: boolean, version: Version, floor?: number, digest?: string }

export interface SettlePlan {
  /** the version every holder must have */
  newest: Version
  /** nodes with a sound newest copy, the holders first: where to copy from and read */
  sources: string[]
  /**
   * holders that must get the copy; `replace` ones whatever version they claim;
   * `ifDigest` ones only while their copy is still the one compared (unifyPlan)
   */
  lacking: Array<{ node: string, replace: boolean, ifDigest?: string }>
}

/**
 * Where the newest copy of an object is, and which of its holders lack it. `suspects`
 * are nodes a write of this object failed on: their version may claim writes they
 * missed (a later write landed, an earlier one did not), so they are no source while
 * another is, and they get the newest copy whatever their version says. Nodes that did
 * not answer are left out of `seen`: not lacking, not a source (so the plan does not
 * cover a silent holder, and the writer does not count the object settled while one is:
 * replicated-volume.ts settle).
 */
export function planSettle (holders: readonly string[], seen: readonly CopySeen[], suspects: ReadonlySet<string> = new Set()): SettlePlan {
  const present = seen.filter(s => s.present)
  const sound = present.filter(s => !suspects.has(s.node))
  const trusted = sound.length > 0 ? sound : present
  const top = newest(trusted.map(s => s.version))
  const at = trusted.filter(s => compareVersions(s.version, top) === 0).map(s => s.node)
  const sources = [...holders.filter(h => at.includes(h)), ...at.filter(n => !holders.includes(n))]
  if (sources.length === 0) return { newest: NO_VERSION, sources: [], lacking: [] }
  const answered = new Set(seen.map(s => s.node))
  const lacking = holders.filter(h => answered.has(h) && !sources.includes(h)).map(node => ({ node, replace: suspects.has(node) }))
  return { newest: top, sources, lacking }
}

/** the copy of an object's newest version a device has served reads from: its version and digest */
export interface ServedCopy { version: Version, digest: string }

/**
 * Copies of the newest version that hold different data, made alike (pure). A version
 * is the highest (epoch, seq) a copy applied, and one writer sends writes to different
 * parts of an object at once: one that died with two of them in flight can leave one
 * holder with both and another with only the later one, at the same version (rv34; the
 * earlier write was not acknowledged, which takes every holder). Either copy is a right
 * answer, but reads must not get one or the other by where they go. The copy this
 * device has served reads from stands (`served`, when of this version: the guest has
 * seen it), else the first source's with a digest (holders first, in placement order).
 * Every other copy of that version is no source (those without a digest too: an
 * earlier release's, which cannot be told), and a holder's whose digest differs is
 * replaced, only while it still has that digest. `truth`: the digest that stands
 * (none: no source said one).
 */
export function unifyPlan (holders: readonly string[], plan: SettlePlan, seen: readonly CopySeen[], served?: ServedCopy): { plan: SettlePlan, diverged: string[], truth?: string } {
  const digestOf = new Map(seen.map(s => [s.node, s.digest]))
  const told = plan.sources.filter(n => digestOf.get(n) != null)
  const seenServed = served != null && compareVersions(served.version, plan.newest) === 0 && told.some(n => digestOf.get(n) === served.digest)
  const truth = seenServed ? served.digest : told.length > 0 ? digestOf.get(told[0]!) : undefined
  if (truth == null) return { plan, diverged: [] }
  const diverged = told.filter(n => digestOf.get(n) !== truth)
  if (diverged.length === 0) return { plan, diverged, truth }
  const lacking = [...plan.lacking, ...diverged.filter(n => holders.includes(n)).map(node => ({ node, replace: true, ifDigest: digestOf.get(node)! }))]
  return { plan: { newest: plan.newest, sources: plan.sources.filter(n => digestOf.get(n) === truth), lacking }, diverged, truth }
}
