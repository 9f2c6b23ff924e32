// The writer epoch a VM's holder gives its volumes (crdt/placement/volume-epoch.ts):
// always above the volume's current epoch, at least the lease epoch's base, and, for
// two nodes that both took one lease at one epoch, greater for the lease rule's winner.
import test from 'ava'
import { HOLDER_SLOTS, holderSlot, volumeEpoch, winner } from '../../crdt/placement/index.ts'
import type { Lease } from '../../crdt/schema.ts'
import { prng } from '../helpers/prng.ts'

const lease = (holder: string, epoch: number): Lease => ({ vm: 'v', holder, epoch, cpu: 1, memoryBytes: 1, at: 1000, by: holder })
const nodeId = (r: () => number): string => `12D3KooW${Array.from({ length: 8 }, () => 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789'[Math.floor(r() * 58)]).join('')}`

test('property: above the current epoch, with a base of at least the lease epoch', t => {
  const r = prng(7)
  for (let i = 0; i < 2000; i++) {
    const roll = Array.from({ length: 1 + Math.floor(r() * 12) }, () => nodeId(r))
    const holder = roll[Math.floor(r() * roll.length)]!
    const current = r() < 0.3 ? Math.floor(r() * 10) : Math.floor(r() * 1e9)
    const leaseEpoch = 1 + Math.floor(r() * 50)
    const e = volumeEpoch(current, leaseEpoch, holder, roll)
    t.true(e > current, `${e} > ${current} (seed 7, case ${i})`)
    t.true(Math.floor(e / HOLDER_SLOTS) >= leaseEpoch)
    t.true(Number.isSafeInteger(e))
  }
})

test('a volume of the old epoch scheme (small epochs) moves past them', t => {
  t.true(volumeEpoch(7, 1, 'a', ['a', 'b']) > 7)
  t.is(volumeEpoch(0, 1, 'a', ['a']), HOLDER_SLOTS + HOLDER_SLOTS - 1)
})

test('property: two nodes that took one lease at one epoch from one volume epoch: the lease winner writes above the loser', t => {
  const r = prng(11)
  for (let i = 0; i < 2000; i++) {
    const roll = [...new Set(Array.from({ length: 2 + Math.floor(r() * 20) }, () => nodeId(r)))]
    if (roll.length < 2) continue
    const a = roll[Math.floor(r() * roll.length)]!
    let b = a
    while (b === a) b = roll[Math.floor(r() * roll.length)]!
    const current = Math.floor(r() * 1e7)
    const leaseEpoch = 1 + Math.floor(r() * 9)
    const won = winner([lease(a, leaseEpoch), lease(b, leaseEpoch)])!.holder
    const [ea, eb] = [volumeEpoch(current, leaseEpoch, a, roll), volumeEpoch(current, leaseEpoch, b, roll)]
    t.not(ea, eb)
    t.is(ea > eb ? a : b, won, `seed 11, case ${i}`)
  }
})

test('a later lease writes above every writer of an earlier one taken from the same volume epoch', t => {
  const roll = ['n1', 'n2', 'n3']
  const earlier = Math.max(...roll.map(n => volumeEpoch(5000, 4, n, roll)))
  for (const n of roll) t.true(volumeEpoch(earlier, 5, n, roll) > earlier)
  // and a restart on the same node at the same lease epoch still goes up
  const again = volumeEpoch(earlier, 4, 'n3', roll)
  t.true(again > earlier)
})

test('holderSlot: the smaller id the greater slot; duplicates count once; past the slots the last one is shared', t => {
  t.true(holderSlot('a', ['a', 'b', 'c']) > holderSlot('b', ['a', 'b', 'c']))
  t.is(holderSlot('b', ['a', 'a', 'b']), HOLDER_SLOTS - 2)
  t.is(holderSlot('z', ['a', 'b']), HOLDER_SLOTS - 3, 'a holder not on the roll yet ranks among it')
  const big = Array.from({ length: HOLDER_SLOTS + 5 }, (_, i) => `n${String(i).padStart(5, '0')}`)
  t.is(holderSlot(big.at(-1)!, big), 0)
  t.is(holderSlot(big.at(-2)!, big), 0)
})

test('an epoch past the largest safe integer is refused with the reason', t => {
  t.throws(() => volumeEpoch(Number.MAX_SAFE_INTEGER - 10, 1, 'a', ['a']), { instanceOf: RangeError, message: /largest safe integer/ })
})
