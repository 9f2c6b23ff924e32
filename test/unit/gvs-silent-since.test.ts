// Since when a holder not asked has been silent (node/gvs/silent-since.ts), pure.
import test from 'ava'
import { silentSince, type SilentSinceInput } from '../../node/gvs/silent-since.ts'

const base: SilentSinceInput = { onRoll: true, restarting: false, startedAt: 1_000_000, monoNow: 50_000, wallNow: 2_000_000, grainMs: 5000 }

test('a dead member: its last sign of life on the wall clock, a grain later (never before it; never after now)', t => {
  // last seen 60 s ago on the monotonic clock
  t.is(silentSince({ ...base, member: { state: 'dead', lastSeen: -10_000 } }), 2_000_000 - 60_000 + 5000)
  t.is(silentSince({ ...base, member: { state: 'left', lastSeen: 48_000 } }), 2_000_000, 'seen 2 s ago: now at most')
  t.is(silentSince({ ...base, member: { state: 'dead', lastSeen: 60_000 } }), 2_000_000, 'a lastSeen ahead of the clock counts as now')
})

test('alive, suspect or restarting under its grace: not silent (asked, or due back: waited for as before)', t => {
  t.is(silentSince({ ...base, member: { state: 'alive', lastSeen: 0 } }), undefined)
  t.is(silentSince({ ...base, member: { state: 'suspect', lastSeen: 0 } }), undefined)
  t.is(silentSince({ ...base, restarting: true, member: { state: 'dead', lastSeen: 0 } }), undefined)
})

test('gone from the member table: when it went, if this run saw it go; else, on the roll, since this store started (rv27: the table forgets the dead after 10 min)', t => {
  t.is(silentSince({ ...base, goneAt: 1_500_000 }), 1_500_000)
  t.is(silentSince(base), 1_000_000)
  t.is(silentSince({ ...base, onRoll: false }), undefined, 'not on the roll: not known to be a member that went')
})
