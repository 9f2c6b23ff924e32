// The store on a full disk (tmpfs): an append that does not fit is cut back to the
// last good record, a snapshot that does not fit leaves the old one, and once space
// is back the files read back whole, with no damaged record anywhere.
import test from 'ava'
import { stat } from 'node:fs/promises'
import { StateStore, DiskError } from '../../node/state/store.ts'
import { cannotMount, mountTmpfs, fillDisk, freeDisk } from './fault-helpers.ts'

const skip = await cannotMount()
if (skip != null) console.log(`skipping the store ENOSPC test: ${skip}`)
const maybe = skip == null ? test.serial : test.skip

maybe('a full disk: failed appends and snapshots leave the files as they were', async t => {
  const dir = await mountTmpfs(t, '1m')
  const s = new StateStore(dir)
  await s.read()
  await s.openLog()
  await s.writeSnapshot(new Uint8Array(1000).fill(7))
  const good: number[] = []
  for (let i = 0; i < 5; i++) {
    await s.append(new Uint8Array(3000).fill(i))
    good.push(i)
  }
  const filler = await fillDisk(dir)
  const sizeBefore = (await stat(s.path('log'))).size
  // a record far larger than what is left: it can only fail, and must leave nothing
  for (let i = 0; i < 3; i++) {
    const err = await t.throwsAsync(s.append(new Uint8Array(200_000).fill(9)), { instanceOf: DiskError })
    t.is(err?.reason, 'disk-full')
  }
  t.is((await stat(s.path('log'))).size, sizeBefore, 'the log was cut back to its last good record')
  const snapErr = await t.throwsAsync(s.writeSnapshot(new Uint8Array(300_000).fill(8)), { instanceOf: DiskError })
  t.is(snapErr?.reason, 'disk-full')
  await t.throwsAsync(stat(s.path('snapshot') + '.tmp'), undefined, 'no temporary file left behind')

  await freeDisk(filler)
  await s.append(new Uint8Array(3000).fill(5))
  good.push(5)
  await s.close()
  const back = await new StateStore(dir).read()
  t.deepEqual(back.problems, [])
  t.is(back.snapshot?.length, 1000, 'the old snapshot is still there')
  t.deepEqual(back.records.map(r => r[0]), good)
})
