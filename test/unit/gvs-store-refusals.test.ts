// A node whose volume store refuses requests for a fault of its own (not room) says so
// in its health, and a volume whose requests fail through a node is degraded there
// (bb35: `chattr +i` on a volume's directory, or a damaged epoch file, failed every
// write while the node and the volume said healthy).
import test from 'ava'
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StoreRefusals } from '../../node/gvs/store-refusals.ts'
import { IoFailures } from '../../node/gvs/io-failures.ts'
import { GvsError, fromFsError } from '../../node/gvs/errors.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { silentLogger } from '../../node/log.ts'

const fsError = (code: string): Error => Object.assign(new Error(`${code}: operation refused, open '/d/objects/v/00000001'`), { code })

test('a store fault of its own (read-only, permissions, I/O, a damaged epoch file) is a health problem for a minute; room, races and client errors are not', async t => {
  let now = 1_000_000
  const r = new StoreRefusals('/d', 60_000, () => now)
  r.note(new GvsError('no-space', 'disk full'))
  r.note(fromFsError(fsError('ENOENT'), 'reading object 1'))
  r.note(new GvsError('stale-epoch', 'older writer'))
  r.note(new GvsError('damaged', 'object 1 of "v" block 3 fails its checksum'))
  t.deepEqual(r.problems(), [])
  r.note(fromFsError(fsError('EPERM'), 'creating /d/objects/v/00000001'))
  now += 1000
  // the real epoch file's damage, as the store reports it
  const dir = await mkdtemp(join(tmpdir(), 'gvs-refusals-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await mkdir(join(dir, 'epochs'), { recursive: true })
  await writeFile(join(dir, 'epochs', 'v'), 'garbage')
  const e = await t.throwsAsync(s.write('v', 0, 0, new Uint8Array(1), { epoch: 3 }))
  r.note(e)
  const p = r.problems()
  t.is(p.length, 1)
  t.is(p[0]!.cause, 'store-refusing')
  t.regex(p[0]!.message, /^this node's volume store \(\/d\) failed 2 request\(s\) on its own files since .*, the last: epoch file of volume "v" holds "garbage", not an epoch; check that directory and its disk/)
  now += 61_000
  t.deepEqual(r.problems(), [], 'over a minute after the last')
})

test('the failures of a volume\'s requests through this node are said for its state, until the window ends or a request of that kind succeeds', t => {
  let now = 0
  const f = new IoFailures(60_000, () => now)
  t.is(f.of('t/a'), null)
  f.failed('t/a', 'write', 'Input/output error: could not fence volume /t/a at writer epoch 7 on host2')
  now = 1000
  f.failed('t/a', 'write', 'the same')
  t.is(f.of('t/a'), 'NBD requests through this node failed 2 times since 1970-01-01T00:00:00.000Z, the last a write at 1970-01-01T00:00:01.000Z: the same')
  f.succeeded('t/a', 'write')
  t.is(f.of('t/a'), null)
  f.failed('t/a', 'read', 'x')
  now += 60_001
  t.is(f.of('t/a'), null)
})
