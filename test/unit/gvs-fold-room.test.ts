// A deleted snapshot's fold waits for room on its holders (bb33: the fold filled a node's
// disk to 11 MiB free and stuck there, the node's other writes failing).
import test from 'ava'
import { FOLD_RESERVE_MIN, foldRoomShort } from '../../node/gvs/fold-room.ts'

const MiB = 1024 * 1024

test('a fold waits while a holder would be left with less than its reserve, naming it; goes on with room, or with the room not known', t => {
  const holdersOf = (i: number): string[] => i % 2 === 0 ? ['a', 'd'] : ['b', 'd']
  // 100 objects of 4 MiB: d takes all 100 (400 MiB), a and b 50 each
  const room = (free: number) => (n: string) => n === 'd' ? { free, capacity: 800 * MiB } : { free: 10_000 * MiB, capacity: 20_000 * MiB }
  const idx = Array.from({ length: 100 }, (_, i) => i)
  const why = foldRoomShort(idx, holdersOf, 4 * MiB, room(340 * MiB), n => n === 'd' ? 'host4' : n)
  t.regex(why ?? '', /^host4 has 340 MiB free, and folding the layer copies up to 400 MiB of its objects there before the layer's own copies go \(keeping 64 MiB free for writes\): it waits for room there/)
  t.not(foldRoomShort(idx, holdersOf, 4 * MiB, room(400 * MiB + FOLD_RESERVE_MIN - 1)), null, 'one byte short of the reserve still waits')
  t.is(foldRoomShort(idx, holdersOf, 4 * MiB, room(400 * MiB + FOLD_RESERVE_MIN)), null)
  t.is(foldRoomShort(idx, holdersOf, 4 * MiB, () => null), null, 'room not known (an advert without it): the fold goes on')
  t.is(foldRoomShort([], holdersOf, 4 * MiB, room(0)), null, 'nothing to copy')
  // the reserve grows with the disk: 1 % of a 100 GiB disk is 1 GiB
  t.not(foldRoomShort([0], () => ['x'], 4 * MiB, () => ({ free: 1000 * MiB, capacity: 102_400 * MiB })), null)
  // and stays small beside what a fold frees: a 1 TB disk with 40 GB free folds 20 GB of copies (rv38: 5 % held it for ever)
  t.is(foldRoomShort(Array.from({ length: 5000 }, (_, i) => i), () => ['x'], 4 * MiB, () => ({ free: 40_000 * MiB, capacity: 1_000_000 * MiB })), null)
})
