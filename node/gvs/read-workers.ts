// Large reads of the store (over IN_PLACE_READ: whole objects for repair and scrub)
// with their checksum check, on worker threads, so that reading and checking 4 MiB
// (about 2 ms of CRC-32) does not hold the event loop that serves NBD and the replica
// protocol. The read buffer moves to the worker and back (transferred, not copied),
// so the caller gets an ordinary buffer. Smaller reads stay on the event loop: for
// those the hand-over and the wake-ups of two threads cost more than the work
// (file-io.ts).
//
// The worker reads by file descriptor: the caller holds the object open (and its
// blocks' range) until the promise settles, so the descriptor cannot be closed and
// reused under the read. The worker source is a string (eval), not a file of its own,
// so it works alike from the sources and from the bundled build.
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'

const SOURCE = `
const { parentPort } = require('node:worker_threads')
const { readSync } = require('node:fs')
const { crc32 } = require('node:zlib')
// replies go back as soon as this many bytes are ready, the rest at the batch's end
const REPLY_BYTES = 1024 * 1024
parentPort.on('message', batch => {
  let replies = []
  let moved = []
  let bytes = 0
  for (const [id, fd, position, ab, length, first, blockSize, sums] of batch) {
    const buf = new Uint8Array(ab, 0, length)
    try {
      let done = 0
      while (done < length) {
        const n = readSync(fd, buf, done, length - done, position + done)
        if (n === 0) { buf.fill(0, done); break }
        done += n
      }
      const dv = new DataView(sums.buffer, sums.byteOffset, sums.byteLength)
      const bad = []
      for (let off = 0, b = 0; off < length; off += blockSize, b++) {
        if (crc32(buf.subarray(off, off + blockSize)) !== dv.getUint32(b * 4)) bad.push(first + b)
      }
      replies.push([id, ab, bad])
    } catch (err) {
      replies.push([id, ab, null, { code: err.code, message: err.message }])
    }
    moved.push(ab)
    bytes += length
    if (bytes >= REPLY_BYTES) {
      parentPort.postMessage(replies, moved)
      replies = []
      moved = []
      bytes = 0
    }
  }
  if (replies.length > 0) parentPort.postMessage(replies, moved)
})
`

type Reply = [number, ArrayBuffer, number[] | null, { code?: string, message: string }?]

interface Slot { worker: Worker, inFlight: number, batch: Request[], moved: ArrayBuffer[] }
type Request = [number, number, number, ArrayBuffer, number, number, number, Uint8Array]
interface Pending { slot: Slot, length: number, resolve: (r: CheckedRead) => void, reject: (err: Error) => void }

/** what a checked read gives: the data and the blocks (numbered in the object) that failed */
export interface CheckedRead { data: Uint8Array, bad: number[] }

export class ReadWorkers {
  private readonly size: number
  private readonly slots: Slot[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private flushing = false

  constructor (size = Math.max(2, Math.min(4, availableParallelism()))) {
    this.size = size
  }

  /**
   * Fills `buffer` (its whole ArrayBuffer is handed over: it must be one of its own,
   * not a view into a shared slab; the caller must not touch it until this settles)
   * from `position` of `fd`, zeros past the end of the file, and checks each
   * `blockSize` block against `sums` (big-endian u32s, one per block, the first for
   * block `first`). Resolves with a view of the returned buffer of the same length.
   */
  async read (fd: number, position: number, buffer: Uint8Array, first: number, blockSize: number, sums: Uint8Array): Promise<CheckedRead> {
    const ab = buffer.buffer
    if (!(ab instanceof ArrayBuffer) || buffer.byteOffset !== 0) throw new Error('a worker read needs a buffer at the start of an ArrayBuffer of its own')
    const slot = this.pick()
    const id = this.nextId++
    const done = new Promise<CheckedRead>((resolve, reject) => { this.pending.set(id, { slot, length: buffer.length, resolve, reject }) })
    // an idle worker does not keep the process alive; one with reads in flight does
    if (slot.inFlight++ === 0) slot.worker.ref()
    // the sums are copied (a small slice), the buffer is moved. Reads asked for in one
    // turn of the event loop go as one message (nbdcopy asks for dozens at once): a
    // message and the wake-up of the thread that gets it cost about as much as the CRC
    slot.batch.push([id, fd, position, ab, buffer.length, first, blockSize, sums.slice()])
    slot.moved.push(ab)
    if (!this.flushing) {
      this.flushing = true
      setImmediate(() => { this.flush() })
    }
    return await done
  }

  private flush (): void {
    this.flushing = false
    for (const s of this.slots) {
      if (s.batch.length === 0) continue
      s.worker.postMessage(s.batch, s.moved)
      s.batch = []
      s.moved = []
    }
  }

  /** stops the workers; reads in flight fail */
  async close (): Promise<void> {
    const slots = this.slots.splice(0)
    await Promise.all(slots.map(async s => await s.worker.terminate()))
  }

  private pick (): Slot {
    let best: Slot | undefined
    for (const s of this.slots) if (best == null || s.inFlight < best.inFlight) best = s
    if (best != null && (best.inFlight === 0 || this.slots.length >= this.size)) return best
    return this.spawn()
  }

  private spawn (): Slot {
    const worker = new Worker(SOURCE, { eval: true, name: 'gvs-read' })
    worker.unref()
    const slot: Slot = { worker, inFlight: 0, batch: [], moved: [] }
    this.slots.push(slot)
    worker.on('message', (replies: Reply[]) => { for (const r of replies) this.settle(slot, r) })
    const fail = (err: Error): void => {
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots.splice(i, 1)
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue
        this.pending.delete(id)
        p.reject(err)
      }
    }
    worker.on('error', fail)
    worker.on('exit', code => { fail(new Error(`a read worker exited (${code})`)) })
    return slot
  }

  private settle (slot: Slot, [id, ab, bad, error]: Reply): void {
    const p = this.pending.get(id)
    if (p == null) return
    this.pending.delete(id)
    if (--slot.inFlight === 0) slot.worker.unref()
    if (bad == null) {
      const err = new Error(error?.message ?? 'read failed') as NodeJS.ErrnoException
      if (error?.code != null) err.code = error.code
      p.reject(err)
      return
    }
    p.resolve({ data: new Uint8Array(ab, 0, p.length), bad })
  }
}

/** the workers of this process's object stores, started on first use */
export const readWorkers = new ReadWorkers()
