// The hybrid logical clock behind `at` stamps.
import test from 'ava'
import { tick, observe, Hlc, MAX_FUTURE_MS } from '../../crdt/hlc.ts'
import { Replica, syncPair } from '../../crdt/index.ts'

test('stamps follow the wall clock and never go back or repeat', t => {
  let s = { last: 0 }
  const stamps: number[] = []
  for (const now of [1000, 1000, 1000, 999, 500, 2000]) {
    const r = tick(s, now)
    s = r.state
    stamps.push(r.at)
  }
  t.deepEqual(stamps, [1000, 1001, 1002, 1003, 1004, 2000])
})

test('a stamp seen from a peer pushes the clock past it, up to the future bound', t => {
  let s = observe({ last: 0 }, 5000, 1000).state
  t.is(tick(s, 1000).at, 5001 > 1000 + MAX_FUTURE_MS ? 1000 + MAX_FUTURE_MS + 1 : 5001)
  const near = observe({ last: 0 }, 1200, 1000)
  t.false(near.clamped)
  t.is(tick(near.state, 1000).at, 1201)
  const far = observe({ last: 0 }, 1000 + 3_600_000, 1000)
  t.true(far.clamped)
  t.is(far.state.last, 1000 + MAX_FUTURE_MS)
  s = observe({ last: 7000 }, 10, 1000).state
  t.is(s.last, 7000, 'an old stamp changes nothing')
  t.is(observe({ last: 3 }, Number.NaN, 1000).state.last, 3)
})

test('a write made after seeing another orders after it, whatever the wall clocks say', t => {
  // b's clock is 400 ms behind a's (within the bound): its stamps would lose on wall time alone
  let aNow = 100_000
  let bNow = 99_600
  const a = Replica.create({ clusterId: 'c', nodeId: 'A', now: () => aNow })
  const b = Replica.create({ clusterId: 'c', nodeId: 'B', now: () => bNow })
  a.change(w => w.setLabel('A', 'k', 'from-a'))
  syncPair(a, b)
  bNow += 10
  b.change(w => w.setLabel('A', 'k', 'from-b'))
  const stampB = b.read().get('nodeLabels', 'A/k')!.value.at
  t.true(stampB > 100_000, `b stamped ${stampB}, after a's 100000`)
  aNow += 10
  syncPair(a, b)
  t.is(a.read().labelsOf('A').k, 'from-b')
  t.is(b.read().labelsOf('A').k, 'from-b')
  // an hour of skew: the stamp is clamped, yet the overwrite still wins everywhere (it
  // replaced the value its writer had seen; only concurrent values are weighed by stamp)
  aNow += 3_600_000
  a.change(w => w.setLabel('A', 'k2', 'fast'))
  syncPair(a, b)
  b.change(w => w.setLabel('A', 'k2', 'slow-but-later'))
  syncPair(a, b)
  t.is(a.read().labelsOf('A').k2, 'slow-but-later')
  t.is(b.read().labelsOf('A').k2, 'slow-but-later')
  // a clock an hour ahead does not drag the others along
  const c = new Hlc(() => 1_000)
  t.true(c.observe(1_000 + 3_600_000))
  t.is(c.clamped, 1)
  t.is(c.tick(), 1_000 + MAX_FUTURE_MS + 1)
})
