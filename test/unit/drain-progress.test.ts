// `vgrid node drain --wait`'s progress (node/dvmm/cli.ts, drainProgress), pure: what
// is still on the node, where each VM that was on it went, and when the drain is done
// (nothing on the node, nothing on its way; a VM that fits nowhere stays pending).
import test from 'ava'
import { drainProgress, historyLine } from '../../node/dvmm/cli.ts'
import type { VmRow } from '../../node/dvmm/index.ts'

const row = (name: string, nodeId: string | null, state: VmRow['state'], reason: string | null = null): VmRow =>
  ({ id: name, name, app: null, desired: 'running', state, node: nodeId == null ? null : `name-${nodeId}`, nodeId, epoch: nodeId == null ? null : 1, cpu: 1, memoryBytes: 1, driver: 'process', reason })

test('drain progress: on the node, on its way, moved, stranded', t => {
  const initial = ['a', 'b']
  let p = drainProgress('n1', [row('a', 'n1', 'stopping'), row('b', 'n1', 'running'), row('c', 'n2', 'running')], initial)
  t.deepEqual(p, { on: ['a', 'b'], moved: {}, done: false, stranded: [], moving: [] })
  p = drainProgress('n1', [row('a', null, 'pending', 'waiting for a claim to settle'), row('b', 'n1', 'running')], initial)
  t.deepEqual(p.moved, { a: 'pending (waiting for a claim to settle)' })
  t.false(p.done)
  p = drainProgress('n1', [row('a', 'n2', 'starting'), row('b', 'n3', 'running')], initial)
  t.deepEqual(p, { on: [], moved: { a: 'starting on name-n2', b: 'running on name-n3' }, done: false, stranded: [], moving: ['a'] }, 'a is still starting (what a timeout names: bb20 read "still 0 VM(s) on it: ")')
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', null, 'pending', 'no node fits (2 lack cpu); e.g. n2: ...')], initial)
  t.true(p.done, 'a VM that fits nowhere ends the wait, pending with its reason')
  t.is(p.moved.b, 'pending (no node fits (2 lack cpu); e.g. n2: ...)')
  t.deepEqual(p.stranded, ['b'], 'and it is stranded: it runs nowhere')
  t.deepEqual(drainProgress('n1', [row('b', 'n2', 'running')], initial).moved, { a: 'removed', b: 'running on name-n2' })
  // moved to a node that then died: on its way while it can move on, stranded when nothing fits it
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', 'n3', 'unknown', 'its node h3 is not alive; it moves once that node\'s fence timeout has passed')], initial)
  t.false(p.done)
  p = drainProgress('n1', [row('a', 'n2', 'running'), row('b', 'n3', 'unknown', 'its node h3 is not alive; no other node fits it: no node fits (2 lack cpu)')], initial)
  t.true(p.done)
  t.deepEqual(p.stranded, ['b'])
})

test('drain progress: a stopped or failed VM whose lease the node holds is not on it (it runs nothing and is placed anew when started)', t => {
  const p = drainProgress('n1', [row('a', 'n1', 'failed', '3 crashes within 24 h'), row('b', 'n1', 'stopped'), row('c', 'n2', 'running')], ['c'])
  t.deepEqual(p.on, [])
  t.true(p.done)
  // one that stopped there after the drain began counts as moved: it is stopped
  t.deepEqual(drainProgress('n1', [row('a', 'n1', 'stopped')], ['a']), { on: [], moved: { a: 'stopped on name-n1' }, done: true, stranded: [], moving: [] })
})

test('vm show\'s history line says a stop\'s node once, not again from the lease\'s reason', t => {
  t.is(historyLine({ at: 'T', event: 'stopped', node: 'h2', detail: 'stopped on h2: desired stopped' }), 'T  stopped on h2: desired stopped')
  t.is(historyLine({ at: 'T', event: 'failed-over', node: 'h3', epoch: 2, detail: 'from h1' }), 'T  failed-over on h3 (epoch 2): from h1')
  t.is(historyLine({ at: 'T', event: 'started', node: 'h3', clockMs: 90_000 }), 'T  started on h3  [h3\'s clock runs 90.0 s ahead: shown in this node\'s time]')
  t.is(historyLine({ at: 'T', event: 'killed', node: 'h1', local: true }), 'T  killed on h1  [seen by this node only]')
})
