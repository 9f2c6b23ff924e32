import test from 'ava'
import { RollMemory } from '../../node/membership/roll-memory.ts'

test('a member whose roll entry has not arrived yet is not forgotten; one taken off the roll is', t => {
  const m = new RollMemory()
  // h2 joined and was killed before its roll entry reached this agent (CI: it vanished from `vgrid nodes`)
  t.false(m.forgotten('h2', [{ node: 'h1' }]))
  m.note([{ node: 'h1' }, { node: 'h2' }])
  t.false(m.forgotten('h2', [{ node: 'h1' }, { node: 'h2' }]))
  // vgrid node forget h2
  t.true(m.forgotten('h2', [{ node: 'h1' }]))
  // back on the roll (it rejoined): shown again
  t.false(m.forgotten('h2', [{ node: 'h1' }, { node: 'h2' }]))
})

test('an entry seen only at the moment of the question counts as seen', t => {
  const m = new RollMemory()
  t.false(m.forgotten('h3', [{ node: 'h3' }]))
  t.true(m.forgotten('h3', []))
})
