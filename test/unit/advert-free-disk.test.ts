// The free disk a node advertises (`vgrid nodes`' DISK FREE, the status pool): its
// capacity less what VMs reserve and what its volume store holds, never more than the
// file system has left. The store's copies were not counted: nodes holding 560 MiB of
// copies said 4.0 GiB free of 4.0 GiB.
import test from 'ava'
import { mkdir, mkdtemp, rm, writeFile, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeOf } from '../../node/resources.ts'
import { StoreUsage, bytesUnder, nextWalkIn } from '../../node/gvs/store-usage.ts'

const MiB = 2 ** 20
const GiB = 2 ** 30

test('free disk: capacity less reserved less what the store holds, at most the room left', t => {
  const cap = { cpu: 4, memoryBytes: 8 * GiB, diskBytes: 4 * GiB }
  const res = { cpu: 1, memoryBytes: GiB, diskBytes: GiB }
  t.deepEqual(freeOf(cap, res), { cpu: 3, memoryBytes: 7 * GiB, diskBytes: 3 * GiB })
  t.is(freeOf(cap, res, { stored: 560 * MiB }).diskBytes, 3 * GiB - 560 * MiB)
  t.is(freeOf(cap, res, { stored: 560 * MiB, room: GiB }).diskBytes, GiB, 'the file system has less left')
  t.is(freeOf(cap, res, { stored: 5 * GiB }).diskBytes, 0, 'never below nothing')
  t.is(freeOf(cap, res, { stored: null, room: null }).diskBytes, 3 * GiB, 'not measured: as before')
})

test('the store\'s usage counts the blocks its files hold (a sparse object what it holds)', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'vgt-usage-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  t.is(await bytesUnder(join(dir, 'absent')), 0)
  const objects = join(dir, 'gvs', 'objects', 'vol-000000000001')
  await mkdir(objects, { recursive: true })
  await writeFile(join(objects, '00000000'), Buffer.alloc(2 * MiB, 1))
  const fh = await open(join(objects, '00000001'), 'w')
  await fh.write(Buffer.alloc(4096, 1), 0, 4096, 4 * MiB - 4096)
  await fh.close()
  let changes = 0
  const usage = new StoreUsage([join(dir, 'gvs'), join(dir, 'gvs-cache')], () => { changes++ })
  t.is(usage.bytes(), null)
  await usage.measure()
  const b = usage.bytes()!
  t.true(b >= 2 * MiB + 4096 && b < 3 * MiB, `${b} bytes: the full object and one block of the sparse one`)
  t.is(changes, 1, 'the first measure is advertised')
  await usage.measure()
  t.is(changes, 1, 'an unchanged one is not')
})

test('a large store is walked less often: at most a twentieth of the time goes to walking', t => {
  t.is(nextWalkIn(30_000, 200), 30_000)
  t.is(nextWalkIn(30_000, 10_000), 200_000)
})
