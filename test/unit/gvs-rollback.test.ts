// The plan of `vol rollback` (node/gvs/rollback.ts): the new stack, its size, what it
// drops, and who keeps it from going back. Pure.
import test from 'ava'
import type { Lease, Volume, Vm } from '../../crdt/index.ts'
import { checkRollback, planRollback, rollbackPatch } from '../../node/gvs/rollback.ts'

const snap = (name: string, layers: string[], sizeBytes: number): Volume['snapshots'][string] => ({ name, layers, sizeBytes, createdAt: 1, at: 1, by: 'n1' })
// vol-a: s1 froze [vol-a], s2 froze [@1, vol-a], written on in @2, grown since
const v = {
  id: 'vol-aaaaaaaaaaaa', path: '/a', sizeBytes: 16, replicas: 2, state: 'ready', thin: true, parent: null, epoch: 1,
  layers: ['vol-aaaaaaaaaaaa@2', 'vol-aaaaaaaaaaaa@1', 'vol-aaaaaaaaaaaa'],
  snapshots: { s1: snap('s1', ['vol-aaaaaaaaaaaa'], 8), s2: snap('s2', ['vol-aaaaaaaaaaaa@1', 'vol-aaaaaaaaaaaa'], 12) },
  unsound: { 'vol-aaaaaaaaaaaa@2/3': { node: 'n1', at: 1 }, 'vol-aaaaaaaaaaaa/0': { node: 'n1', at: 1 } }
} as unknown as Volume

test('back to a snapshot: a new top numbered past every layer over its layers, its size; only what nothing reads is dropped', t => {
  const p = planRollback(v, 's1', [v])
  t.deepEqual(p.layers, ['vol-aaaaaaaaaaaa@3', 'vol-aaaaaaaaaaaa'])
  t.is(p.sizeBytes, 8)
  // @1 stays: s2 reads it
  t.deepEqual(p.dropped, ['vol-aaaaaaaaaaaa@2'])
  t.deepEqual(planRollback(v, 's2', [v]).dropped, ['vol-aaaaaaaaaaaa@2'])
  // a clone that reads the old top keeps it: nothing is dropped
  const clone = { ...v, id: 'vol-cccccccccccc', path: '/c', layers: ['vol-cccccccccccc', 'vol-aaaaaaaaaaaa@2', 'vol-aaaaaaaaaaaa@1', 'vol-aaaaaaaaaaaa'], snapshots: {} } as unknown as Volume
  t.deepEqual(planRollback(v, 's1', [v, clone]).dropped, [])
  // the damage recorded in the dropped layer goes with it; the one in a layer still read stays
  t.deepEqual(rollbackPatch(v, planRollback(v, 's1', [v])), { layers: ['vol-aaaaaaaaaaaa@3', 'vol-aaaaaaaaaaaa'], sizeBytes: 8, unsound: { 'vol-aaaaaaaaaaaa/0': { node: 'n1', at: 1 } } })
  t.deepEqual(rollbackPatch({ ...v, unsound: undefined } as unknown as Volume, planRollback(v, 's1', [v])), { layers: ['vol-aaaaaaaaaaaa@3', 'vol-aaaaaaaaaaaa'], sizeBytes: 8 })
})

test('a snapshot it lacks, or no name, is said', t => {
  t.throws(() => planRollback(v, 'nope', [v]), { message: 'volume "/a" has no snapshot "nope" (it has s1, s2)' })
  t.throws(() => planRollback(v, '', [v]), { message: /snapshot must be the name of one of the volume's snapshots/ })
  t.throws(() => planRollback(v, 7, [v]), { message: /snapshot must be the name/ })
})

test('a VM running from it keeps it from going back; a stopped VM\'s disk goes back', t => {
  const vm = (name: string, desired: 'running' | 'stopped'): Vm => ({ id: name, name, desired, spec: { volumes: ['vol-aaaaaaaaaaaa'] } }) as unknown as Vm
  t.throws(() => checkRollback(v, [vm('db', 'running')]), { message: /volume "\/a" is in use by VM "db", whose guest would find its disk changed under it: stop it first/ })
  // stopped, with its lease still running (stopping): it runs until that ends
  t.throws(() => checkRollback(v, [vm('db', 'stopped')], [{ vm: 'db', status: 'stopping' } as unknown as Lease]), { code: 'in-use' } as never)
  t.notThrows(() => checkRollback(v, [vm('db', 'stopped')], [{ vm: 'db', status: 'stopped' } as unknown as Lease]))
  t.throws(() => checkRollback(v, [], [], [{ node: 'n1', name: 'a1', writers: 1 }]), { message: /being written over NBD/ })
})
