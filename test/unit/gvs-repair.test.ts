import test from 'ava'
import { planRepair, healthOf, pace } from '../../node/gvs/repair.ts'

test('planRepair copies missing holders from holders first, lists surplus, lost and short objects', t => {
  const inv = new Map<number, string[]>([[0, ['a', 'b']], [1, ['a', 'x']], [2, []], [3, ['c']]])
  const want: Record<number, string[]> = { 0: ['a', 'b'], 1: ['a', 'c'], 2: ['a', 'b'], 3: ['c'] }
  const plan = planRepair(inv, i => want[i] ?? [], 2)
  t.deepEqual(plan.copies.map(c => [c.index, c.to, c.from]), [[1, 'c', ['a', 'x']]])
  t.regex(plan.copies[0]?.why ?? '', /belongs on c by placement/)
  t.deepEqual(plan.surplus, [{ index: 1, node: 'x' }])
  t.deepEqual(plan.lost, [2])
  t.deepEqual(plan.short, [3])
  t.is(healthOf(plan, false), 'degraded')
  t.is(healthOf(plan, true), 'repairing')
  t.is(healthOf(planRepair(new Map([[0, ['a', 'b']]]), () => ['b', 'a'], 2), false), 'healthy')
})

test('pace keeps copying at or under the rate', t => {
  t.is(pace(0, 1e6, 0), 0)
  t.is(pace(2e6, 1e6, 500), 1500)
  t.is(pace(2e6, 1e6, 5000), 0)
  t.is(pace(1e9, 0, 0), 0, 'no cap')
})
