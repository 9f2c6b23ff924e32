// The writer epoch a VM's holder gives each of its volumes before the VM starts
// (invariant 3: replicas refuse writes from an epoch older than the newest they have
// seen, so a previous holder that still runs cannot land writes).
//
// Two nodes may both believe they hold one lease: concurrent claims at one epoch that
// neither saw in time (the document took longer than the settle window). Each then
// raises the volume's epoch from the same value; were both to take "current + 1",
// their writes would carry the same epoch and the replicas could not refuse either.
// So a writer epoch is a base times HOLDER_SLOTS plus a slot of the holder, ordered as
// the lease rule orders claims at one epoch (crdt/conflicts.ts `highestEpoch`: the
// smaller holder wins): the smaller holder gets the greater slot. Once the winner has
// fenced, the loser's writes are refused on every replica, whichever fenced first,
// and the loser learns it lost and stops its VM.
// The slot is read from the holder's own id, never from a view of the grid (two nodes
// that claim while the document is slow also see different rolls): node ids are
// Ed25519 peer ids, "12D3KooW" and then base58 digits, whose alphabet is in ASCII order,
// so the three digits after that prefix, as a number, order ids as strings do. Ids
// that agree on those digits (1 in 195,112 for two nodes) share a slot: such a pair
// writes with one epoch, as every pair did before slots.
// A node that restarts a VM under a lease it already took a volume for keeps that
// epoch: raising it would put the loser of a contest above the winner, or a stale
// earlier holder above a later one.

const PREFIX = '12D3KooW'
const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const DIGITS = 3

/** slots per base: a writer epoch is base * HOLDER_SLOTS + slot */
export const HOLDER_SLOTS = ALPHABET.length ** DIGITS

/** the holder's slot: the smaller its id, the greater the slot (0 for an id of another form) */
export function holderSlot (holder: string): number {
  if (!holder.startsWith(PREFIX)) return 0
  let v = 0
  for (let i = 0; i < DIGITS; i++) {
    const d = ALPHABET.indexOf(holder[PREFIX.length + i] ?? '')
    if (d < 0) return 0
    v = v * ALPHABET.length + d
  }
  return HOLDER_SLOTS - 1 - v
}

/**
 * The writer epoch for a volume whose epoch is `current` (0 or absent: never taken),
 * taken by `holder` for a VM whose lease epoch is `leaseEpoch`. When `current` is this
 * holder's own under this lease or a later base (a restart of the VM here), it stays;
 * else it is greater than `current`, with a base of at least the lease epoch. Throws
 * when the epoch would pass the largest safe integer.
 */
export function volumeEpoch (current: number, leaseEpoch: number, holder: string): number {
  const slot = holderSlot(holder)
  if (current % HOLDER_SLOTS === slot && Math.floor(current / HOLDER_SLOTS) >= leaseEpoch) return current
  const base = Math.max(Math.floor(current / HOLDER_SLOTS) + 1, leaseEpoch)
  const epoch = base * HOLDER_SLOTS + slot
  if (!Number.isSafeInteger(epoch)) throw new RangeError(`writer epoch past ${current} for lease epoch ${leaseEpoch} is over the largest safe integer`)
  return epoch
}
