import test from 'ava'
import { planRepair, healthOf, pace } from '../../node/gvs/repair.ts'
import { planAssembly } from '../../node/gvs/assemble.ts'

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

test('planAssembly reads each block from a copy where it is sound, the least damaged copy first, or names the blocks damaged on every copy', t => {
  const copies = [{ node: 'a', bad: [1, 2, 6] }, { node: 'b', bad: [5] }, { node: 'c', bad: [0, 5] }]
  t.deepEqual(planAssembly(copies, 8), { runs: [{ node: 'b', first: 0, count: 5 }, { node: 'a', first: 5, count: 1 }, { node: 'b', first: 6, count: 2 }] })
  t.deepEqual(planAssembly([{ node: 'a', bad: [3, 4] }, { node: 'b', bad: [4] }], 8), { unreadable: [4] })
  t.deepEqual(planAssembly([], 2), { unreadable: [0, 1] })
})
