// The hybrid logical clock behind `at` stamps.
import test from 'ava'
import { tick, observe, Hlc, MAX_FUTURE_MS } from '../../crdt/hlc.ts'
import { Replica, syncPair, futureOverride, type Lease, type NodeLabel } from '../../crdt/index.ts'

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

test('a concurrent value stamped an hour ahead does not beat one the receiver\'s clock has passed: the receiver settles the contest', t => {
  const T = 1_800_000_000_000
  let right = T
  const fast = Replica.create({ clusterId: 'c', nodeId: 'F', now: () => right + 3_600_000 })
  const ok = Replica.create({ clusterId: 'c', nodeId: 'C', now: () => right })
  syncPair(fast, ok)
  // concurrent: neither has seen the other's write; the correct node writes 10 s later
  fast.change(w => w.setLabel('N', 'k', 'fast'))
  right += 10_000
  ok.change(w => w.setLabel('N', 'k', 'right'))
  syncPair(fast, ok)
  t.is(ok.read().labelsOf('N').k, 'fast', 'the plain rule picks the fast stamp')
  const contests = ok.takeFutureContests()
  t.deepEqual(contests, [{ kind: 'nodeLabels', key: 'N/k' }])
  t.deepEqual(fast.takeFutureContests(), [], 'the fast node sees nothing in its future')
  ok.change(w => { for (const c of contests) t.true(w.settleFuture(c.kind, c.key, right, MAX_FUTURE_MS)) })
  syncPair(fast, ok)
  for (const r of [fast, ok]) {
    t.is(r.read().labelsOf('N').k, 'right', `${r.nodeId}: the write the clock had passed wins`)
    t.false(r.read().get('nodeLabels', 'N/k')!.contested, 'settled: one value left')
  }
  t.deepEqual(ok.takeFutureContests(), [])
})

test('futureOverride: only latest-write kinds, only against a value the clock has passed', t => {
  const now = 1_000_000
  const label = (value: string, at: number): NodeLabel => ({ node: 'N', key: 'k', value, at, by: value })
  t.is(futureOverride('nodeLabels', [label('a', now + 3_600_000)], now, 500), undefined, 'no contest')
  t.is(futureOverride('nodeLabels', [label('a', now + 400), label('b', now - 5)], now, 500), undefined, 'within the bound')
  t.is(futureOverride('nodeLabels', [label('a', now + 3_600_000), label('b', now + 100)], now, 500), undefined, 'nothing the clock has passed')
  t.is(futureOverride('nodeLabels', [label('a', now + 3_600_000), label('b', now - 5), label('c', now - 50)], now, 500)?.value, 'b')
  const lease = (holder: string, epoch: number, at: number): Lease => ({ id: 'l', holder, epoch, at, by: holder } as unknown as Lease)
  t.is(futureOverride('leases', [lease('x', 2, now + 3_600_000), lease('y', 1, now - 5)], now, 500), undefined)
})
