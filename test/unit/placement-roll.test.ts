// The member roll (schema 2): added to a schema-1 document by the deterministic
// migration, validated like every object, and synced to agents that start fresh.
import test from 'ava'
import { Replica, syncPair, validateObject, SCHEMA_VERSION, MIGRATIONS } from '../../crdt/index.ts'

const A = '12D3KooWAAAA'
const B = '12D3KooWBBBB'

test('a schema-1 document gains the roll by migration; agents that migrate on their own agree', t => {
  t.is(SCHEMA_VERSION, 2)
  t.deepEqual(MIGRATIONS.map(m => m.to), [2])
  const old1 = Replica.create({ clusterId: 'c', nodeId: A, migrations: [] })
  const old2 = Replica.create({ clusterId: 'c', nodeId: B, migrations: [] })
  old1.change(w => w.setLabel(A, 'x', '1'))
  t.is(old1.schema, 1)
  const up1 = Replica.load({ clusterId: 'c', nodeId: A }, old1.save())
  const up2 = Replica.load({ clusterId: 'c', nodeId: B }, old2.save())
  t.deepEqual(up1.migrate(), [2])
  t.deepEqual(up2.migrate(), [2])
  up1.change(w => w.put('roll', { node: A, name: 'a', joined: 10 }))
  up2.change(w => w.put('roll', { node: B, name: 'b', joined: 11, draining: true }))
  t.is(syncPair(up1, up2).rejected, undefined)
  t.is(up1.structureProblem(), null)
  t.deepEqual(up2.read().list('roll').map(e => [e.node, e.draining ?? false]), [[A, false], [B, true]])
  // a fresh agent of this version gets it all
  const fresh = Replica.create({ clusterId: 'c', nodeId: '12D3KooWCCCC' })
  t.is(syncPair(up1, fresh).rejected, undefined)
  t.is(fresh.read().list('roll').length, 2)
  // an agent still at schema 1 reads the newer document but will not write to it
  t.is(syncPair(old1, up1).rejected, undefined)
  t.true(old1.schemaNewer)
})

test('roll entries and VM specs are validated (bad ones are refused, naming the field)', t => {
  t.is(validateObject('roll', A, { node: A, name: 'a', joined: 1, at: 1, by: A }), null)
  t.regex(validateObject('roll', A, { node: A, name: '', joined: 1, at: 1, by: A }) ?? '', /name/)
  t.regex(validateObject('roll', B, { node: A, name: 'a', joined: 1, at: 1, by: A }) ?? '', /stored under/)
  const vm = { id: 'v', name: 'v', app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: 1024, volumes: [], constraints: {}, command: ['x'], restart: 'always', antiAffinity: 'web' }, at: 1, by: A }
  t.is(validateObject('vms', 'v', vm), null)
  t.regex(validateObject('vms', 'v', { ...vm, spec: { ...vm.spec, memoryBytes: 0 } }) ?? '', /spec\/memoryBytes/)
  t.regex(validateObject('vms', 'v', { ...vm, spec: { ...vm.spec, restart: 'sometimes' } }) ?? '', /spec\/restart/)
  const lease = { vm: 'v', holder: A, epoch: 1, cpu: 1, memoryBytes: 1024, status: 'running', crashes: [1, 2], at: 1, by: A }
  t.is(validateObject('leases', 'v', lease), null)
  t.regex(validateObject('leases', 'v', { ...lease, status: 'dancing' }) ?? '', /status/)
})
