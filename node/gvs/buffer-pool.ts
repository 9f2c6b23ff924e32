// Read buffers, reused. A fresh buffer for every read costs more than the read: the
// kernel's copy from the page cache then faults in every page of new memory (measured:
// 256 KiB reads of a cached file at 0.8-1.7 GB/s into fresh buffers, 8-10 GB/s into
// reused ones; copying 64 KiB pieces into a fresh 256 KiB buffer 40 times the CPU of
// copying into a reused one). The store takes its read buffers from here, and so do
// the copies that join a payload arriving in pieces (an NBD write, a replica frame);
// the NBD session gives one back once the socket has taken the reply or the write is
// done, the replica protocol once the store has written it. Anything else that ends up holding such a
// buffer (a replica reply, a copy) simply never gives it back and the GC frees it.
// Only buffers this pool made are taken back, whole, and each at most once per take.

const MIN = 4096
const MAX = 4 * 1024 * 1024

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>()
  /** buffers handed out and not yet given back */
  private readonly out = new WeakSet<ArrayBuffer>()
  private readonly maxBytesPerClass: number
  private readonly maxBytes: number
  /** bytes of the free buffers held */
  private held = 0

  /** free buffers held: at most maxBytesPerClass of one size, maxBytes in all (the rest go to the GC) */
  constructor (maxBytesPerClass = 32 * 1024 * 1024, maxBytes = 64 * 1024 * 1024) {
    this.maxBytesPerClass = maxBytesPerClass
    this.maxBytes = maxBytes
  }

  /** the size class of a request: the next power of two, at least 4 KiB */
  static classOf (n: number): number {
    let c = MIN
    while (c < n) c *= 2
    return c
  }

  /** a buffer of exactly n bytes (contents undefined) */
  take (n: number): Buffer {
    if (n > MAX || n <= 0) return Buffer.allocUnsafeSlow(n)
    const c = BufferPool.classOf(n)
    // a new one is not zero-filled (new ArrayBuffer would be): the reader fills it
    let ab = this.free.get(c)?.pop()
    if (ab != null) this.held -= c
    else ab = Buffer.allocUnsafeSlow(c).buffer as ArrayBuffer
    this.out.add(ab)
    return Buffer.from(ab, 0, n)
  }

  /**
   * A buffer of this pool was moved to another thread and back (transferred: the same
   * memory under a new ArrayBuffer): the new one is what will be given back.
   */
  moved (from: ArrayBufferLike, to: ArrayBufferLike): void {
    if (!(from instanceof ArrayBuffer) || !(to instanceof ArrayBuffer) || !this.out.has(from)) return
    this.out.delete(from)
    this.out.add(to)
  }

  /**
   * The buffer under `view` may still be read by something that outlives its user (a
   * send that may still be queued): it is never taken back, whoever gives it later.
   */
  keep (view: Uint8Array): void {
    if (view.buffer instanceof ArrayBuffer) this.out.delete(view.buffer)
  }

  /** gives back the buffer under `view` (any view of it); others are ignored */
  give (view: Uint8Array): void {
    const ab = view.buffer
    if (!(ab instanceof ArrayBuffer) || !this.out.has(ab)) return
    this.out.delete(ab)
    const c = ab.byteLength
    let list = this.free.get(c)
    if (list == null) { list = []; this.free.set(c, list) }
    if ((list.length + 1) * c <= this.maxBytesPerClass && this.held + c <= this.maxBytes) {
      list.push(ab)
      this.held += c
    }
  }
}

/** the pool of this process's object stores and NBD sessions */
export const readBuffers = new BufferPool()
