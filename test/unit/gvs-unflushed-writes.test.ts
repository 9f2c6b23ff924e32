// What a replicated volume's flush does, as data: a node still live and written in this
// placement generation flushes its objects; an object written to a node gone since, or
// in an earlier generation, is settled first; an object keeps the generation of its
// first unflushed write (rv35).
import test from 'ava'
import { eachLimited, planFlush, UnflushedWrites } from '../../node/gvs/unflushed-writes.ts'

test('a flush plan: live nodes of this generation flush, the others\' objects settle first, a writer\'s first flush goes to every node', t => {
  const marks = new UnflushedWrites()
  marks.mark('a', [0, 1], 7)
  marks.mark('b', [1], 7)
  marks.mark('gone', [2], 7)
  marks.mark('b', [3], 6)
  const plan = planFlush(marks.take(), new Set(['a', 'b', 'c']), 7, ['c'])
  t.deepEqual([...plan.flushNow].map(([n, s]) => [n, [...s].sort()]).sort(), [['a', [0, 1]], ['b', [1]], ['c', []]])
  t.deepEqual([...plan.orphaned].sort(), [2, 3])
  t.deepEqual(marks.take(), [], 'taken: the next flush starts empty')
})

test('an object marked again keeps the oldest generation it was written in', t => {
  const marks = new UnflushedWrites()
  marks.mark('a', [4], 3)
  marks.mark('a', [4], 5)
  marks.mark('a', [5], 5)
  marks.mark('a', [5], 2)
  const taken = marks.take()
  t.deepEqual(taken.map(([node, objects]) => [node, [...objects].sort()]), [['a', [[4, 3], [5, 2]]]])
  // the live nodes not known: every node counts as live
  const plan = planFlush([['a', new Map([[4, 5]])]], null, 5)
  t.deepEqual([...plan.flushNow.get('a')!], [4])
})

test('eachLimited runs every item, never more than the limit at once', async t => {
  let running = 0
  let most = 0
  const done: number[] = []
  await eachLimited([1, 2, 3, 4, 5, 6, 7], 3, async i => {
    running++; most = Math.max(most, running)
    await new Promise(resolve => setTimeout(resolve, 5))
    done.push(i); running--
  })
  t.deepEqual(done.sort(), [1, 2, 3, 4, 5, 6, 7])
  t.is(most, 3)
})
