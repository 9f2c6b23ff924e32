// An NBD session stops reading its socket while maxInFlight requests are being served
// (else a client sending faster than the device writes queues unbounded memory in the
// session's reader), and reads on once one of them ends.
import test from 'ava'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { LocalVolume, type BlockDevice } from '../../node/gvs/block-device.ts'
import { NbdSession } from '../../node/gvs/nbd/session.ts'
import { CMD, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, IHAVEOPT, OPT, REQUEST_MAGIC } from '../../node/gvs/nbd/protocol.ts'
import { silentLogger } from '../../node/log.ts'

/** reads exact byte counts from the client's end */
function reader (sock: Socket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0)
  let wake: (() => void) | null = null
  sock.on('data', c => { buf = Buffer.concat([buf, c]); wake?.() })
  return async n => {
    while (buf.length < n) await new Promise<void>(resolve => { wake = resolve })
    const out = buf.subarray(0, n)
    buf = buf.subarray(n)
    return out
  }
}

test('a session pauses its socket while maxInFlight requests are in flight, and reads on after', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nbd-pause-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const store = new ObjectStore({ log: silentLogger }, { dir })
  await store.start()
  t.teardown(async () => { await store.stop() })
  const vol = new LocalVolume({ store }, { volume: 'p', size: 16 * 1024 * 1024, epoch: 1 })
  // the real volume, its writes held until released: a device slower than the client
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let writing = 0
  let atLimit!: () => void
  const limitReached = new Promise<void>(resolve => { atLimit = resolve })
  const dev: BlockDevice = {
    size: vol.size,
    readOnly: false,
    read: async (o, l) => await vol.read(o, l),
    write: async (o, d, fua) => { if (++writing === 2) atLimit(); await gate; await vol.write(o, d, fua) },
    flush: async () => { await vol.flush() },
    trim: async (o, l, f) => { await vol.trim(o, l, f) },
    writeZeroes: async (o, l, f) => { await vol.writeZeroes(o, l, f) }
  }
  let serverSock!: Socket
  let session!: Promise<void>
  const server = createServer(sock => {
    serverSock = sock
    session = new NbdSession({ log: silentLogger, exports: { get: () => dev, list: () => [''] } }, sock, { maxInFlight: 2 }).run()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const client = connect((server.address() as { port: number }).port, '127.0.0.1')
  t.teardown(() => { client.destroy() })
  const read = reader(client)
  await read(18) // greeting
  const hello = Buffer.alloc(4 + 16)
  hello.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES, 0)
  hello.writeBigUInt64BE(IHAVEOPT, 4)
  hello.writeUInt32BE(OPT.EXPORT_NAME, 12)
  hello.writeUInt32BE(0, 16) // the default export
  client.write(hello)
  await read(10) // size and transmission flags
  const n = 8
  for (let i = 0; i < n; i++) {
    const h = Buffer.alloc(28)
    h.writeUInt32BE(REQUEST_MAGIC, 0)
    h.writeUInt16BE(CMD.WRITE, 6)
    h.writeUInt32BE(i, 12) // cookie
    h.writeUInt32BE(i * 4096, 20)
    h.writeUInt32BE(4096, 24)
    client.write(Buffer.concat([h, Buffer.alloc(4096, i + 1)]))
  }
  await limitReached
  t.true(serverSock.isPaused(), 'the socket is paused at the limit')
  release()
  const cookies = new Set<number>()
  for (let i = 0; i < n; i++) {
    const r = await read(16)
    t.is(r.readUInt32BE(4), 0, 'no error')
    cookies.add(r.readUInt32BE(12))
  }
  t.is(cookies.size, n, 'every request answered')
  t.false(serverSock.isPaused(), 'reading on')
  t.is((await vol.read(7 * 4096, 1))[0], 8)
  client.end()
  await session
})
