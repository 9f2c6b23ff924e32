// What `vm ls` says of a VM whose lease says starting (vmRow, pure): why, when its lease
// says (a crash, a fence's kill), the same on every node; nothing for a first claim.
import test from 'ava'
import type { Lease, Vm } from '../../crdt/index.ts'
import { lostVms, vmRow } from '../../node/dvmm/vms.ts'
import type { DocView } from '../../node/dvmm/view.ts'
import type { NodeView } from '../../crdt/placement/index.ts'

const vm: Vm = { id: 'web', name: 'web', app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: 2 ** 30, volumes: [], constraints: {}, command: ['x'] }, at: 1, by: 'a' }
const lease = (l: Partial<Lease>): { winner: Lease, claims: Lease[] } => {
  const w: Lease = { vm: 'web', holder: 'd', epoch: 1, cpu: 1, memoryBytes: 2 ** 30, at: 2, by: 'd', ...l }
  return { winner: w, claims: [w] }
}

test('a VM starting again says why (its lease\'s reason): killed by its node\'s fence, or a crash', t => {
  const fenced = vmRow(vm, lease({ status: 'starting', reason: 'killed: fenced: sees 2 of 4 roll members; it starts again here once this node sees a majority of the grid, unless the majority has taken it over meanwhile' }), n => n)
  t.like(fenced, { state: 'starting', node: 'd', reason: 'killed: fenced: sees 2 of 4 roll members; it starts again here once this node sees a majority of the grid, unless the majority has taken it over meanwhile' })
  t.like(vmRow(vm, lease({ status: 'starting', reason: 'exited (code 1): crash 1 within 24 h, restarting in 1 s' }), n => n), { state: 'starting', reason: 'exited (code 1): crash 1 within 24 h, restarting in 1 s' })
})

test('a first claim, or a VM running, has no reason', t => {
  t.like(vmRow(vm, lease({ status: 'claimed' }), n => n), { state: 'starting', reason: null })
  t.like(vmRow(vm, lease({ status: 'running', reason: 'started by d' }), n => n), { state: 'running', reason: null })
})

test('a VM stopping says what happens meanwhile (a tester saw "stopping" for 10 s with no word)', t => {
  t.like(vmRow({ ...vm, desired: 'stopped' }, lease({ status: 'running' }), n => `node-${n}`), { state: 'stopping', reason: 'asked to stop on node-d: the guest shuts down, or is killed after its node\'s stop grace time (10 s by default)' })
})

test('a VM made again under the name of one removed while its node was away is pending, not the old run: no node, no epoch, not lost (a tester saw the new VM "unknown" on the old node)', t => {
  const again: Vm = { ...vm, created: 200 }
  const old = lease({ status: 'running', made: 100, epoch: 3 })
  t.like(vmRow(again, old, n => n, 'a former VM of this name still holds its lease on d'), { state: 'pending', node: null, epoch: null, reason: 'a former VM of this name still holds its lease on d' })
  const doc: DocView = { vms: new Map([['web', again]]), leases: new Map([['web', old]]), roll: new Map() }
  const nodes: NodeView[] = [{ id: 'd', name: 'd', alive: false, draining: false, capacity: { cpu: 4, memoryBytes: 2 ** 33 }, labels: {} }]
  t.deepEqual(lostVms(doc, nodes), [])
  // the VM it was claimed for: as before
  t.like(vmRow({ ...vm, created: 100 }, old, n => n), { state: 'running', node: 'd', epoch: 3 })
  t.is(lostVms({ ...doc, vms: new Map([['web', { ...vm, created: 100 }]]) }, nodes).length, 1)
})

test('a VM the crash rule (or restart never after a crash) left stopped while it should run is failed; a clean end or a stop on request is stopped (bb51: vm ls --state failed missed them)', t => {
  t.like(vmRow(vm, lease({ status: 'stopped', reason: 'crashed (code 1): 3 crashes within 24 h, left stopped' }), n => n), { state: 'failed', reason: 'crashed (code 1): 3 crashes within 24 h, left stopped' })
  t.is(vmRow(vm, lease({ status: 'stopped', completed: true, reason: 'exited cleanly; restart policy is never' }), n => n).state, 'stopped')
  t.is(vmRow({ ...vm, desired: 'stopped' }, lease({ status: 'stopped', parked: true, reason: 'stopped on request' }), n => n).state, 'stopped')
  t.is(vmRow({ ...vm, desired: 'stopped' }, lease({ status: 'stopped', reason: 'crashed (code 1); restart policy is never' }), n => n).state, 'stopped', 'a crash, then a stop asked: stopped as asked')
})
