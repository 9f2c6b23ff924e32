// Both ends of the pipelined replica protocol (frames: replica-frames.ts).
// - PeerChannel, the calling end: one long-lived stream to one peer, opened on first
//   use and again after it closed; many requests in flight on it at once (bounded in
//   count and bytes, so a burst queues here rather than in memory at the peer), each
//   answered by the reply with its id or failed by its own deadline.
// - serveChannel, the answering end: every frame that arrives is run at once (the
//   store orders requests that touch the same blocks) and answered when done.
// Both ends bound what waits in a stream's send queue (yamux queues without limit): a
// peer that does not read gets its stream reset rather than this node's memory.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { GvsError } from './errors.ts'
import { FrameReader, encodeFrame, type Frame } from './replica-frames.ts'
import { readBuffers } from './buffer-pool.ts'
import { MAX_HEADER, decodeReply, decodeRequest, encode, errorReply, replyError, type ReplicaReply, type ReplicaRequest } from './replica-protocol.ts'

/**
 * Frames sent on one stream within one turn of the event loop go down as one send:
 * every send becomes at least one yamux frame, one Noise message (a new cipher
 * context each) and one socket write, which cost more than the bytes of a 4 KiB
 * request. Sixteen requests issued together then cost one of each instead of sixteen.
 */
/** frames batched before a send */
const BATCH_BYTES = 256 * 1024

export class Batcher {
  private readonly stream: Pick<Stream, 'send'>
  private pending: Uint8ArrayList | null = null
  private readonly max: number

  constructor (stream: Pick<Stream, 'send'>, max = BATCH_BYTES) {
    this.stream = stream
    this.max = max
  }

  /** queues a frame; throws (as send does) when the stream can no longer take it */
  send (frame: Uint8ArrayList<ArrayBufferLike>): void {
    if (this.pending == null) {
      this.pending = new Uint8ArrayList()
      setImmediate(() => { this.flush() })
    }
    this.pending.append(frame)
    if (this.pending.byteLength >= this.max) this.flush()
  }

  private flush (): void {
    const p = this.pending
    this.pending = null
    if (p == null || p.byteLength === 0) return
    try { this.stream.send(p) } catch { /* the stream ended: its close fails what waits on it */ }
  }
}

export interface CallResult { reply: ReplicaReply & { ok: true }, data: Uint8Array | null }

interface Pending {
  op: string
  /** the stream it went out on: only that stream's end fails it */
  stream: Stream
  /** what the request sends: if it ends unanswered, the stream may still hold it */
  data?: Uint8Array
  resolve: (r: CallResult) => void
  reject: (e: Error) => void
  timer: ReturnType<typeof setTimeout>
}

export interface ChannelLimits {
  /** requests in flight on one channel */
  maxRequests: number
  /** bytes of data in flight on one channel, both ways (one request may exceed it alone) */
  maxBytes: number
}

export const DEFAULT_LIMITS: ChannelLimits = { maxRequests: 64, maxBytes: 32 * 1024 * 1024 }

/** the longest frame either end takes: one object and a header */
const maxFrame = (objectSize: number): number => objectSize + MAX_HEADER + 64

/**
 * Bytes one stream may hold unsent before it is reset: what a caller keeps in flight
 * (its byte bound) and one request over it, and a batch. More means the peer stopped
 * reading: requests that timed out leave their data queued behind, and a peer can ask
 * for any number of answers it never takes.
 */
export const sendQueueBound = (objectSize: number, maxBytes = DEFAULT_LIMITS.maxBytes): number =>
  maxBytes + 2 * maxFrame(objectSize) + BATCH_BYTES

/** what a request and its answer carry: what it counts against the byte bound */
function weight (req: ReplicaRequest, data: Uint8Array | undefined, objectSize: number): number {
  if (req.op === 'read') return req.length
  if (req.op === 'get' || req.op === 'list') return objectSize
  return data?.length ?? 0
}

/**
 * A request ended without its answer: its data may still sit in the stream's send
 * queue, so a pooled buffer under it must never be reused (buffer-pool.ts).
 */
const unanswered = (data: Uint8Array | undefined): void => { if (data != null) readBuffers.keep(data) }

/** the error of a request whose stream went away: "closed" lets the caller retry once */
const closedError = (peer: string, op: string, why: string): GvsError =>
  new GvsError('unavailable', `replica ${peer} unreachable for ${op}: stream closed (${why})`, { transient: true })

export class PeerChannel {
  private readonly host: Pick<Libp2p, 'dialProtocol'>
  private readonly peer: string
  private readonly protocol: string
  private readonly timeoutMs: number
  private readonly objectSize: number
  private readonly limits: ChannelLimits
  private readonly heard: () => void
  private stream: Stream | null = null
  private out: Batcher | null = null
  private opening: Promise<{ stream: Stream, out: Batcher }> | null = null
  /** ends the dial in flight when the channel closes (a peer found out of reach must not hold requests for the dial's timeout) */
  private dialing: AbortController | null = null
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private inFlight = 0
  private inFlightBytes = 0
  private readonly slotWaiters: Array<() => void> = []

  /** `heard`: called whenever anything arrives from the peer (peer-reach.ts) */
  constructor (host: Pick<Libp2p, 'dialProtocol'>, peer: string, init: { protocol: string, timeoutMs: number, objectSize: number, limits?: ChannelLimits, heard?: () => void }) {
    this.host = host
    this.peer = peer
    this.protocol = init.protocol
    this.timeoutMs = init.timeoutMs
    this.objectSize = init.objectSize
    this.limits = init.limits ?? DEFAULT_LIMITS
    this.heard = init.heard ?? (() => {})
  }

  async request (req: ReplicaRequest, data?: Uint8Array): Promise<CallResult> {
    const w = weight(req, data, this.objectSize)
    while (this.inFlight >= this.limits.maxRequests || (this.inFlight > 0 && this.inFlightBytes + w > this.limits.maxBytes)) {
      await new Promise<void>(resolve => { this.slotWaiters.push(resolve) })
    }
    this.inFlight++
    this.inFlightBytes += w
    try {
      const { stream, out } = await this.open(req.op)
      // refused here rather than sent: a header the peer cannot take would end the
      // stream, and with it every request in flight on it
      const header = encode(req)
      if (header.length > MAX_HEADER) throw new GvsError('invalid', `replica ${req.op} request of ${header.length} header bytes is over the ${MAX_HEADER} a replica takes`)
      return await new Promise<CallResult>((resolve, reject) => {
        const id = this.nextId
        this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1
        const sent = req.op === 'write' || req.op === 'put' ? data : undefined
        const timer = setTimeout(() => {
          this.pending.delete(id)
          unanswered(sent)
          reject(new GvsError('unavailable', `replica ${this.peer} did not answer ${req.op} within ${this.timeoutMs} ms`, { transient: true }))
        }, this.timeoutMs)
        this.pending.set(id, { op: req.op, stream, data: sent, resolve, reject, timer })
        try {
          out.send(encodeFrame(id, header, sent))
        } catch (err) {
          clearTimeout(timer)
          this.pending.delete(id)
          reject(closedError(this.peer, req.op, (err as Error).message))
        }
      })
    } finally {
      this.inFlight--
      this.inFlightBytes -= w
      this.slotWaiters.shift()?.()
    }
  }

  /** ends the channel: requests in flight fail (retryable), the next one reopens */
  close (why: string): void {
    const s = this.stream
    this.stream = null
    this.out = null
    this.dialing?.abort(new Error(why))
    if (s != null) s.abort(new Error(why))
    this.failAll(why)
  }

  /** fails the requests sent on `stream` (all when none is named) */
  private failAll (why: string, stream?: Stream): void {
    for (const [id, p] of this.pending) {
      if (stream != null && p.stream !== stream) continue
      this.pending.delete(id)
      clearTimeout(p.timer)
      unanswered(p.data)
      p.reject(closedError(this.peer, p.op, why))
    }
  }

  private async open (op: string): Promise<{ stream: Stream, out: Batcher }> {
    if (this.stream != null && this.out != null && this.stream.writeStatus === 'writable') return { stream: this.stream, out: this.out }
    this.opening ??= this.dial(op).finally(() => { this.opening = null })
    return await this.opening
  }

  private async dial (op: string): Promise<{ stream: Stream, out: Batcher }> {
    let stream: Stream
    try {
      this.dialing = new AbortController()
      stream = await this.host.dialProtocol(peerIdFromString(this.peer), this.protocol, { signal: AbortSignal.any([this.dialing.signal, AbortSignal.timeout(this.timeoutMs)]) })
    } catch (err) {
      throw new GvsError('unavailable', `replica ${this.peer} unreachable for ${op}: ${(err as Error).message}`, { cause: err, transient: true })
    } finally {
      this.dialing = null
    }
    // a stream used for hours must not be cut for being quiet for a while
    stream.inactivityTimeout = 0
    // a peer that stopped reading: the stream is reset (its 'close' fails what was
    // sent on it, retryably) instead of the data of timed-out requests piling up
    stream.maxWriteBufferLength = sendQueueBound(this.objectSize, this.limits.maxBytes)
    const reader = new FrameReader(maxFrame(this.objectSize), 1 << 20)
    // a stream's end fails only what was sent on it: its `close` can come after a
    // half-close or reset already made the channel open the next stream
    const gone = (why: string): void => {
      if (this.stream === stream) { this.stream = null; this.out = null }
      this.failAll(why, stream)
    }
    stream.addEventListener('message', (e: { data: Uint8Array | Uint8ArrayList }) => {
      this.heard()
      let frames: Frame[]
      try { frames = reader.push(e.data) } catch (err) {
        stream.abort(err as Error)
        gone((err as Error).message)
        return
      }
      for (const f of frames) this.answered(f)
    })
    stream.addEventListener('close', (e: { error?: Error }) => { gone(e.error?.message ?? 'closed by the peer') })
    // the peer is going away (its service stopped): no new requests on this stream
    stream.addEventListener('remoteCloseWrite', () => { gone('closed by the peer') })
    const out = new Batcher(stream)
    this.stream = stream
    this.out = out
    return { stream, out }
  }

  private answered (f: Frame): void {
    const p = this.pending.get(f.id)
    if (p == null) return // its deadline passed: the late answer is dropped
    this.pending.delete(f.id)
    clearTimeout(p.timer)
    let reply: ReplicaReply
    try { reply = decodeReply(f.header) } catch (err) { p.reject(err as Error); return }
    if (!reply.ok) { p.reject(replyError(reply, this.peer)); return }
    p.resolve({ reply, data: f.data })
  }
}

export interface ServeOptions {
  objectSize: number
  /** requests one stream may have running here at once; more ends the stream */
  maxRequests: number
  /** answers one stream may hold unsent; more resets it (default: sendQueueBound) */
  maxQueuedBytes?: number
  run: (req: ReplicaRequest, data: Uint8Array | null) => Promise<CallResult>
  /** a request failed with this error (already answered) */
  failed: (err: GvsError) => void
}

/** answers the requests arriving on one stream until it ends */
export function serveChannel (stream: Stream, opts: ServeOptions): void {
  stream.inactivityTimeout = 0
  // a request ends here once its answer is queued: without a bound on the queue, a
  // peer asking for reads it never takes made this node hold every answer
  stream.maxWriteBufferLength = opts.maxQueuedBytes ?? sendQueueBound(opts.objectSize)
  stream.addEventListener('close', (e: { error?: Error }) => {
    if (e.error?.name === 'StreamBufferError') opts.failed(new GvsError('unavailable', `the peer does not read its answers: stream reset (${e.error.message})`))
  })
  const reader = new FrameReader(maxFrame(opts.objectSize), MAX_HEADER)
  const out = new Batcher(stream)
  let running = 0
  /** what the requests running here carry (weight): a well-behaved caller keeps it under its own byte bound */
  let runningBytes = 0
  const maxRunning = opts.maxQueuedBytes ?? sendQueueBound(opts.objectSize)
  let ending = false
  const closeIfDone = (): void => { if (ending && running === 0) void stream.close().catch(() => {}) }
  const answer = async (f: Frame): Promise<void> => {
    let header: Uint8Array
    let data: Uint8Array | null = null
    let w = 0
    try {
      const req = decodeRequest(f.header)
      const payload = req.op === 'write' || req.op === 'put' ? f.data : null
      w = weight(req, payload ?? undefined, opts.objectSize)
      // answers being made are held in memory as much as queued ones: a peer asking for
      // more at once than any caller keeps in flight has its stream reset
      if (runningBytes > 0 && runningBytes + w > maxRunning) {
        if (payload != null) readBuffers.give(payload)
        stream.abort(new GvsError('invalid', `replica requests of more than ${maxRunning} bytes at once on one stream`))
        opts.failed(new GvsError('unavailable', `the peer asked for more than ${maxRunning} bytes at once: stream reset`))
        return
      }
      runningBytes += w
      try {
        const r = await opts.run(req, payload)
        header = encode(r.reply)
        data = r.data
      } finally {
        runningBytes -= w
        // the store is done with it (written or failed): a pooled copy is free again
        if (payload != null) readBuffers.give(payload)
      }
    } catch (err) {
      if (!(err instanceof GvsError)) { stream.abort(err as Error); return }
      header = encode(errorReply(err))
      opts.failed(err)
    }
    if (stream.writeStatus !== 'writable') return
    let frame: Uint8ArrayList<ArrayBufferLike>
    try { frame = encodeFrame(f.id, header, data) } catch (err) {
      // an answer too large for a frame fails alone, not the stream
      frame = encodeFrame(f.id, encode(errorReply(err)))
      opts.failed(err as GvsError)
    }
    out.send(frame)
  }
  stream.addEventListener('message', (e: { data: Uint8Array | Uint8ArrayList }) => {
    let frames: Frame[]
    try { frames = reader.push(e.data) } catch (err) { stream.abort(err as Error); return }
    for (const f of frames) {
      if (++running > opts.maxRequests) {
        stream.abort(new GvsError('invalid', `more than ${opts.maxRequests} replica requests in flight on one stream`))
        return
      }
      void answer(f).finally(() => { running--; closeIfDone() })
    }
  })
  // the caller closed its side: finish what runs, then close ours
  stream.addEventListener('remoteCloseWrite', () => { ending = true; closeIfDone() })
}
