// Test helper: a small NBD client (fixed newstyle, NBD_OPT_GO, simple replies) over a
// unix socket, written from the protocol document, so a test sees each request's own
// answer: which writes were acknowledged and which failed (EIO) while a node died.
import { connect, type Socket } from 'node:net'

const NBDMAGIC = 0x4e42444d41474943n
const IHAVEOPT = 0x49484156454f5054n
const REPLY_MAGIC = 0x3e889045565a9n
const OPT_GO = 7
const REP_ACK = 1
const REP_INFO = 3
const REQUEST_MAGIC = 0x25609513
const SIMPLE_REPLY_MAGIC = 0x67446698
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3 } as const
const FLAG_FUA = 1

export class NbdError extends Error {
  readonly errno: number
  constructor (errno: number, what: string) { super(`${what}: NBD error ${errno}`); this.errno = errno }
}

interface Pending { resolve: (d: Buffer | null) => void, reject: (e: Error) => void, readLen: number }

export class NbdClient {
  size = 0
  private readonly socket: Socket
  private buf = Buffer.alloc(0)
  private waiter: (() => void) | null = null
  private closed: Error | null = null
  private cookie = 1n
  private readonly pending = new Map<bigint, Pending>()

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', d => { this.buf = Buffer.concat([this.buf, d]); this.waiter?.() })
    const end = (err?: Error): void => {
      this.closed ??= err ?? new Error('NBD connection closed')
      this.waiter?.()
      for (const p of this.pending.values()) p.reject(this.closed)
      this.pending.clear()
    }
    socket.on('error', end)
    socket.on('close', () => { end() })
  }

  static async open (socketPath: string, name: string): Promise<NbdClient> {
    const socket = connect(socketPath)
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const c = new NbdClient(socket)
    await c.handshake(name)
    void c.replies()
    return c
  }

  private async take (n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed != null) throw this.closed
      await new Promise<void>(resolve => { this.waiter = resolve })
      this.waiter = null
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  private async handshake (name: string): Promise<void> {
    const g = await this.take(18)
    if (g.readBigUInt64BE(0) !== NBDMAGIC || g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('not an NBD newstyle server')
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(3) // FIXED_NEWSTYLE | NO_ZEROES
    this.socket.write(flags)
    const nm = Buffer.from(name)
    const data = Buffer.alloc(4 + nm.length + 2)
    data.writeUInt32BE(nm.length, 0)
    nm.copy(data, 4)
    const h = Buffer.alloc(16)
    h.writeBigUInt64BE(IHAVEOPT, 0)
    h.writeUInt32BE(OPT_GO, 8)
    h.writeUInt32BE(data.length, 12)
    this.socket.write(Buffer.concat([h, data]))
    for (;;) {
      const r = await this.take(20)
      if (r.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad option reply magic')
      const type = r.readUInt32BE(12)
      const body = await this.take(r.readUInt32BE(16))
      if (type === REP_ACK) return
      if (type === REP_INFO && body.readUInt16BE(0) === 0) this.size = Number(body.readBigUInt64BE(2))
      else if ((type & 0x80000000) !== 0) throw new Error(`NBD_OPT_GO "${name}" refused: ${body.toString()}`)
    }
  }

  private async replies (): Promise<void> {
    try {
      for (;;) {
        const r = await this.take(16)
        if (r.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error('bad reply magic')
        const errno = r.readUInt32BE(4)
        const cookie = r.readBigUInt64BE(8)
        const p = this.pending.get(cookie)
        if (p == null) throw new Error(`reply to unknown cookie ${cookie}`)
        this.pending.delete(cookie)
        const data = errno === 0 && p.readLen > 0 ? Buffer.from(await this.take(p.readLen)) : null
        if (errno !== 0) p.reject(new NbdError(errno, 'request failed'))
        else p.resolve(data)
      }
    } catch (err) {
      this.closed ??= err as Error
      for (const p of this.pending.values()) p.reject(this.closed)
      this.pending.clear()
    }
  }

  private async request (type: number, offset: number, length: number, data?: Buffer, flags = 0): Promise<Buffer | null> {
    if (this.closed != null) throw this.closed
    const cookie = this.cookie++
    const h = Buffer.alloc(28)
    h.writeUInt32BE(REQUEST_MAGIC, 0)
    h.writeUInt16BE(flags, 4)
    h.writeUInt16BE(type, 6)
    h.writeBigUInt64BE(cookie, 8)
    h.writeBigUInt64BE(BigInt(offset), 16)
    h.writeUInt32BE(length, 24)
    const done = new Promise<Buffer | null>((resolve, reject) => { this.pending.set(cookie, { resolve, reject, readLen: type === CMD.READ ? length : 0 }) })
    this.socket.write(data == null ? h : Buffer.concat([h, data]))
    return await done
  }

  async read (offset: number, length: number): Promise<Buffer> { return (await this.request(CMD.READ, offset, length))! }
  async write (offset: number, data: Buffer, fua = false): Promise<void> { await this.request(CMD.WRITE, offset, data.length, data, fua ? FLAG_FUA : 0) }
  async flush (): Promise<void> { await this.request(CMD.FLUSH, 0, 0) }

  async close (): Promise<void> {
    if (this.closed == null) {
      const h = Buffer.alloc(28)
      h.writeUInt32BE(REQUEST_MAGIC, 0)
      h.writeUInt16BE(CMD.DISC, 6)
      this.socket.write(h)
    }
    this.socket.end()
    this.socket.destroy()
  }
}
