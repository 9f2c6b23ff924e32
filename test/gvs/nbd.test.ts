// The NBD server against the standard clients, unchanged: qemu-img, qemu-io, nbdinfo,
// nbdcopy. Byte-exact comparisons against files.
import test, { type ExecutionContext } from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, rm, readFile, writeFile, stat, open, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { LocalVolume, type BlockDevice } from '../../node/gvs/block-device.ts'
import { IoFailures } from '../../node/gvs/io-failures.ts'
import { NbdServer, type NbdServerInit } from '../../node/gvs/nbd/server.ts'
import { silentLogger, type Logger } from '../../node/log.ts'
import { GvsError } from '../../node/gvs/errors.ts'
import { NbdClient } from '../helpers/nbd-client.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

async function have (cmd: string): Promise<boolean> {
  try { await run('sh', ['-c', `command -v ${cmd}`]); return true } catch { return false }
}
const tools = await Promise.all(['qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy'].map(have))
const missing = ['qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy'].filter((_, i) => tools[i] !== true)

interface Setup { dir: string, store: ObjectStore, server: NbdServer, sock: string, uri: (name: string) => string, devs: Map<string, BlockDevice>, failures: IoFailures }

async function setup (t: ExecutionContext, opts: { storeDir?: string, init?: Partial<NbdServerInit>, log?: Logger } = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nbd-'))
  const store = new ObjectStore({ log: silentLogger }, { dir: opts.storeDir ?? join(dir, 'store') })
  await store.start()
  const devs = new Map<string, BlockDevice>()
  const sock = join(dir, 'nbd.sock')
  const failures = new IoFailures()
  const server = new NbdServer({ log: opts.log ?? silentLogger, exports: { get: n => devs.get(n), list: () => [...devs.keys()], failed: (n, r, m) => { failures.failed(n, r, m) } } }, { socketPath: sock, ...opts.init })
  await server.start()
  t.teardown(async () => {
    await server.stop()
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, store, server, sock, devs, failures, uri: name => `nbd+unix:///${name}?socket=${sock}` }
}

const skip = (t: ExecutionContext): boolean => {
  if (missing.length === 0) return false
  t.log(`skipped: ${missing.join(', ')} not installed (Debian qemu-utils, libnbd-bin)`)
  t.pass()
  return true
}

test('qemu-img info and nbdinfo see the export; unknown names get a clear error', async t => {
  if (skip(t)) return
  const s = await setup(t)
  s.devs.set('shop-db', new LocalVolume({ store: s.store }, { volume: 'shop-db', size: 96 * MiB, epoch: 1 }))
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', s.uri('shop-db')])).stdout) as { 'virtual-size': number, format: string }
  t.is(info['virtual-size'], 96 * MiB)
  t.is(info.format, 'raw')
  const ni = JSON.parse((await run('nbdinfo', ['--json', s.uri('shop-db')])).stdout) as { exports: Array<Record<string, unknown>> }
  const e = ni.exports[0] ?? {}
  t.is(e['export-size'], 96 * MiB)
  for (const k of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) t.is(e[k], true, k)
  t.is(e.is_read_only, false)
  const list = (await run('nbdinfo', ['--list', `nbd+unix://?socket=${s.sock}`])).stdout
  t.regex(list, /export="shop-db"/)
  const err = await t.throwsAsync(run('nbdinfo', [s.uri('nope')]))
  t.regex(String((err as { stderr?: string }).stderr), /export: nope/)
  const stat1 = await stat(s.sock)
  t.is(stat1.mode & 0o777, 0o660, 'socket mode 0660')
})

test('nbdcopy in both directions is byte-exact; absent objects read as zeros', async t => {
  if (skip(t)) return
  const s = await setup(t)
  const size = 40 * MiB + 12_288 // not a multiple of the object size (sector aligned: qemu's client needs that)
  s.devs.set('vol', new LocalVolume({ store: s.store }, { volume: 'vol', size, epoch: 1 }))
  const src = Buffer.alloc(size)
  randomBytes(10 * MiB).copy(src, 3 * MiB) // sparse around it
  randomBytes(12_288 + MiB).copy(src, 39 * MiB)
  await writeFile(join(s.dir, 'src.raw'), src)
  await run('nbdcopy', [join(s.dir, 'src.raw'), s.uri('vol')])
  await run('nbdcopy', [s.uri('vol'), join(s.dir, 'back.raw')])
  t.true(same(await readFile(join(s.dir, 'back.raw')), src))
  // and through qemu-img convert, as import/export does
  await run('qemu-img', ['convert', '-O', 'qcow2', s.uri('vol'), join(s.dir, 'out.qcow2')])
  await run('qemu-img', ['convert', '-O', 'raw', join(s.dir, 'out.qcow2'), join(s.dir, 'out.raw')])
  t.true(same(await readFile(join(s.dir, 'out.raw')), src))
  t.true(s.server.stats.write > 0 && s.server.stats.read > 0)
})

test('qemu-io: FUA writes, flush, write-zeroes and trim reach the server and read back right', async t => {
  if (skip(t)) return
  const s = await setup(t)
  s.devs.set('v', new LocalVolume({ store: s.store }, { volume: 'v', size: 16 * MiB, epoch: 1 }))
  const out = (await run('qemu-io', ['-f', 'raw', '-t', 'none',
    '-c', 'write -P 0x11 0 8M',
    '-c', 'write -f -P 0xab 1M 64k',
    '-c', 'flush',
    '-c', 'write -z 2M 1M',
    '-c', 'discard 4M 4M',
    '-c', 'write -P 0x5c 12345 1000',
    '-c', 'read -P 0xab 1M 64k',
    '-c', 'read -P 0 2M 1M',
    '-c', 'read -P 0x5c 12345 1000',
    s.uri('v')])).stdout
  t.notRegex(out, /verification failed|error/i, out)
  t.true(s.server.stats.fua >= 1, 'a FUA write arrived')
  t.true(s.server.stats.flush >= 1, 'a flush arrived')
  t.true(s.server.stats.zero >= 1, 'a write-zeroes arrived')
  t.true(s.server.stats.trim >= 1, 'a trim arrived')
  const want = Buffer.alloc(16 * MiB)
  want.fill(0x11, 0, 8 * MiB)
  want.fill(0xab, MiB, MiB + 65536)
  want.fill(0, 2 * MiB, 3 * MiB)
  want.fill(0, 4 * MiB, 8 * MiB)
  want.fill(0x5c, 12345, 13345)
  await run('nbdcopy', [s.uri('v'), join(s.dir, 'all.raw')])
  t.true(same(await readFile(join(s.dir, 'all.raw')), want))
  t.is(s.server.stats.errors, 0)
})

test('a stale writer epoch, a damaged object and a read-only export fail the request, not the session', async t => {
  if (skip(t)) return
  const s = await setup(t)
  await s.store.fence('fenced', 9)
  s.devs.set('fenced', new LocalVolume({ store: s.store }, { volume: 'fenced', size: 8 * MiB, epoch: 8 }))
  const stale = await t.throwsAsync(run('qemu-io', ['-f', 'raw', '-c', 'write 0 4k', s.uri('fenced')]))
  t.regex(String((stale as { stdout?: string }).stdout) + String((stale as { stderr?: string }).stderr), /Operation not permitted/)
  s.devs.set('dmg', new LocalVolume({ store: s.store }, { volume: 'dmg', size: 8 * MiB, epoch: 1 }))
  await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 1M', s.uri('dmg')])
  await s.store.flush()
  const fh = await open(join(s.store.dir, 'objects', 'dmg', '00000000'), 'r+')
  await fh.write(Buffer.from([0x34]), 0, 1, 200_000)
  await fh.close()
  const dmg = await t.throwsAsync(run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x33 196608 64k', s.uri('dmg')]))
  t.regex(String((dmg as { stdout?: string }).stdout) + String((dmg as { stderr?: string }).stderr), /Input\/output error/)
  // the sound part of the same object still reads
  await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x33 0 64k', s.uri('dmg')])
  s.devs.set('ro', new LocalVolume({ store: s.store }, { volume: 'ro', size: 8 * MiB, epoch: 1, readOnly: true }))
  const ro = JSON.parse((await run('nbdinfo', ['--json', s.uri('ro')])).stdout) as { exports: Array<Record<string, unknown>> }
  t.is(ro.exports[0]?.is_read_only, true)
})

test('a session\'s failures alike are logged once a while, with their count, not once a request (bb30: 65 lines for one copy)', async t => {
  const lines: Array<{ msg: string, fields: Record<string, unknown> }> = []
  const log: Logger = { ...silentLogger, warn: (msg: string, fields?: Record<string, unknown>) => { lines.push({ msg, fields: fields ?? {} }) } }
  const s = await setup(t, { log })
  const failing: BlockDevice = { size: 4 * MiB, readOnly: false, read: async (offset: number) => { throw new GvsError('unavailable', `no majority (test), at ${offset}`) }, write: async () => {}, flush: async () => {}, trim: async () => {}, writeZeroes: async () => {} }
  s.devs.set('f', failing)
  const c = await NbdClient.open(s.sock, 'f')
  for (let i = 0; i < 20; i++) await t.throwsAsync(c.read(i * 4096, 4096))
  await c.close()
  // the count is said as the session ends
  for (let i = 0; i < 100 && !lines.some(l => l.msg === 'nbd requests failed as the one before'); i++) await new Promise(resolve => setTimeout(resolve, 50))
  t.is(lines.filter(l => l.msg === 'nbd request failed').length, 1, JSON.stringify(lines))
  t.like(lines.find(l => l.msg === 'nbd requests failed as the one before')?.fields, { requests: 19, last: 'no majority (test), at 77824' })
})

test('a full disk surfaces ENOSPC to the NBD client', async t => {
  if (skip(t)) return
  if (process.getuid?.() !== 0) { t.log('skipped: mounting a tmpfs needs root'); t.pass(); return }
  const mnt = await mkdtemp(join(tmpdir(), 'gvs-nbdfull-'))
  try { await run('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]) } catch (err) {
    await rm(mnt, { recursive: true, force: true }); t.log(`skipped: cannot mount tmpfs: ${String(err)}`); t.pass(); return
  }
  t.teardown(async () => { await run('umount', [mnt]); await rm(mnt, { recursive: true, force: true }) })
  await mkdir(join(mnt, 'store'))
  const s = await setup(t, { storeDir: join(mnt, 'store') })
  s.devs.set('v', new LocalVolume({ store: s.store }, { volume: 'v', size: 64 * MiB, epoch: 1 }))
  await run('qemu-io', ['-f', 'raw', '-c', 'write -f -P 0x77 0 1M', s.uri('v')])
  const full = await t.throwsAsync(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x78 8M 8M', s.uri('v')]))
  t.regex(String((full as { stdout?: string }).stdout) + String((full as { stderr?: string }).stderr), /No space left on device/)
  await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x77 0 1M', s.uri('v')])
  // and the node's health says so
  const [p] = s.failures.problems()
  t.like(p, { service: 'gvs', cause: 'volume-io-failing' })
  t.regex(p?.message ?? '', /\/v: \d+ failed since .*the last a write at \S+: .*disk full/)
})

test('loopback TCP serves root and refuses other users', async t => {
  if (skip(t)) return
  if (process.getuid?.() !== 0) { t.log('skipped: the uid check is tested as root'); t.pass(); return }
  const s = await setup(t, { init: { tcpPort: 0 } })
  s.devs.set('v', new LocalVolume({ store: s.store }, { volume: 'v', size: 4 * MiB, epoch: 1 }))
  const ni = (await run('nbdinfo', ['--size', `nbd://127.0.0.1:${s.server.tcpPort}/v`])).stdout.trim()
  t.is(ni, String(4 * MiB))
  const s2 = await setup(t, { init: { tcpPort: 0, tcpUidAllowed: uid => uid !== 0 } })
  s2.devs.set('v', new LocalVolume({ store: s2.store }, { volume: 'v', size: 4 * MiB, epoch: 1 }))
  await t.throwsAsync(run('nbdinfo', ['--size', `nbd://127.0.0.1:${s2.server.tcpPort}/v`]))
  t.throws(() => new NbdServer({ log: silentLogger, exports: { get: () => undefined, list: () => [] } }, { tcpHost: '0.0.0.0', tcpPort: 0 }), { message: /loopback only/ })
})

test('connections past the server\'s limit are refused at once; a client that keeps its socket open after ABORT does not hold up stop', async t => {
  const s = await setup(t, { init: { maxSessions: 1 } })
  const { connect } = await import('node:net')
  const open = async (allowHalfOpen: boolean): Promise<import('node:net').Socket> => await new Promise((resolve, reject) => { const c = connect({ path: s.sock, allowHalfOpen }, () => { resolve(c) }).once('error', reject) })
  const first = await open(true)
  first.on('data', () => {})
  await new Promise(resolve => setTimeout(resolve, 100))
  const second = await open(false)
  const closed = await new Promise<boolean>(resolve => { second.once('close', () => { resolve(true) }); second.resume(); setTimeout(() => { resolve(false) }, 2000) })
  t.true(closed, 'the second connection is closed by the server')
  // ABORT, and the client keeps its end open: stop() is not held up by it
  const abort = Buffer.alloc(20)
  abort.writeBigUInt64BE(0x49484156454f5054n, 4)
  abort.writeUInt32BE(2, 12)
  abort.writeUInt32BE(3, 0)
  first.write(abort)
  await new Promise(resolve => setTimeout(resolve, 100))
  const t0 = Date.now()
  await s.server.stop()
  t.true(Date.now() - t0 < 2000, `stop took ${Date.now() - t0} ms`)
  first.destroy()
  second.destroy()
})
