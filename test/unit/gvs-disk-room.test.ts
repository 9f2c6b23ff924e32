// Room kept on a store's disk (node/gvs/disk-room.ts): object data is refused once it
// would eat into the reserve, so a new writer's epoch can still be recorded on a node
// whose disk the objects filled (one such node refused every writer's fence, grid-wide).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DiskRoom, noRoomWhy, reserveFor, type FsSpace } from '../../node/gvs/disk-room.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { isGvsError } from '../../node/gvs/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 2 ** 20

test('the reserve: 1 % of the file system, at least 1 MiB, at most 64 MiB', t => {
  t.is(reserveFor(10 * MiB), MiB)
  t.is(reserveFor(1000 * MiB), 10 * MiB)
  t.is(reserveFor(2 ** 40), 64 * MiB)
})

test('admits object data down to the reserve, counting what it admitted between readings, then refuses naming the room left', async t => {
  let now = 0
  let free = 20 * MiB
  let asked = 0
  const room = new DiskRoom('/x', { now: () => now, statfs: async (): Promise<FsSpace> => { asked++; return { bavail: free / 4096, bsize: 4096, blocks: 1000 * MiB / 4096 } } })
  // reserve 10 MiB of 1000: 10 MiB may be written
  for (let i = 0; i < 10; i++) await room.admit(MiB, 'w')
  t.is(asked, 1, 'one reading within its time')
  const e = await t.throwsAsync(room.admit(MiB, 'writing object 3 of "v"'))
  t.true(isGvsError(e, 'no-space'))
  t.regex(e!.message, /^writing object 3 of "v": disk full \(10 MiB free on the store's file system, just the 10 MiB object data leaves free for writer epochs and the intent log\)$/)
  // room made: a new reading admits again
  free = 30 * MiB
  now += 500
  await room.admit(MiB, 'w')
  t.is(asked, 2)
})

test('the disk-full message never counts the reserve as part of what is free when less is free', t => {
  // the tester's df showed 0 free: the message said "0 MiB free ..., 4 MiB of it kept"
  t.is(noRoomWhy(0, 4 * MiB, 4 * MiB), 'disk full (nothing free on the store\'s file system; object data stops 4 MiB short of full, kept for writer epochs and the intent log)')
  t.is(noRoomWhy(MiB + MiB / 2, 4 * MiB, 4 * MiB), 'disk full (1.5 MiB free on the store\'s file system, less than the 4 MiB object data leaves free for writer epochs and the intent log)')
  t.is(noRoomWhy(512 * 1024, 4 * MiB, 4 * MiB), 'disk full (512 KiB free on the store\'s file system, less than the 4 MiB object data leaves free for writer epochs and the intent log)')
  t.is(noRoomWhy(7 * MiB, 4 * MiB, 4 * MiB), 'disk full (7 MiB free on the store\'s file system, 4 MiB of it kept for writer epochs and the intent log: 3 MiB left for object data, 4 MiB asked)')
})

test('a store whose disk the objects filled refuses object writes and copies in, and still records a new writer\'s epoch', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-room-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let free = 100 * MiB
  const s = new ObjectStore({ log: silentLogger, statfs: async () => ({ bavail: free / 4096, bsize: 4096, blocks: 1000 * MiB / 4096 }) }, { dir, objectSize: 64 * 1024 })
  await s.start()
  t.teardown(async () => { await s.stop() })
  await s.write('vol-aaaaaaaaaaaa', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1 })
  free = 10 * MiB // at the reserve
  await new Promise(resolve => setTimeout(resolve, 600))
  const w = await t.throwsAsync(s.write('vol-aaaaaaaaaaaa', 1, 0, new Uint8Array(4096), { epoch: 1 }))
  t.true(isGvsError(w, 'no-space'), String(w))
  const p = await t.throwsAsync(s.put('vol-bbbbbbbbbbbb', 0, { data: new Uint8Array(64 * 1024), version: { epoch: 1, seq: 1 } }, { epoch: 1 }))
  t.true(isGvsError(p, 'no-space'), String(p))
  // a new writer of any volume is fenced in here all the same
  await s.fence('vol-aaaaaaaaaaaa', 7)
  await s.fence('vol-cccccccccccc', 3)
  t.is(await s.epoch('vol-aaaaaaaaaaaa'), 7)
  t.is(await s.epoch('vol-cccccccccccc'), 3)
  t.deepEqual([...await s.read('vol-aaaaaaaaaaaa', 0, 0, 2)], [1, 1], 'what it holds still reads')
})
