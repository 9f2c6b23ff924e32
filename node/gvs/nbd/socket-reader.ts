// Exact byte counts from a socket, for the NBD session: a header, then a payload that
// may span many of the socket's chunks. Once closed (the session over), what the
// client still sends is dropped, not buffered: a client that keeps its end open and
// writes on must not grow the agent's memory.
import type { Socket } from 'node:net'
import { readBuffers } from '../buffer-pool.ts'

export class Closed extends Error {}

/** reads this long are copied into a pooled buffer when they span the socket's chunks */
const POOLED = 4096

/** reads exact byte counts from a socket */
export class SocketReader {
  private readonly chunks: Buffer[] = []
  private buffered = 0
  private waiter: (() => void) | null = null
  private ended = false
  /** no more reads: incoming data is dropped */
  private closed = false

  constructor (socket: Socket) {
    socket.on('data', (c: Buffer) => {
      if (this.closed) return
      this.chunks.push(c)
      this.buffered += c.length
      this.wake()
    })
    const end = (): void => { this.ended = true; this.wake() }
    socket.on('end', end)
    socket.on('close', end)
    socket.on('error', end)
  }

  /** Drops what is buffered and all that comes later; a read waiting now or later fails with Closed. */
  close (): void {
    this.closed = true
    this.ended = true
    this.chunks.length = 0
    this.buffered = 0
    this.wake()
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = null
    w?.()
  }

  async read (n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.ended) throw new Closed('the client closed the connection')
      await new Promise<void>(resolve => { this.waiter = resolve })
    }
    if (n === 0) return Buffer.alloc(0)
    this.buffered -= n
    const head = this.chunks[0]!
    if (head.length >= n) {
      // the common case: within the first chunk, no copy
      if (head.length === n) this.chunks.shift()
      else this.chunks[0] = head.subarray(n)
      return head.subarray(0, n)
    }
    // join only the chunks this read needs, not all that is buffered behind it (a
    // 28-byte header must not copy the megabytes of writes queued after it)
    // a payload's copy comes from the pool (the session gives it back once written):
    // a fresh buffer's pages cost more to fault in than the copy
    const out = n >= POOLED ? readBuffers.take(n) : Buffer.allocUnsafe(n)
    let got = 0
    while (got < n) {
      const c = this.chunks[0]!
      const take = Math.min(c.length, n - got)
      c.copy(out, got, 0, take)
      got += take
      if (take === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(take)
    }
    return out
  }
}
