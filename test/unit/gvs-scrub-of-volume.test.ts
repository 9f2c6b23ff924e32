// What `vol info` says of this node's scheduled scrub of one volume (CI: a fold that ran
// after the scrub had checked the volume's copies left them in layers its stack no longer
// reads, and info said "none of its copies checked yet" until the next scrub, a day on).
import test from 'ava'
import { scrubOfVolume } from '../../node/gvs/scrub.ts'

const counts = (objects: number, bad = 0, repaired = 0): { objects: number, bad: number, repaired: number } => ({ objects, bad, repaired })

test('a scrub counts the copies of every layer the volume and its snapshots read, and those folded away since', t => {
  // the volume as CI had it: vol-a, @1 and @3 folded into @5 after the scrub went by (`merged` is not read: the raw stacks hold every layer)
  const v = { id: 'vol-a', layers: ['vol-a@6', 'vol-a@5', 'vol-a@3', 'vol-a@1', 'vol-a'], merged: { 'vol-a': 'vol-a@5', 'vol-a@1': 'vol-a@5', 'vol-a@3': 'vol-a@5' }, snapshots: { s: { name: 's', createdAt: 1, layers: ['vol-a@5', 'vol-a@3', 'vol-a@1', 'vol-a'] } } }
  const report = { layers: { 'vol-a': counts(4), 'vol-a@1': counts(1, 1, 1), 'vol-a@3': counts(1), 'vol-b': counts(9) } }
  t.deepEqual(scrubOfVolume(report, v), counts(6, 1, 1))
  // a snapshot's own layers count too, another volume's not
  t.deepEqual(scrubOfVolume({ layers: { 'vol-a@2': counts(2), 'vol-b': counts(9) } }, { id: 'vol-a', layers: ['vol-a@3'], snapshots: { s: { layers: ['vol-a@2'] } } }), counts(2))
  // a volume of before layers were kept is its id
  t.deepEqual(scrubOfVolume(report, { id: 'vol-b', snapshots: {} }), counts(9))
})

test('a scrub that saw no layer of the volume (made since, or no copy here) did not scrub it', t => {
  t.is(scrubOfVolume({ layers: { 'vol-b': counts(3) } }, { id: 'vol-a', layers: ['vol-a@1', 'vol-a'], snapshots: {} }), null)
  // a layer seen with nothing in it is a scrub of it: none of its copies were here
  t.deepEqual(scrubOfVolume({ layers: { 'vol-a': counts(0) } }, { id: 'vol-a', snapshots: {} }), counts(0))
})
