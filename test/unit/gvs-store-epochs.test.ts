// A writer's epoch below one a store is recording (a newer writer taking over) is
// rejected: the recorded epoch's writer must not land writes meanwhile (invariant 3).
import test from 'ava'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

test('an epoch below one being recorded is rejected, also one equal to the recorded epoch', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await s.fence('v', 5)
  const newer = s.fence('v', 8) // being recorded (written and fsynced) below
  const e = await t.throwsAsync(s.write('v', 0, 0, new Uint8Array([1]), { epoch: 5 }))
  t.true(isGvsError(e, 'stale-epoch'), String(e))
  await newer
  t.is(await s.epoch('v'), 8)
  // a copy only learns: not refused
  await s.fence('v', 5, { learnOnly: true })
})

test('a top layer a snapshot made starts from the epoch of the layers under it: a writer fenced there before the snapshot stays refused', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await s.fence('vol-a', 7)
  // the volume snapshotted twice since: its writer now writes vol-a@2
  const e = await t.throwsAsync(s.write('vol-a@2', 0, 0, new Uint8Array([1]), { epoch: 6 }))
  t.true(isGvsError(e, 'stale-epoch'), String(e))
  await s.write('vol-a@2', 0, 0, new Uint8Array([1]), { epoch: 7 })
  await s.fence('vol-a@2', 9)
  t.is(await s.epoch('vol-a@2'), 9)
  t.true(isGvsError(await t.throwsAsync(s.write('vol-a@2', 0, 0, new Uint8Array([1]), { epoch: 8 })), 'stale-epoch'))
  // a clone's snapshot layer ("C@3" over "C", its source's layers below) walks down to the clone only
  await s.fence('vol-src', 20)
  await s.write('vol-c@3', 0, 0, new Uint8Array([1]), { epoch: 1 })
  t.is(await s.epoch('vol-c@3'), 1)
  // a deposed writer reached the new top layer first (it recorded 10 there); the fence at 11 went to the layer under it
  await s.write('vol-b@2', 0, 0, new Uint8Array([1]), { epoch: 10 })
  await s.fence('vol-b@1', 11)
  t.true(isGvsError(await t.throwsAsync(s.write('vol-b@2', 0, 0, new Uint8Array([1]), { epoch: 10 })), 'stale-epoch'), 'the highest epoch over the layers counts')
  // a copy only learns, whatever the layers under it say
  await s.fence('vol-a@5', 2, { learnOnly: true })
})

test('a writer fenced on a layer stays refused on a layer numbered any distance above it, also after a restart', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  await s.fence('vol-d@3', 12)
  // 1,000 snapshots since (layer numbers grow on past folded ones): its deposed writer, silent since, comes back
  t.true(isGvsError(await t.throwsAsync(s.write('vol-d@1003', 0, 0, new Uint8Array([1]), { epoch: 11 })), 'stale-epoch'))
  t.is(await s.epoch('vol-d@2'), 0, 'a layer below the fence is not raised')
  await s.stop()
  s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  t.true(isGvsError(await t.throwsAsync(s.write('vol-d@1003', 0, 0, new Uint8Array([1]), { epoch: 11 })), 'stale-epoch'), 'read back from the epoch files')
  await s.write('vol-d@1003', 0, 0, new Uint8Array([1]), { epoch: 12 })
  // the line's files are its own: vol-dd is another volume
  await s.write('vol-dd@1003', 0, 0, new Uint8Array([1]), { epoch: 1 })
})

test('a layer freed (folded away, on a node the fold reached or not) leaves its epoch to the layers above it, also after a restart', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-store-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  for (const taught of [true, false]) {
    const v = taught ? 'vol-t' : 'vol-u'
    await s.write(`${v}@1`, 0, 0, new Uint8Array([1]), { epoch: 4 }) // writer A
    await s.fence(`${v}@1`, 5) // B takes over while @1 is the top
    // two snapshots since; B writes on (its epoch is recorded on neither: the layer under has it)
    await s.write(`${v}@2`, 0, 0, new Uint8Array([2]), { epoch: 5 })
    await s.write(`${v}@3`, 0, 0, new Uint8Array([3]), { epoch: 5 })
    // snapshot 1 deleted: @1 folded into @2 (the fold teaches @2 its epoch, where it reaches) and freed
    if (taught) await s.fence(`${v}@2`, await s.epoch(`${v}@1`), { learnOnly: true })
    await s.removeVolume(`${v}@1`)
    t.true(isGvsError(await t.throwsAsync(s.write(`${v}@3`, 0, 0, new Uint8Array([9]), { epoch: 4 })), 'stale-epoch'), `A refused on the top (fold ${taught ? 'taught' : 'missed'})`)
  }
  await s.stop()
  s = new ObjectStore({ log: silentLogger }, { dir })
  await s.start()
  t.teardown(async () => { await s.stop() })
  t.true(isGvsError(await t.throwsAsync(s.write('vol-u@3', 0, 0, new Uint8Array([9]), { epoch: 4 })), 'stale-epoch'), 'after a restart')
  // the volume destroyed: its layers freed, then its line
  for (const l of await s.volumes()) if (l.startsWith('vol-u')) await s.removeVolume(l)
  await s.forgetLine('vol-u')
  t.deepEqual((await readdir(join(dir, 'epochs'))).filter(f => f.startsWith('vol-u')), [], 'nothing of it left')
})

test('an epoch file that is not digits is damaged, not "no epoch seen": an emptied one would let any writer in', async t => {
  const { WriterEpochs } = await import('../../node/gvs/epochs.ts')
  const { writeFile } = await import('node:fs/promises')
  const dir = await mkdtemp(join(tmpdir(), 'gvs-epochs-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  for (const [i, text] of ['', '\n', '   ', '0x10', '1e3', '\0\0', '-1', '7 8'].entries()) {
    await writeFile(join(dir, `v${i}`), text)
    const e = await t.throwsAsync(new WriterEpochs(dir).get(`v${i}`))
    t.true(isGvsError(e, 'damaged'), `${JSON.stringify(text)}: ${String(e)}`)
  }
  // the operator is told, once per volume, naming the file
  const told: string[] = []
  const epochs = new WriterEpochs(dir, (volume, file, why) => { told.push(`${volume} ${file} ${why}`) })
  for (let k = 0; k < 3; k++) await t.throwsAsync(epochs.get('v3'))
  t.deepEqual(told, [`v3 ${join(dir, 'v3')} holds "0x10", not an epoch`])
  await writeFile(join(dir, 'ok'), '7\n')
  t.is(await new WriterEpochs(dir).get('ok'), 7)
  await t.throwsAsync(new WriterEpochs(dir).admit('ok', 3, false))
})
