// The node whose disk is full says so in its own health: writes its store refused for
// want of room, from any writer, for a minute after the last.
import test from 'ava'
import { DiskFull } from '../../node/gvs/disk-full.ts'
import { GvsError, fromFsError } from '../../node/gvs/errors.ts'

test('refusals for want of room are a disk-full problem for a minute after the last; other errors are not', t => {
  let now = 1_000_000
  const d = new DiskFull('/var/lib/vgrid/gvs/objects', 60_000, () => now, () => false)
  d.note(new GvsError('io', 'reading object 3: EIO'))
  d.note(new GvsError('stale-epoch', 'epoch 2 < 3'))
  d.note(new Error('ENOSPC but not ours'))
  t.deepEqual(d.problems(), [])
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
  d.note(fromFsError(enospc, 'writing object 5 of "vol-1"'))
  now += 30_000
  d.note(fromFsError(enospc, 'writing object 6 of "vol-1"'))
  const [p] = d.problems()
  t.like(p, { service: 'gvs', cause: 'disk-full', since: new Date(1_000_000).toISOString() })
  t.regex(p!.message, /^this node's volume store \(\/var\/lib\/vgrid\/gvs\/objects\) refused 2 write\(s\) for want of room since .*, the last: writing object 6 of "vol-1": disk full/)
  now += 60_001
  t.deepEqual(d.problems(), [], 'gone a minute after the last')
})

test('with room on the disk again, a refusal 5 s old is over (a tester freed the disk and health said full for a minute)', t => {
  let now = 1_000_000
  let room = false
  const d = new DiskFull('/srv/gvs', 60_000, () => now, () => room)
  d.note(fromFsError(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), 'writing object 5 of "vol-1"'))
  room = true
  now += 1000
  t.is(d.problems().length, 1, 'a refusal just now stands: the room may be the reserve the refusal left')
  now += 4000
  t.deepEqual(d.problems(), [])
  room = false
  t.deepEqual(d.problems(), [], 'and stays over')
})
