// Numbers and sizes in the CLI's tables, as people write them.
import test from 'ava'
import { num } from '../../node/cli/format.ts'

test('num: whole numbers as they are, others to two places at most without trailing zeros (bb38: 0.50/2 beside 1/2)', t => {
  t.is(num(2), '2')
  t.is(num(0.5), '0.5')
  t.is(num(0.25), '0.25')
  t.is(num(4 / 3), '1.33')
  t.is(num(0.1 + 0.2), '0.3')
  t.is(num(1.999), '2')
})
