// An NBD client that does not read what the agent answers must not make it queue
// unbounded memory: neither replies to requests (a request counts until its reply left
// for the kernel) nor option replies in the handshake, nor, over many connections,
// more than the server's shared budget; a handshake is bounded in options and in time;
// a session that ended is closed even if its client keeps its end open, and requests a
// client left behind when it went are not served. Requests with flags they may not
// carry, or past the end, get the errors proto.md names. The session runs on a real
// socket pair over a real store and volume; the server side's queued bytes
// (socket.writableLength) are what is bounded.
import test, { type ExecutionContext } from 'ava'
import { createServer, connect, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { LocalVolume, type BlockDevice } from '../../node/gvs/block-device.ts'
import { NbdSession, MAX_OPTIONS, emptyStats, type NbdStats, type SessionInit } from '../../node/gvs/nbd/session.ts'
import { InFlightBudget } from '../../node/gvs/nbd/budget.ts'
import { silentLogger, type Logger } from '../../node/log.ts'

const MiB = 1024 * 1024
const IHAVEOPT = 0x49484156454f5054n
const OPT = { ABORT: 2, LIST: 3, GO: 7, STRUCTURED_REPLY: 8 }

interface Rig { client: Socket, server: Socket, stats: NbdStats, warnings: string[], ended: Promise<void> }

async function rig (t: ExecutionContext, devs: Map<string, BlockDevice>, init: SessionInit, halfOpen = false): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nbd-bp-'))
  const stats = emptyStats()
  const warnings: string[] = []
  const log: Logger = { ...silentLogger, warn: msg => { warnings.push(msg) } }
  let ended!: Promise<void>
  const accepted = new Promise<Socket>(resolve => {
    const srv = createServer(s => {
      s.on('error', () => {})
      ended = new NbdSession({ log, exports: { get: n => devs.get(n), list: () => [...devs.keys()] }, stats }, s, init).run()
      resolve(s)
    })
    srv.listen(join(dir, 's.sock'))
    t.teardown(async () => { await new Promise(resolve => srv.close(resolve)); await rm(dir, { recursive: true, force: true }) })
  })
  // halfOpen: a client that keeps its end open when the agent closes its own
  const client = connect({ path: join(dir, 's.sock'), allowHalfOpen: halfOpen })
  client.on('error', () => {})
  const server = await accepted
  t.teardown(() => { client.destroy(); server.destroy() })
  return { client, server, stats, warnings, ended }
}

async function volume (t: ExecutionContext, size: number): Promise<BlockDevice> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nbd-bp-store-'))
  const store = new ObjectStore({ log: silentLogger }, { dir })
  await store.start()
  t.teardown(async () => { await store.stop(); await rm(dir, { recursive: true, force: true }) })
  return new LocalVolume({ store }, { volume: 'vol', size, epoch: 1 })
}

function option (opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16)
  h.writeBigUInt64BE(IHAVEOPT, 0)
  h.writeUInt32BE(opt, 8)
  h.writeUInt32BE(data.length, 12)
  return Buffer.concat([h, data])
}

function go (name: string): Buffer {
  const n = Buffer.from(name)
  const d = Buffer.alloc(4 + n.length + 2)
  d.writeUInt32BE(n.length, 0)
  n.copy(d, 4)
  return option(OPT.GO, d)
}

const clientFlags = (): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(3); return b }

const CMD = { READ: 0, WRITE: 1, TRIM: 4, WRITE_ZEROES: 6 }
const readRequest = (cookie: number, offset: number, length: number): Buffer => request(CMD.READ, 0, cookie, offset, length)

function request (type: number, flags: number, cookie: number, offset: number, length: number): Buffer {
  const h = Buffer.alloc(28)
  h.writeUInt32BE(0x25609513, 0)
  h.writeUInt16BE(flags, 4)
  h.writeUInt16BE(type, 6)
  h.writeBigUInt64BE(BigInt(cookie), 8)
  h.writeBigUInt64BE(BigInt(offset), 16)
  h.writeUInt32BE(length, 24)
  return h
}

/** reads from the client socket until `done(bytes so far)` or the socket closes */
async function collect (s: Socket, done: (bytes: number) => boolean): Promise<Buffer> {
  const chunks: Buffer[] = []
  let bytes = 0
  return await new Promise(resolve => {
    const finish = (): void => { s.off('data', on); resolve(Buffer.concat(chunks)) }
    // the bytes so far are joined only when the caller needs to look at them
    const on = (d: Buffer): void => { chunks.push(d); bytes += d.length; if (done(bytes)) finish() }
    s.on('data', on)
    s.once('close', finish)
    s.resume()
  })
}

/** the largest value `sample` takes until `progress` stops changing for ten looks in a row */
async function peakUntilStill (sample: () => number, progress: () => number): Promise<number> {
  let peak = 0
  let last = -1
  let still = 0
  while (still < 10) {
    peak = Math.max(peak, sample())
    const p = progress()
    still = p === last ? still + 1 : 0
    last = p
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return Math.max(peak, sample())
}

test('a client that never reads its replies: the agent stops reading requests at the byte bound', async t => {
  const dev = await volume(t, 128 * MiB)
  const r = await rig(t, new Map([['vol', dev]]), { maxInFlightBytes: 4 * MiB })
  r.client.write(Buffer.concat([clientFlags(), go('vol')]))
  // the handshake's replies end with the ACK of GO: 18 greeting + INFO(20+12) + ACK(20)
  await collect(r.client, b => b >= 18 + 32 + 20)
  r.client.pause()
  const n = 100
  for (let i = 0; i < n; i++) r.client.write(readRequest(i + 1, i * MiB, MiB))
  const peak = await peakUntilStill(() => r.server.writableLength, () => r.stats.read)
  t.true(r.stats.read < n, `served ${r.stats.read} of ${n} reads nobody read the answers of`)
  // the bound plus the one request that may cross it
  t.true(peak <= 5 * MiB + 16 * n, `the agent queued ${peak} bytes of replies`)
  // all answered once the client reads
  const all = await collect(r.client, b => b >= n * (16 + MiB))
  t.is(all.length, n * (16 + MiB))
  t.is(r.stats.read, n)
})

test('option replies are flow controlled: LIST after LIST, never read, is not queued without bound', async t => {
  const devs = new Map<string, BlockDevice>()
  const dev = await volume(t, MiB)
  for (let i = 0; i < 50; i++) devs.set(`volume-${i}-${'x'.repeat(200)}`, dev)
  const r = await rig(t, devs, {})
  r.client.pause()
  const n = 500 // each answer: 50 entries of about 230 bytes, and an ACK
  r.client.write(Buffer.concat([clientFlags(), ...Array.from({ length: n }, () => option(OPT.LIST))]))
  let served = 0
  const peak = await peakUntilStill(() => r.server.writableLength, () => (served = r.server.bytesWritten + r.server.writableLength))
  t.true(served < n * 50 * 200, `${served} bytes of answers written or queued`)
  t.true(peak <= 512 * 1024, `the agent queued ${peak} bytes of option replies`)
})

test('a handshake is bounded in options: the session ends past the limit', async t => {
  const r = await rig(t, new Map(), {})
  const n = MAX_OPTIONS + 100
  r.client.write(Buffer.concat([clientFlags(), ...Array.from({ length: n }, () => option(OPT.STRUCTURED_REPLY)), option(OPT.ABORT)]))
  const all = await collect(r.client, () => false)
  await r.ended
  // 18 greeting bytes, then one error reply per option answered
  let replies = 0
  for (let at = 18; at + 20 <= all.length; at += 20 + all.readUInt32BE(at + 16)) {
    t.not(all.readUInt32BE(at + 12) & 0x80000000, 0, 'unsupported, not the ACK of ABORT')
    replies++
  }
  t.is(replies, MAX_OPTIONS)
  t.true(r.warnings.some(w => /ended on an error/.test(w)))
})

test('a connection idle in the handshake is closed after the handshake timeout, with a log line', async t => {
  const r = await rig(t, new Map(), { handshakeTimeoutMs: 100 })
  await collect(r.client, () => false) // the greeting, then the close
  await r.ended
  t.true(r.server.destroyed)
  t.true(r.warnings.some(w => /handshake not done in time/.test(w)), r.warnings.join('; '))
})

/** a client through GO on `vol`, its handshake replies read */
async function opened (r: Rig): Promise<void> {
  r.client.write(Buffer.concat([clientFlags(), go('vol')]))
  await collect(r.client, b => b >= 18 + 32 + 20)
}

test('many connections that never read their replies hold no more than the server\'s shared budget, and are cut off in turn while others wait, so that those are served', async t => {
  const dev = await volume(t, 128 * MiB)
  const budget = new InFlightBudget(4 * MiB)
  const init = { budget, stallMs: 400 }
  const stuck = await Promise.all(Array.from({ length: 6 }, async () => await rig(t, new Map([['vol', dev]]), init)))
  for (const r of stuck) await opened(r)
  const n = 8
  for (const r of stuck) {
    r.client.pause()
    for (let i = 0; i < n; i++) r.client.write(readRequest(i + 1, i * 4 * MiB, 4 * MiB))
  }
  // what live sessions hold queued (a destroyed socket still reports what it dropped)
  const queued = (): number => stuck.reduce((a, r) => a + (r.server.destroyed ? 0 : r.server.writableLength), 0)
  let peak = 0
  const sampler = setInterval(() => { peak = Math.max(peak, queued(), budget.bytes) }, 10)
  t.teardown(() => { clearInterval(sampler) })
  await new Promise(resolve => setTimeout(resolve, 200))
  // a client that reads, behind them: it waits its turn, and the stuck ones holding it up are cut off
  const fresh = await rig(t, new Map([['vol', dev]]), init)
  await opened(fresh)
  fresh.client.write(readRequest(1, 0, MiB))
  t.is((await collect(fresh.client, b => b >= 16 + MiB)).length, 16 + MiB)
  clearInterval(sampler)
  // the budget, plus the one request that may start when nothing is in flight
  t.true(peak <= 8 * MiB, `${peak} bytes held by six sessions (each alone may hold 64 MiB)`)
  t.true(stuck.every(r => r.server.destroyed), 'every stuck session held up the client behind it')
  t.true(stuck[0]!.warnings.some(w => /made no progress while holding what others wait for/.test(w)))
})

test('the budget admits in turn: a large request is not passed for ever by small ones; one that waits and goes takes nothing', async t => {
  const b = new InFlightBudget(4 * MiB)
  const never = new Promise<void>(() => {})
  t.true(await b.take(3 * MiB, never))
  const big = b.take(4 * MiB, never)
  // smaller ones that would fit now wait behind it
  const small = b.take(512 * 1024, never)
  let smallIn = false
  void small.then(() => { smallIn = true })
  await new Promise(resolve => setTimeout(resolve, 20))
  t.false(smallIn, 'a small request does not pass the large one waiting first')
  b.give(3 * MiB)
  t.true(await big)
  t.is(b.bytes, 4 * MiB)
  b.give(4 * MiB)
  t.true(await small)
  // a waiter whose client goes takes nothing, and the one behind it moves up
  let go = (): void => {}
  const gone = new Promise<void>(resolve => { go = resolve })
  const leaving = b.take(4 * MiB, gone)
  const next = b.take(1024, never)
  go()
  t.false(await leaving)
  t.true(await next)
  t.is(b.bytes, 512 * 1024 + 1024)
  t.is(b.waiting, 0)
})

test('a slow client that keeps reading is not cut off, even while others wait', async t => {
  const dev = await volume(t, 128 * MiB)
  const budget = new InFlightBudget(2 * MiB)
  const init = { budget, stallMs: 1200 }
  const slow = await rig(t, new Map([['vol', dev]]), init)
  await opened(slow)
  const other = await rig(t, new Map([['vol', dev]]), init)
  await opened(other)
  // 16 replies of 256 KiB, read at about 1 MiB/s (a reply leaves every quarter second), while another client's wait behind it
  slow.client.pause()
  for (let i = 0; i < 16; i++) slow.client.write(readRequest(i + 1, i * 256 * 1024, 256 * 1024))
  other.client.write(Buffer.concat(Array.from({ length: 16 }, (_, i) => readRequest(i + 1, i * MiB, MiB))))
  const others = collect(other.client, b => b >= 16 * (16 + MiB))
  let got = 0
  const want = 16 * (16 + 256 * 1024)
  const drip = setInterval(() => { const c = slow.client.read(Math.min(64 * 1024, want - got)) as Buffer | null; if (c != null) got += c.length }, 60)
  t.teardown(() => { clearInterval(drip) })
  const end = Date.now() + 20_000
  while (got < want && Date.now() < end && !slow.server.destroyed) await new Promise(resolve => setTimeout(resolve, 50))
  clearInterval(drip)
  t.false(slow.server.destroyed, 'a client that reads, however slowly, is left alone')
  t.is(got, want)
  t.is((await others).length, 16 * (16 + MiB))
})

test('a session that ended is closed, though its client keeps its end open and writes on', async t => {
  const r = await rig(t, new Map(), {}, true)
  r.client.write(Buffer.concat([clientFlags(), option(OPT.ABORT)]))
  await collect(r.client, b => b >= 18 + 20)
  await r.ended
  for (let i = 0; i < 50 && !r.server.destroyed; i++) {
    r.client.write(Buffer.alloc(64 * 1024)) // junk after the end: dropped, and the socket goes
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.true(r.server.destroyed, 'the agent\'s end is gone, not left buffering what the client sends')
})

test('requests a client left behind when it went are not served', async t => {
  const store = await volume(t, 512 * MiB)
  // each read takes a while: the client is gone long before they could all be served
  const slow: BlockDevice = { ...store, size: store.size, readOnly: false, read: async (o, l) => { await new Promise(resolve => setTimeout(resolve, 20)); return await store.read(o, l) } }
  const r = await rig(t, new Map([['vol', slow]]), { maxInFlight: 4 })
  await opened(r)
  const n = 400
  r.client.write(Buffer.concat(Array.from({ length: n }, (_, i) => readRequest(i + 1, i * MiB, MiB))))
  await new Promise(resolve => setTimeout(resolve, 30))
  r.client.destroy()
  await r.ended
  t.true(r.stats.read < 40, `served ${r.stats.read} of ${n} reads for a client that had gone`)
})

test('flags a request may not carry, and requests past the end, get proto.md\'s errors; write-zeroes with NO_HOLE provisions', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nbd-flags-'))
  const store = new ObjectStore({ log: silentLogger }, { dir, objectSize: MiB })
  await store.start()
  t.teardown(async () => { await store.stop(); await rm(dir, { recursive: true, force: true }) })
  const dev = new LocalVolume({ store }, { volume: 'vol', size: 4 * MiB, epoch: 1 })
  const r = await rig(t, new Map([['vol', dev]]), {})
  await opened(r)
  const NO_HOLE = 2
  const cases: Array<[string, Buffer, number]> = [
    ['a read with an undefined flag', request(CMD.READ, 0x80, 1, 0, 512), 22],
    ['a read with DF (no structured replies)', request(CMD.READ, 4, 2, 0, 512), 22],
    ['a write with NO_HOLE', Buffer.concat([request(CMD.WRITE, NO_HOLE, 3, 0, 512), Buffer.alloc(512)]), 22],
    ['a trim past the end', request(CMD.TRIM, 0, 4, 4 * MiB - 512, 1024), 22],
    ['a write-zeroes past the end', request(CMD.WRITE_ZEROES, 0, 5, 4 * MiB - 512, 1024), 28],
    ['a read with FUA', request(CMD.READ, 1, 6, 0, 512), 0],
    ['write-zeroes of object 1 with NO_HOLE', request(CMD.WRITE_ZEROES, NO_HOLE, 7, MiB, MiB), 0],
    ['write-zeroes of object 2', request(CMD.WRITE_ZEROES, 0, 8, 2 * MiB, MiB), 0]
  ]
  for (const [what, req, errno] of cases) {
    r.client.write(req)
    const reply = await collect(r.client, b => b >= 16)
    const extra = reply.length - 16 // a successful read's data
    t.is(reply.readUInt32BE(4), errno, what)
    if (errno === 0 && extra < 512 && req.readUInt16BE(6) === CMD.READ) await collect(r.client, b => b >= 512 - extra)
  }
  t.true(await store.has('vol', 1), 'NO_HOLE: the zeros are on disk')
  t.false(await store.has('vol', 2), 'without it: a hole')
})

test('a client that stops in the middle of a write\'s payload is cut off once another waits for the bytes it holds', async t => {
  const dev = await volume(t, 128 * MiB)
  const budget = new InFlightBudget(4 * MiB)
  const init = { budget, stallMs: 400 }
  const a = await rig(t, new Map([['vol', dev]]), init)
  await opened(a)
  a.client.write(Buffer.concat([request(CMD.WRITE, 0, 1, 0, 4 * MiB), Buffer.alloc(1000)])) // and nothing more
  await new Promise(resolve => setTimeout(resolve, 100))
  t.is(budget.bytes, 4 * MiB)
  const b = await rig(t, new Map([['vol', dev]]), init)
  await opened(b)
  b.client.write(readRequest(1, 0, 64 * 1024))
  t.is((await collect(b.client, n => n >= 16 + 64 * 1024)).length, 16 + 64 * 1024)
  await a.ended
  t.true(a.server.destroyed)
  t.is(budget.bytes, 0)
})
