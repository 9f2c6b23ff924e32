// One NBD client connection: the fixed newstyle handshake (options until GO or
// EXPORT_NAME, at most MAX_OPTIONS of them, within a deadline), then the transmission
// phase. Requests are read in order and served concurrently; each reply is written
// whole when its request completes, which NBD allows. A request counts as in flight
// until its reply has left for the kernel (the write's callback), not until it was
// handed to socket.write: at most `maxInFlight` requests and about `maxInFlightBytes`
// of their data at once, the socket not read meanwhile, so a client that sends fast or
// never reads its replies cannot make the agent queue unbounded memory.
import type { Socket } from 'node:net'
import { writeZerosAsData, type BlockDevice } from '../block-device.ts'
import type { Logger } from '../../log.ts'
import { GvsError } from '../errors.ts'
import { exportLabel } from '../export-names.ts'
import { readBuffers } from '../buffer-pool.ts'
import { Closed, SocketReader } from './socket-reader.ts'
import type { InFlightBudget } from './budget.ts'
import {
  CMD, CMD_FLAG, ERRNO, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, IHAVEOPT, INFO, MAX_PAYLOAD, OPT, REP,
  errnoOf, infoBlockSize, infoExport, infoString, optionReply, parseInfoRequest, parseRequest, serverEntry, serverGreeting, simpleReply, transmissionFlags
} from './protocol.ts'

export interface NbdExports {
  /** the device behind an export name ('' is the default export), or undefined */
  get: (name: string) => BlockDevice | undefined
  list: () => string[]
  /** the session that used `dev` ended: its writes are over */
  release?: (dev: BlockDevice) => void
  /** a request failed with an I/O error or a full disk (the node's health shows it) */
  failed?: (name: string, request: string, message: string) => void
  /** a request to an export succeeded (its failures of that kind are over) */
  succeeded?: (name: string, request: string) => void
}

const CMD_NAMES: Record<number, string> = Object.fromEntries(Object.entries(CMD).map(([k, v]) => [v, k.toLowerCase().replace('_', '-')]))

/** option data longer than this ends the session: no option we know needs more */
const MAX_OPTION = 64 * 1024
/** options in one handshake: a client listing and asking about every export needs a few per export */
export const MAX_OPTIONS = 1024
/** a handshake not done by then ends the session: an idle connection must not hold one forever */
export const HANDSHAKE_TIMEOUT_MS = 30_000
/** option replies the client has not read yet: the next option is read only below this */
const MAX_UNREAD_OPTION_REPLIES = 256 * 1024

/** a session over (DISC, an error) whose client does not take its last replies or close is cut off after this */
const LINGER_MS = 10_000
/** a session that holds bytes others wait for, with no reply leaving and nothing arriving for this long, is cut off */
export const STALL_MS = 30_000
/** a session's failures alike within this long after one logged are counted, and said in one line */
const FAIL_LOG_MS = 10_000

export interface SessionInit {
  /** the bytes in flight over all sessions of the server */
  budget?: InFlightBudget
  maxInFlight?: number
  /** bytes of requests (a read's length, a write's payload) in flight, until their replies left; one request may exceed it alone */
  maxInFlightBytes?: number
  handshakeTimeoutMs?: number
  /** a session holding bytes others wait for, with no progress for this long, is cut off (default STALL_MS) */
  stallMs?: number
}

/** requests served, by kind: what tests and metrics read */
export interface NbdStats { read: number, write: number, fua: number, flush: number, trim: number, zero: number, errors: number }
export const emptyStats = (): NbdStats => ({ read: 0, write: 0, fua: 0, flush: 0, trim: 0, zero: 0, errors: 0 })

export class NbdSession {
  private readonly socket: Socket
  private readonly reader: SocketReader
  private readonly exports: NbdExports
  private readonly log: Logger
  private readonly maxInFlight: number
  private readonly maxInFlightBytes: number
  private readonly handshakeTimeoutMs: number
  private readonly stats: NbdStats
  private readonly budget: InFlightBudget | undefined
  private readonly stallMs: number
  /** the socket closed: nobody takes replies any more, so nothing more is served */
  private gone = false
  private readonly closed: Promise<void>
  /** when a reply of this session last left or its client last sent something (watchStall) */
  private progressAt = Date.now()
  /**
   * the last failure logged (by request kind and errno: a message names its object, rv35),
   * and how many failed alike since, with the last one's message (said once a while, not
   * once a request: bb30 read 65 lines for one copy)
   */
  private lastFail: { kind: string, at: number, repeats: number, last: string } | null = null
  private noZeroes = false
  private corked = false
  private corkedBytes = 0
  private uncorkQueued = false
  /** requests being served or whose replies are still queued in this process; the reader waits while there are maxInFlight */
  private active = 0
  /** their bytes: the reader waits while they reach maxInFlightBytes */
  private activeBytes = 0
  /** wakes the reader when a request ends (at the limit) or the last one ends (at the end) */
  private wake: (() => void) | null = null
  /** the export name once in transmission */
  exportName: string | null = null

  constructor (components: { log: Logger, exports: NbdExports, stats?: NbdStats }, socket: Socket, init: SessionInit = {}) {
    this.socket = socket
    this.stats = components.stats ?? emptyStats()
    this.reader = new SocketReader(socket)
    socket.on('data', () => { this.progressAt = Date.now() })
    this.exports = components.exports
    this.log = components.log
    this.maxInFlight = init.maxInFlight ?? 64
    this.maxInFlightBytes = init.maxInFlightBytes ?? 2 * MAX_PAYLOAD
    this.handshakeTimeoutMs = init.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS
    this.budget = init.budget
    this.stallMs = init.stallMs ?? STALL_MS
    this.closed = new Promise(resolve => { socket.once('close', () => { resolve() }) })
    socket.once('close', () => {
      this.gone = true
      this.sayRepeats()
      const w = this.wake
      this.wake = null
      w?.()
    })
  }

  /** a failed request logged, unless the last one logged failed alike less than FAIL_LOG_MS ago (then counted) */
  private failed (req: { type: number, offset: number, length: number }, errno: number, error: string): void {
    const f = this.lastFail
    const now = Date.now()
    const kind = `${req.type}/${errno}`
    if (f != null && f.kind === kind && now - f.at < FAIL_LOG_MS) { f.repeats++; f.last = error; return }
    this.sayRepeats()
    this.log.warn('nbd request failed', { export: exportLabel(this.exportName), type: req.type, offset: req.offset, length: req.length, errno, error })
    this.lastFail = { kind, at: now, repeats: 0, last: error }
  }

  private sayRepeats (): void {
    const f = this.lastFail
    if (f == null || f.repeats === 0) return
    this.log.warn('nbd requests failed as the one before', { export: exportLabel(this.exportName), requests: f.repeats, last: f.last })
    f.repeats = 0
  }

  /** runs the session to its end; never throws */
  async run (): Promise<void> {
    let dev: BlockDevice | null | undefined
    try {
      dev = await this.handshakeInTime()
      if (dev != null) await this.transmit(dev)
    } catch (err) {
      if (!(err instanceof Closed)) this.log.warn('nbd session ended on an error', { error: String(err), export: exportLabel(this.exportName) })
    } finally {
      // nothing more is read: what the client sends from here on is dropped, not kept
      this.reader.close()
      // its last replies go out; a client that does not take them, or keeps its end open
      // once they are out, is cut off (a reply's write ends in its callback, also when
      // the socket is destroyed)
      const linger = setTimeout(() => { this.socket.destroy() }, LINGER_MS)
      this.socket.once('close', () => { clearTimeout(linger) })
      while (this.active > 0) await new Promise<void>(resolve => { this.wake = resolve })
      if (this.socket.destroyed) clearTimeout(linger)
      else this.socket.end(() => { this.socket.destroy() })
      if (dev != null) this.exports.release?.(dev)
    }
  }

  private send (b: Buffer): void { this.socket.write(b) }

  private async handshakeInTime (): Promise<BlockDevice | null> {
    const timer = setTimeout(() => {
      this.log.warn('nbd handshake not done in time: connection closed', { timeoutMs: this.handshakeTimeoutMs })
      this.socket.destroy()
    }, this.handshakeTimeoutMs)
    try { return await this.handshake() } finally { clearTimeout(timer) }
  }

  /** resolves once the client read the replies queued here down to `bytes`, or the socket ended */
  private async drained (bytes: number): Promise<void> {
    if (this.socket.writableLength <= bytes || this.socket.destroyed) return
    this.socket.pause()
    await new Promise<void>(resolve => {
      const done = (): void => { this.socket.off('drain', done); this.socket.off('close', done); resolve() }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    })
    this.socket.resume()
  }

  private async handshake (): Promise<BlockDevice | null> {
    this.send(serverGreeting())
    const cflags = (await this.reader.read(4)).readUInt32BE(0)
    if ((cflags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) throw new GvsError('invalid', `client flags 0x${cflags.toString(16)} hold bits this server does not know`)
    this.noZeroes = (cflags & FLAG_C_NO_ZEROES) !== 0
    for (let options = 0; ; options++) {
      if (options >= MAX_OPTIONS) throw new GvsError('invalid', `more than ${MAX_OPTIONS} options in one handshake`)
      // option replies are flow controlled too: a client that sends LIST after LIST and
      // never reads the answers waits here
      await this.drained(MAX_UNREAD_OPTION_REPLIES)
      const h = await this.reader.read(16)
      if (h.readBigUInt64BE(0) !== IHAVEOPT) throw new GvsError('invalid', 'option without the IHAVEOPT magic')
      const opt = h.readUInt32BE(8)
      const len = h.readUInt32BE(12)
      if (len > MAX_OPTION) throw new GvsError('invalid', `option ${opt} carries ${len} bytes, more than ${MAX_OPTION}`)
      const data = await this.reader.read(len)
      switch (opt) {
        case OPT.EXPORT_NAME: {
          const name = data.toString('utf8')
          const dev = this.exports.get(name)
          // this option cannot carry an error: the protocol says to hang up
          if (dev == null) throw new GvsError('invalid', `EXPORT_NAME for unknown export "${name}"`)
          const b = Buffer.alloc(this.noZeroes ? 10 : 134)
          b.writeBigUInt64BE(BigInt(dev.size), 0)
          b.writeUInt16BE(transmissionFlags(dev), 8)
          this.send(b)
          this.exportName = name
          return dev
        }
        case OPT.ABORT:
          this.send(optionReply(opt, REP.ACK))
          return null
        case OPT.LIST:
          if (len !== 0) { this.send(optionReply(opt, REP.ERR_INVALID, Buffer.from('NBD_OPT_LIST takes no data'))); break }
          for (const name of this.exports.list()) this.send(optionReply(opt, REP.SERVER, serverEntry(name)))
          this.send(optionReply(opt, REP.ACK))
          break
        case OPT.INFO:
        case OPT.GO: {
          let req: { name: string, infos: number[] }
          try { req = parseInfoRequest(data) } catch (err) {
            this.send(optionReply(opt, REP.ERR_INVALID, Buffer.from((err as Error).message)))
            break
          }
          const dev = this.exports.get(req.name)
          if (dev == null) {
            // the name is the client's (up to 4 KiB): quoted in part, an error string stays short
            const name = req.name.length > 200 ? `${req.name.slice(0, 200)}...` : req.name
            // volume paths have no "~": a name with one was meant as a VM disk's (NAME~EPOCH~KEY)
            const pinned = req.name.includes('~') ? ': a name with "~" is a VM disk\'s, NAME~EPOCH~KEY, where EPOCH is a writer epoch this node fenced for a VM (vol info prints the current one)' : ''
            this.send(optionReply(opt, REP.ERR_UNKNOWN, Buffer.from(`no volume is exported as "${name}"${pinned}`)))
            break
          }
          this.send(optionReply(opt, REP.INFO, infoExport(dev.size, transmissionFlags(dev))))
          if (req.infos.includes(INFO.NAME)) this.send(optionReply(opt, REP.INFO, infoString(INFO.NAME, req.name)))
          if (req.infos.includes(INFO.DESCRIPTION)) this.send(optionReply(opt, REP.INFO, infoString(INFO.DESCRIPTION, `vgrid volume ${req.name}`)))
          if (req.infos.includes(INFO.BLOCK_SIZE)) this.send(optionReply(opt, REP.INFO, infoBlockSize()))
          this.send(optionReply(opt, REP.ACK))
          if (opt === OPT.GO) {
            this.exportName = req.name
            return dev
          }
          // INFO only: the device got for it (a writer's handle, a VM disk's session) ends here
          this.exports.release?.(dev)
          break
        }
        default:
          // STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers: not spoken here
          this.send(optionReply(opt, REP.ERR_UNSUP, Buffer.from(`option ${opt} is not supported by this server`)))
      }
    }
  }

  private async transmit (dev: BlockDevice): Promise<void> {
    const stall = this.watchStall()
    try {
      for (;;) {
        // one waiter, woken by the request that ends: a race over every request in flight
        // added a handler to each of them per request read (nbdcopy keeps the limit full)
        // and the socket stops being read meanwhile: else the reader buffers whatever
        // the client sends, and the limit would not bound memory
        await this.waitWhile(() => this.full())
        // a client gone: the requests it left buffered are for nobody
        if (this.gone) return
        const req = parseRequest(await this.reader.read(28))
        if (req == null) throw new GvsError('invalid', 'request without the NBD request magic')
        if (req.type === CMD.DISC) return
        // the payload must be consumed to stay in step, unless it is absurd
        if (req.type === CMD.WRITE && req.length > 2 * MAX_PAYLOAD) throw new GvsError('invalid', `write of ${req.length} bytes exceeds twice the advertised maximum`)
        const bytes = req.type === CMD.READ || req.type === CMD.WRITE ? Math.min(req.length, 2 * MAX_PAYLOAD) : 0
        // the server's budget is taken before the request costs memory (its payload read,
        // its read served), checked and taken in one step (sessions that checked one after
        // the other before either took would all pass); nothing in flight anywhere: it
        // goes, whatever its size
        if (this.budget != null && !await this.takeBudget(this.budget, bytes)) return
        this.active++
        this.activeBytes += bytes
        let ended = false
        const end = (): void => {
          if (ended) return
          ended = true
          this.progressAt = Date.now()
          this.active--
          this.activeBytes -= bytes
          this.budget?.give(bytes)
          const w = this.wake
          this.wake = null
          w?.()
        }
        let payload: Buffer | null = null
        try {
          if (req.type === CMD.WRITE) payload = await this.reader.read(req.length)
        } catch (err) {
          end()
          throw err
        }
        // ends when its reply left (or could not be sent): serve calls it from the write's callback
        void this.serve(dev, req, payload, end).catch(() => { end() })
      }
    } finally {
      clearInterval(stall)
    }
  }

  /** bytes of replies not yet taken by the kernel: the stream's buffer and what libuv still holds of its writes */
  private unsent (): number {
    const handle = (this.socket as unknown as { _handle?: { writeQueueSize?: unknown } })._handle
    return this.socket.writableLength + (typeof handle?.writeQueueSize === 'number' ? handle.writeQueueSize : 0)
  }

  /** takes `bytes` of the server's budget, waiting in turn with the socket paused; false when the client went first */
  private async takeBudget (budget: InFlightBudget, bytes: number): Promise<boolean> {
    this.socket.pause()
    try {
      return await budget.take(bytes, this.closed)
    } finally {
      this.socket.resume()
    }
  }

  /** with the socket paused (nothing more buffered), until `blocked` is false or the client is gone */
  private async waitWhile (blocked: () => boolean): Promise<void> {
    if (!blocked()) return
    this.socket.pause()
    while (blocked() && !this.gone) {
      await new Promise<void>(resolve => { this.wake = resolve })
    }
    this.socket.resume()
  }

  /**
   * A session that holds the server's bytes while other requests wait for them, and
   * makes no progress (no reply of its left, nothing arrived from its client: a client
   * that stopped reading, or stopped in the middle of a write's payload), is cut off
   * after stallMs, giving its bytes back. A slow client that moves is left alone, and
   * one that holds up nobody too. A check that comes late (this process's own loop
   * stalled) counts as progress: replies may have left meanwhile without being seen.
   */
  private watchStall (): ReturnType<typeof setInterval> {
    const every = Math.max(50, Math.floor(this.stallMs / 4))
    let last = Date.now()
    let unsent = this.unsent()
    const timer = setInterval(() => {
      const now = Date.now()
      const late = now - last > 2 * every
      last = now
      // bytes leaving for the client, not only whole replies: a write's callback comes
      // once its whole writev is out, which for a slow reader is seconds of replies
      const u = this.unsent()
      if (u < unsent) this.progressAt = now
      unsent = u
      if (late || this.budget == null || this.budget.waiting === 0 || this.activeBytes === 0) { this.progressAt = now; return }
      if (now - this.progressAt < this.stallMs) return
      this.log.warn('nbd client made no progress while holding what others wait for: connection closed', { export: exportLabel(this.exportName), heldBytes: this.activeBytes, stallMs: this.stallMs })
      this.socket.destroy()
    }, every)
    timer.unref?.()
    return timer
  }



  /** no more requests are read while this holds; one request alone may exceed the byte bound */
  private full (): boolean {
    return this.active >= this.maxInFlight || (this.active > 0 && (this.activeBytes >= this.maxInFlightBytes || this.unsent() >= MAX_UNSENT))
  }

  private async serve (dev: BlockDevice, req: ReturnType<typeof parseRequest> & object, payload: Buffer | null, done: () => void): Promise<void> {
    if (this.gone) { done(); return }
    const fua = (req.flags & CMD_FLAG.FUA) !== 0
    if (fua) this.stats.fua++
    let error = 0
    let data: Uint8Array | null = null
    const end = req.offset + req.length
    try {
      const writes = req.type === CMD.WRITE || req.type === CMD.TRIM || req.type === CMD.WRITE_ZEROES
      // FUA goes with any command; NO_HOLE only with write-zeroes; DF, REQ_ONE and
      // FAST_ZERO need what this server does not offer (structured replies, block
      // status, fast zeroes), and bits the protocol does not define are refused too
      const allowed = CMD_FLAG.FUA | (req.type === CMD.WRITE_ZEROES ? CMD_FLAG.NO_HOLE : 0)
      if (writes && dev.readOnly) error = ERRNO.EPERM
      else if ((req.flags & ~allowed) !== 0) error = ERRNO.EINVAL
      else if (req.length > MAX_PAYLOAD && (req.type === CMD.READ || req.type === CMD.WRITE)) error = ERRNO.EINVAL
      // past the end: ENOSPC for what writes data, EINVAL for reads and trims (proto.md)
      else if (end > dev.size && req.type !== CMD.FLUSH) error = req.type === CMD.WRITE || req.type === CMD.WRITE_ZEROES ? ERRNO.ENOSPC : ERRNO.EINVAL
      else {
        switch (req.type) {
          case CMD.READ: this.stats.read++; data = await dev.read(req.offset, req.length); break
          case CMD.WRITE:
            this.stats.write++
            await dev.write(req.offset, payload ?? Buffer.alloc(0), fua)
            // written: the payload's copy (if pooled) is free again; a device that may
            // still send it (a write that did not finish on a replica) kept it (buffer-pool.ts)
            if (payload != null) readBuffers.give(payload)
            break
          case CMD.FLUSH: this.stats.flush++; await dev.flush(); break
          case CMD.TRIM: this.stats.trim++; await dev.trim(req.offset, req.length, fua); break
          case CMD.WRITE_ZEROES:
            this.stats.zero++
            // NO_HOLE: the range must be provisioned, not left a hole (a later write there must not find the disk full)
            if ((req.flags & CMD_FLAG.NO_HOLE) !== 0) await writeZerosAsData(dev, req.offset, req.length, fua)
            else await dev.writeZeroes(req.offset, req.length, fua)
            break
          default: error = ERRNO.EINVAL
        }
        if (error === 0) this.exports.succeeded?.(this.exportName ?? '', CMD_NAMES[req.type] ?? String(req.type))
      }
    } catch (err) {
      error = errnoOf(err)
      this.stats.errors++
      if (error === ERRNO.EIO || error === ERRNO.ENOSPC) this.exports.failed?.(this.exportName ?? '', CMD_NAMES[req.type] ?? String(req.type), String((err as Error).message ?? err))
      this.failed(req, error, String((err as Error).message ?? err))
    }
    if (this.socket.destroyed) { done(); return }
    // the replies finished in one turn of the event loop go out in one writev (a
    // reply is 16 bytes and a write(2) each cost more than the request), but not more
    // than CORK_BYTES of them: reads served in place run back to back in one turn, and
    // the client should get the first while the next are read, not all at the end
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      if (!this.uncorkQueued) {
        this.uncorkQueued = true
        setImmediate(() => { this.uncorkQueued = false; this.uncork() })
      }
    }
    // the read buffer goes back to the store's pool once the socket has taken it, and
    // the request ends then: until the kernel took its reply, it is memory held here
    if (error === 0 && data != null) {
      const d = data
      this.socket.write(simpleReply(req.cookie, error))
      this.socket.write(d, (err) => { if (err == null) readBuffers.give(d); done() })
      this.corkedBytes += 16 + d.length
    } else {
      this.socket.write(simpleReply(req.cookie, error), () => { done() })
      this.corkedBytes += 16
    }
    if (this.corkedBytes >= CORK_BYTES) this.uncork()
  }

  private uncork (): void {
    if (!this.corked) return
    this.corked = false
    this.corkedBytes = 0
    this.socket.uncork()
  }
}

/**
 * Replies waiting for the socket past which no more requests are read. Reads served in
 * place (the cache's) answer faster than the kernel takes their replies: reading on
 * would only queue more, up to the session's byte bound (64 MiB), in buffers that have
 * left the CPU's caches by the time the kernel copies them out. Measured with nbdcopy
 * reading cached blocks (512 MiB, quiet 2-core machine): 0.69-0.72x of qemu-nbd with
 * the bound alone, 0.76-0.88x with 1 MiB here, and a fifth less server CPU.
 */
const MAX_UNSENT = 1024 * 1024

/** replies held for one writev at most: a unix socket's default send buffer holds about 208 KiB */
const CORK_BYTES = 128 * 1024
