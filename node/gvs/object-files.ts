// The files of one object, below the store's locks (object-store.ts holds the object
// or its range while these run): reading whole check blocks with their checksums
// checked, writing a range with its checksums, making a new object's files, and
// writing a whole object sparse. Which blocks failed is returned; reporting them is
// the store's.
import { mkdir, open, unlink } from 'node:fs/promises'
import { fromFsError } from './errors.ts'
import { badBlocks, blockSum, emptySums, setSum, zeroBlockSum } from './checksums.ts'
import type { ObjectPaths, OpenObject } from './open-objects.ts'
import { readBuffers } from './buffer-pool.ts'
import { NO_VERSION, encodeVersion } from './versions.ts'
import { IN_PLACE_READ, readFully, readFullySync, writeFully } from './file-io.ts'
import { readWorkers } from './read-workers.ts'

/** an object's geometry: its size, its check block and the checksums' part of its side file */
export interface Geometry { objectSize: number, blockSize: number, sumBytes: number }

/** whole check blocks covering [offset, offset+length): the first one's number and the bytes */
export interface Blocks { first: number, data: Uint8Array }

/** the numbers of the check blocks covering [offset, offset+length) */
function blockRange (blockSize: number, offset: number, length: number): { first: number, last: number } {
  return { first: Math.floor(offset / blockSize), last: Math.floor((offset + Math.max(length, 1) - 1) / blockSize) }
}

/** a reused buffer (buffer-pool.ts) as a plain Uint8Array, as every read of the store returns; not zero-filled: the read fills it */
function takeBuffer (n: number): Uint8Array {
  const taken = readBuffers.take(n)
  return new Uint8Array(taken.buffer, taken.byteOffset, taken.length)
}

/** the whole check blocks covering [offset, offset+length), unchecked */
export async function readBlocks (o: OpenObject, blockSize: number, offset: number, length: number): Promise<Blocks> {
  const { first, last } = blockRange(blockSize, offset, length)
  const data = takeBuffer((last - first + 1) * blockSize)
  try { await readFully(o.data, data, first * blockSize) } catch (err) { throw fromFsError(err, 'reading an object') }
  return { first, data }
}

/**
 * The whole check blocks covering [offset, offset+length), and those of them that
 * fail their checksum: in place up to IN_PLACE_READ (file-io.ts), larger ones (whole
 * objects: repair, scrub) on a worker thread with their checks (read-workers.ts).
 */
export async function readChecked (o: OpenObject, blockSize: number, offset: number, length: number): Promise<Blocks & { bad: number[] }> {
  const { first, last } = blockRange(blockSize, offset, length)
  const n = (last - first + 1) * blockSize
  if (n <= IN_PLACE_READ) {
    const { data } = await readBlocks(o, blockSize, offset, length)
    return { first, data, bad: badBlocks(data, first, o.sumBuf, blockSize) }
  }
  const taken = readBuffers.take(n)
  const ab = taken.buffer
  let r
  try {
    r = await readWorkers.read(o.data.fd, first * blockSize, taken, first, blockSize, o.sumBuf.subarray(first * 4, (last + 1) * 4))
  } catch (err) { throw fromFsError(err, 'reading an object') }
  readBuffers.moved(ab, r.data.buffer)
  return { first, data: r.data, bad: r.bad }
}

/** readChecked's fast path, with no await: [offset, offset+length) itself, and the blocks that failed */
export function readNow (o: OpenObject, blockSize: number, offset: number, length: number): { data: Uint8Array, bad: number[] } {
  const { first, last } = blockRange(blockSize, offset, length)
  const data = takeBuffer((last - first + 1) * blockSize)
  try { readFullySync(o.data.fd, data, first * blockSize) } catch (err) { throw fromFsError(err, 'reading an object') }
  const from = offset - first * blockSize
  return { data: data.subarray(from, from + length), bad: badBlocks(data, first, o.sumBuf, blockSize) }
}

/** a fresh object's side file: every block zero, no version */
export function freshSide (g: Geometry): Uint8Array {
  const side = new Uint8Array(g.sumBytes + encodeVersion(NO_VERSION).length)
  side.set(emptySums(g.objectSize, g.blockSize))
  side.set(encodeVersion(NO_VERSION), g.sumBytes)
  return side
}

/**
 * A new object: its side file first (all blocks zero, no version), then an empty data
 * file. True when it made the volume's directory too (a new name in its parent).
 */
export async function createObject (p: ObjectPaths, g: Geometry): Promise<boolean> {
  try {
    const made = await mkdir(p.dir, { recursive: true })
    const sh = await open(p.sums, 'w')
    try { await writeFully(sh, freshSide(g), 0) } finally { await sh.close() }
    await (await open(p.data, 'w')).close()
    return made != null
  } catch (err) {
    await unlink(p.sums).catch(() => {})
    throw fromFsError(err, `creating ${p.data}`)
  }
}

/**
 * The object becomes `data` (null: zeros), written sparse: the data file is emptied
 * and only runs of blocks that are not zero are written; then the checksums, kept in
 * `o.sumBuf` too. The version is the caller's to set.
 */
export async function writeWhole (o: OpenObject, data: Uint8Array | null, g: Geometry): Promise<void> {
  const bs = g.blockSize
  const sums = emptySums(g.objectSize, bs)
  await o.data.truncate(0)
  if (data != null) {
    let run = -1
    const zero = zeroBlockSum(bs)
    const blocks = g.objectSize / bs
    for (let b = 0; b <= blocks; b++) {
      const block = b < blocks ? data.subarray(b * bs, (b + 1) * bs) : null
      const sum = block == null ? zero : blockSum(block)
      const isZero = block == null || (sum === zero && block.every(x => x === 0))
      if (!isZero) { setSum(sums, b, sum); if (run < 0) run = b; continue }
      if (run >= 0) { await writeFully(o.data, data.subarray(run * bs, b * bs), run * bs); run = -1 }
    }
  }
  o.sumBuf.set(sums)
  await writeFully(o.sums, sums, 0)
}

/**
 * Writes `bytes` at `offset`, with the checksums of the blocks it touches (a block it
 * only partly covers is read and merged first). Returns the blocks that it only partly
 * covers and that fail their checksum, writing nothing then: merging into a damaged
 * block would give it a fresh, valid-looking checksum. On a failed write (a full disk)
 * the side file is made true to what did land, so that only this write fails.
 * `what` names the object in errors.
 */
export async function writeRange (o: OpenObject, blockSize: number, offset: number, bytes: Uint8Array, what: string): Promise<number[]> {
  const bs = blockSize
  const sums = o.sumBuf
  const aligned = offset % bs === 0 && bytes.length % bs === 0
  // a write of whole blocks replaces them: nothing to read, merge or verify first
  const { first, data } = aligned ? { first: offset / bs, data: bytes } : await readBlocks(o, bs, offset, bytes.length)
  const lastBlock = first + data.length / bs - 1
  const edges = [first, lastBlock].filter((b, i, a) => a.indexOf(b) === i &&
    (offset > b * bs || offset + bytes.length < (b + 1) * bs))
  const bad = edges.flatMap(b => badBlocks(data.subarray((b - first) * bs, (b - first + 1) * bs), b, sums, bs))
  if (bad.length > 0) return bad
  if (!aligned) data.set(bytes, offset - first * bs)
  const sumRange = (): Uint8Array => sums.subarray(first * 4, (lastBlock + 1) * 4)
  for (let b = first; b <= lastBlock; b++) setSum(sums, b, blockSum(data.subarray((b - first) * bs, (b - first + 1) * bs)))
  try {
    await writeFully(o.data, data, first * bs)
  } catch (err) {
    const landed = new Uint8Array(data.length)
    await readFully(o.data, landed, first * bs).catch(() => {})
    for (let b = first; b <= lastBlock; b++) setSum(sums, b, blockSum(landed.subarray((b - first) * bs, (b - first + 1) * bs)))
    await writeFully(o.sums, sumRange(), first * 4).catch(() => {})
    throw fromFsError(err, `writing ${what}`)
  }
  await writeFully(o.sums, sumRange(), first * 4).catch(err => { throw fromFsError(err, `writing checksums of ${what}`) })
  return []
}

/**
 * Makes the checksums of blocks that fail theirs true to the data the disk kept, and
 * syncs both files (write-intents.ts: only for objects a power loss may have cut between
 * their data and their checksums). Returns the blocks it made true.
 */
export async function trueToData (o: OpenObject, g: Geometry): Promise<number[]> {
  const data = new Uint8Array(g.objectSize)
  await readFully(o.data, data, 0)
  const fixed = badBlocks(data, 0, o.sumBuf, g.blockSize)
  for (const b of fixed) setSum(o.sumBuf, b, blockSum(data.subarray(b * g.blockSize, (b + 1) * g.blockSize)))
  if (fixed.length > 0) await writeFully(o.sums, o.sumBuf, 0)
  await o.data.sync()
  await o.sums.sync()
  return fixed
}
