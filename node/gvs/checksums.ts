// Per-block checksums of an object: CRC-32 (zlib's, native in Node) over each 4 KiB
// block, stored as big-endian u32s in a side file beside the data (4 KiB for a 4 MiB
// object). 4 KiB is a guest's page and filesystem block: an aligned 4 KiB read or
// write touches exactly one block, with no read-merge-write (64 KiB blocks measured
// 40 % fewer random IOPS). A block that was never written reads as zeros and carries
// the checksum of a zero block.
import { crc32 } from 'node:zlib'

export const CHECK_BLOCK = 4 * 1024

const zeroSums = new Map<number, number>()
/** the CRC-32 of an all-zero block of this size */
export function zeroBlockSum (blockSize = CHECK_BLOCK): number {
  let s = zeroSums.get(blockSize)
  if (s == null) {
    s = crc32(new Uint8Array(blockSize))
    zeroSums.set(blockSize, s)
  }
  return s
}

export const blockSum = (block: Uint8Array): number => crc32(block)

/** a fresh side file: every block reads as zeros */
export function emptySums (objectSize: number, blockSize = CHECK_BLOCK): Uint8Array {
  const n = Math.ceil(objectSize / blockSize)
  const buf = new Uint8Array(n * 4)
  const dv = new DataView(buf.buffer)
  const z = zeroBlockSum(blockSize)
  for (let i = 0; i < n; i++) dv.setUint32(i * 4, z)
  return buf
}

export const getSum = (sums: Uint8Array, block: number): number =>
  new DataView(sums.buffer, sums.byteOffset, sums.byteLength).getUint32(block * 4)

export function setSum (sums: Uint8Array, block: number, sum: number): void {
  new DataView(sums.buffer, sums.byteOffset, sums.byteLength).setUint32(block * 4, sum)
}

/**
 * The blocks in `data` (which starts at block `first`) whose checksum differs from
 * the stored one: an empty list when all are sound.
 */
export function badBlocks (data: Uint8Array, first: number, sums: Uint8Array, blockSize = CHECK_BLOCK): number[] {
  const bad: number[] = []
  // one view of the sums for the whole range, not one per block: a 256 KiB read checks 64
  const dv = new DataView(sums.buffer, sums.byteOffset, sums.byteLength)
  for (let off = 0, b = first; off < data.length; off += blockSize, b++) {
    if (crc32(data.subarray(off, off + blockSize)) !== dv.getUint32(b * 4)) bad.push(b)
  }
  return bad
}
