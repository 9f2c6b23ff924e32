// A volume with copies on a node whose disk is full is not shown healthy (bb33: vol ls
// and vol info said "healthy" while every write failed for one holder's full disk).
import test from 'ava'
import { fullHolders } from '../../node/gvs/volume-states.ts'

test('the live holders of a volume\'s copies whose disk is full', t => {
  const copies = [{ layer: 'vol-a', objects: new Map([[0, ['a', 'd']], [1, ['b', 'd']]]) }, { layer: 'vol-a@1', objects: new Map([[0, ['c']]]) }]
  const full = new Map([['d', 'the disk of the data dir has 0.0 MiB free'], ['e', 'full too']])
  t.deepEqual(fullHolders(copies, new Set(['a', 'b', 'c', 'd', 'e']), n => full.get(n) ?? null), ['d'], 'e holds no copy of it')
  t.deepEqual(fullHolders(copies, new Set(['a', 'b', 'c']), n => full.get(n) ?? null), [], 'd is not live')
  t.deepEqual(fullHolders([], new Set(['d']), n => full.get(n) ?? null), [])
})
