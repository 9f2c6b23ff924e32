// The writer epoch a VM's holder gives its volumes (crdt/placement/volume-epoch.ts):
// above the volume's current epoch with a base of at least the lease epoch, kept for a
// restart under the same lease, and, for two nodes that both took one lease at one
// epoch, greater for the lease rule's winner, whatever either has seen of the grid.
import test from 'ava'
import { HOLDER_SLOTS, holderSlot, volumeEpoch, winner } from '../../crdt/placement/index.ts'
import type { Lease } from '../../crdt/schema.ts'
import { prng } from '../helpers/prng.ts'

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const lease = (holder: string, epoch: number): Lease => ({ vm: 'v', holder, epoch, cpu: 1, memoryBytes: 1, at: 1000, by: holder })
const nodeId = (r: () => number): string => `12D3KooW${Array.from({ length: 44 }, () => B58[Math.floor(r() * 58)]).join('')}`

test('property: above the current epoch, with a base of at least the lease epoch, unless the holder keeps its own', t => {
  const r = prng(7)
  for (let i = 0; i < 2000; i++) {
    const holder = nodeId(r)
    const current = r() < 0.3 ? Math.floor(r() * 10) : Math.floor(r() * 1e12)
    const leaseEpoch = 1 + Math.floor(r() * 50)
    const e = volumeEpoch(current, leaseEpoch, holder)
    const own = current % HOLDER_SLOTS === holderSlot(holder) && Math.floor(current / HOLDER_SLOTS) >= leaseEpoch
    t.true(own ? e === current : e > current, `${e} against ${current} (seed 7, case ${i})`)
    t.true(Math.floor(e / HOLDER_SLOTS) >= leaseEpoch)
    t.is(e % HOLDER_SLOTS, holderSlot(holder))
    t.true(Number.isSafeInteger(e))
  }
})

test('a volume of the old epoch scheme (small epochs) moves past them', t => {
  const a = `12D3KooW${'A'.repeat(44)}`
  t.true(volumeEpoch(7, 1, a) > 7)
  t.is(volumeEpoch(0, 1, a), HOLDER_SLOTS + holderSlot(a))
})

test('property: two nodes that took one lease at one epoch, from any volume epochs either saw: the lease winner writes above the loser', t => {
  const r = prng(11)
  let ties = 0
  for (let i = 0; i < 5000; i++) {
    const [a, b] = [nodeId(r), nodeId(r)]
    // each may have seen another value of the volume's epoch, below this lease's base
    const leaseEpoch = 2 + Math.floor(r() * 9)
    const seen = (): number => Math.floor(r() * (leaseEpoch - 1) * HOLDER_SLOTS)
    const won = winner([lease(a, leaseEpoch), lease(b, leaseEpoch)])!.holder
    const [ea, eb] = [volumeEpoch(seen(), leaseEpoch, a), volumeEpoch(seen(), leaseEpoch, b)]
    // ids that agree on the three digits after the prefix share a slot (and an epoch)
    if (a.slice(8, 11) === b.slice(8, 11)) { t.is(ea, eb); ties++; continue }
    t.is(ea > eb ? a : b, won, `seed 11, case ${i}`)
  }
  t.true(ties < 5)
})

test('a restart under the same lease keeps the epoch: the loser of a contest stays below the winner, an earlier holder below a later one', t => {
  const w = `12D3KooW${'2'.repeat(44)}`
  const l = `12D3KooW${'z'.repeat(44)}`
  t.is(winner([lease(w, 1), lease(l, 1)])!.holder, w)
  const ew = volumeEpoch(5, 1, w)
  const el = volumeEpoch(5, 1, l)
  t.true(ew > el)
  // the loser's VM crashes (its writes are refused) and restarts, reading its own value
  t.is(volumeEpoch(el, 1, l), el, 'kept')
  t.true(volumeEpoch(el, 1, l) < ew)
  // the winner restarts too
  t.is(volumeEpoch(ew, 1, w), ew)
  // a takeover at lease 2 from the loser's value goes above both
  const later = volumeEpoch(el, 2, l)
  t.true(later > ew)
  // the earlier holder, stale, restarting under lease 1 from its own value stays below
  t.true(volumeEpoch(ew, 1, w) < later)
  // another node taking the volume from a holder's value always goes above it
  t.true(volumeEpoch(ew, 1, l) > ew)
})

test('holderSlot: the smaller id the greater slot; ids of another form get 0', t => {
  t.true(holderSlot('12D3KooW1110') > holderSlot('12D3KooW1120'))
  t.true(holderSlot('12D3KooWABCx') > holderSlot('12D3KooWabcx'))
  t.is(holderSlot('12D3KooW111'), HOLDER_SLOTS - 1)
  t.is(holderSlot('12D3KooWzzz'), 0)
  t.is(holderSlot('QmSomethingElse'), 0)
  t.is(holderSlot('12D3KooW1l1'), 0, 'a digit outside base58')
  t.is(HOLDER_SLOTS, 58 ** 3)
})

test('an epoch past the largest safe integer is refused with the reason', t => {
  t.throws(() => volumeEpoch(Number.MAX_SAFE_INTEGER - 10, 1, '12D3KooW111'), { instanceOf: RangeError, message: /largest safe integer/ })
})
