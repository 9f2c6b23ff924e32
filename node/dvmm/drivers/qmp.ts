// A minimal QMP client (QEMU's JSON control protocol on a unix socket): the greeting,
// qmp_capabilities, then one command at a time. Enough for status and powerdown.
import { connect, type Socket } from 'node:net'

export class QmpError extends Error { override name = 'QmpError' }

export class Qmp {
  private readonly sock: Socket
  private buf = ''
  private waiters: Array<(msg: Record<string, unknown>) => void> = []
  private closed = false

  private constructor (sock: Socket) {
    this.sock = sock
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      this.buf += d
      let i
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim()
        this.buf = this.buf.slice(i + 1)
        if (line === '') continue
        let msg: Record<string, unknown>
        try { msg = JSON.parse(line) as Record<string, unknown> } catch { continue }
        if ('event' in msg) continue // asynchronous events are not answers
        this.waiters.shift()?.(msg)
      }
    })
    sock.on('close', () => {
      this.closed = true
      for (const w of this.waiters.splice(0)) w({ error: { desc: 'QMP connection closed' } })
    })
    sock.on('error', () => {})
  }

  /** Connects, reads the greeting and leaves capabilities negotiation done. */
  static async open (path: string, timeoutMs = 2000): Promise<Qmp> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path)
      const timer = setTimeout(() => { s.destroy(); reject(new QmpError(`QMP ${path}: no connection within ${timeoutMs} ms`)) }, timeoutMs)
      s.once('connect', () => { clearTimeout(timer); resolve(s) })
      s.once('error', err => { clearTimeout(timer); reject(new QmpError(`QMP ${path}: ${err.message}`)) })
    })
    const q = new Qmp(sock)
    try {
      await q.next(timeoutMs) // greeting
      await q.execute('qmp_capabilities', undefined, timeoutMs)
    } catch (err) {
      // closed, not left open: QEMU serves one QMP client at a time, and a connection it
      // accepted late would hold that slot for good (bb29: a guest paused by a failing
      // disk was never seen paused nor resumed, and a graceful stop found QMP full)
      q.close()
      throw err
    }
    return q
  }

  private async next (timeoutMs: number): Promise<Record<string, unknown>> {
    return await new Promise((resolve, reject) => {
      if (this.closed) { reject(new QmpError('QMP connection closed')); return }
      const timer = setTimeout(() => {
        // a late answer would go to the next command: the connection is out of step, and ends
        this.close()
        reject(new QmpError(`QMP: no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.push(msg => { clearTimeout(timer); resolve(msg) })
    })
  }

  async execute (command: string, args?: Record<string, unknown>, timeoutMs = 2000): Promise<unknown> {
    const answer = this.next(timeoutMs)
    this.sock.write(JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n')
    const msg = await answer
    if ('error' in msg) throw new QmpError(`QMP ${command}: ${(msg.error as { desc?: string }).desc ?? JSON.stringify(msg.error)}`)
    return msg.return
  }

  close (): void {
    this.sock.destroy()
  }
}

/** One command on a fresh connection. */
export async function qmpOnce (path: string, command: string, args?: Record<string, unknown>): Promise<unknown> {
  const q = await Qmp.open(path)
  try { return await q.execute(command, args) } finally { q.close() }
}
