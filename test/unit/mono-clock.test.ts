// The agent's clock for durations (node/service.ts systemClock, protocol/mono-clock.ts)
// does not move when the wall clock is stepped (NTP step, `date -s`); stamps that
// other nodes read still follow the wall clock. The step is faked in this process by
// replacing Date.now, which is what a step changes; performance.now does not see it.
import test from 'ava'
import { monoNow, monoToWall } from '../../protocol/mono-clock.ts'
import { systemClock, wallNow, type Clock } from '../../node/service.ts'
import { settle, takeover } from '../../crdt/placement/index.ts'

const realNow = Date.now
/** steps the wall clock by `ms` for the length of `fn` */
function stepped<T> (ms: number, fn: () => T): T {
  Date.now = () => realNow.call(Date) + ms
  try { return fn() } finally { Date.now = realNow }
}
const TEN_MINUTES = 10 * 60_000

test('at rest it reads as Date.now does (ms since the epoch)', t => {
  const d = Math.abs(monoNow() - Date.now())
  t.true(d < 1000, `${d} ms apart`)
  t.true(Math.abs(systemClock.now() - Date.now()) < 1000)
})

for (const step of [TEN_MINUTES, -TEN_MINUTES]) {
  test(`a wall clock step of ${step / 60_000} min does not move it, and it never goes back`, t => {
    const before = [monoNow(), systemClock.now()]
    const during = stepped(step, () => [monoNow(), systemClock.now()])
    const after = [monoNow(), systemClock.now()]
    for (let i = 0; i < 2; i++) {
      t.true(during[i]! >= before[i]! && after[i]! >= during[i]!, `reading ${i}: ${before[i]}, ${during[i]}, ${after[i]}`)
      t.true(during[i]! - before[i]! < 1000, `reading ${i} moved ${during[i]! - before[i]!} ms`)
    }
  })
}

test('stamps for others follow the wall clock; a fake clock without one serves both', t => {
  t.true(Math.abs(stepped(TEN_MINUTES, () => wallNow(systemClock)) - (Date.now() + TEN_MINUTES)) < 1000)
  const fake: Clock = { now: () => 42 }
  t.is(wallNow(fake), 42)
})

test('a monotonic time shown as wall time after a step says when it happened by the new wall clock', t => {
  const at = monoNow() - 5000 // five seconds ago
  const shown = stepped(TEN_MINUTES, () => monoToWall(at))
  t.true(Math.abs(shown - (Date.now() + TEN_MINUTES - 5000)) < 1000, `${shown}`)
})

test('a step forward right after a holder fell silent neither allows a takeover nor ends a settle window', t => {
  const cfg = { fenceTimeoutMs: 5000, marginMs: 1500 }
  const lastHeard = systemClock.now()
  const claimedAt = systemClock.now()
  const { t1, s1 } = stepped(TEN_MINUTES, () => ({
    t1: takeover({ holderAlive: false, holderLastHeard: lastHeard, now: systemClock.now(), ...cfg }),
    s1: settle({ me: 'a', claims: [{ vm: 'v', holder: 'a', epoch: 1, cpu: 1, memoryBytes: 1, status: 'claimed', at: 1, by: 'a' }], claimedAt, now: systemClock.now(), settleMs: 1500 })
  }))
  t.false(t1.allowed, t1.reason)
  t.true(t1.waitMs > 6000, `${t1.waitMs}`)
  t.is(s1.state, 'waiting')
})

test('its readings are whole ms, as Date.now\'s are (document fields take integers)', t => {
  for (let i = 0; i < 100; i++) t.true(Number.isInteger(monoNow()) && Number.isInteger(systemClock.now()))
})
