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
// Slots come from the holder's place in the member roll (sorted node ids), which both
// read from the document; past HOLDER_SLOTS members, the last slot is shared.

/** slots per base: a writer epoch is base * HOLDER_SLOTS + slot */
export const HOLDER_SLOTS = 1024

/** the holder's slot: the smaller its id among the roll's, the greater the slot */
export function holderSlot (holder: string, roll: Iterable<string>): number {
  let rank = 0
  for (const n of new Set(roll)) if (n < holder) rank++
  return HOLDER_SLOTS - 1 - Math.min(rank, HOLDER_SLOTS - 1)
}

/**
 * The writer epoch for a volume whose epoch is `current` (0 or absent: never taken),
 * taken by `holder` for a VM whose lease epoch is `leaseEpoch`: greater than `current`,
 * with a base of at least the lease epoch, so a later lease always writes above an
 * earlier one. Throws when the epoch would pass the largest safe integer.
 */
export function volumeEpoch (current: number, leaseEpoch: number, holder: string, roll: Iterable<string>): number {
  const base = Math.max(Math.floor(current / HOLDER_SLOTS) + 1, leaseEpoch)
  const epoch = base * HOLDER_SLOTS + holderSlot(holder, roll)
  if (!Number.isSafeInteger(epoch)) throw new RangeError(`writer epoch past ${current} for lease epoch ${leaseEpoch} is over the largest safe integer`)
  return epoch
}
