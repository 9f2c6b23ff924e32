import test from 'ava'
import { validateObject, validateMeta, keyOf, isLabelKey, isLabelValue, labelKey, type Vm } from '../../crdt/schema.ts'
import { canonical, resolve, latestWrite, highestEpoch } from '../../crdt/conflicts.ts'

const NODE = '12D3KooWAbc'

const vm = (extra: Partial<Vm> = {}): Vm => ({
  id: 'web-1',
  name: 'web-1',
  app: 'shop',
  desired: 'running',
  spec: { driver: 'qemu', cpu: 2, memoryBytes: 2 ** 30, volumes: ['web-1-root'], constraints: {} },
  at: 1000,
  by: NODE,
  ...extra
})

test('a valid VM passes; a wrong type, a missing field or a wrong key fails with a path', t => {
  t.is(validateObject('vms', 'web-1', vm()), null)
  t.regex(validateObject('vms', 'web-1', { ...vm(), spec: { ...vm().spec, cpu: 'lots' } }) ?? '', /spec\/cpu/)
  const { desired: _d, ...noDesired } = vm()
  t.regex(validateObject('vms', 'web-1', noDesired) ?? '', /desired/)
  t.regex(validateObject('vms', 'web-2', vm()) ?? '', /stored under "web-2"/)
  t.not(validateObject('vms', 'web-1', 'a string'), null)
  t.not(validateObject('vms', 'web-1', null), null)
  // terminals from a peer: names that can be host names, each once
  t.is(validateObject('vms', 'web-1', { ...vm(), spec: { ...vm().spec, inputs: ['http'], outputs: ['db', 'cache'] } }), null)
  t.regex(validateObject('vms', 'web-1', { ...vm(), spec: { ...vm().spec, outputs: ['db x'] } }) ?? '', /spec\/outputs\/0/)
  t.regex(validateObject('vms', 'web-1', { ...vm(), spec: { ...vm().spec, inputs: ['a', 'a'] } }) ?? '', /spec\/inputs/)
})

test('objects tolerate fields a newer schema may add', t => {
  t.is(validateObject('vms', 'web-1', { ...vm(), gpu: 1 }), null)
})

test('every kind has a schema and a key', t => {
  const stamp = { at: 1, by: NODE }
  t.is(validateObject('apps', 'shop', { id: 'shop', name: 'Shop', desired: 'running', properties: {}, ...stamp }), null)
  t.is(validateObject('leases', 'web-1', { vm: 'web-1', holder: NODE, epoch: 3, cpu: 2, memoryBytes: 1, ...stamp }), null)
  t.not(validateObject('leases', 'web-1', { vm: 'web-1', holder: NODE, epoch: 0, cpu: 2, memoryBytes: 1, ...stamp }), null, 'epochs start at 1')
  t.is(validateObject('volumes', 'db', {
    id: 'db', path: '/apps/shop/db', sizeBytes: 1, replicas: 3, state: 'ready', parent: null,
    snapshots: { s1: { name: 's1', createdAt: 5, ...stamp } }, ...stamp
  }), null)
  t.not(validateObject('volumes', 'db', { id: 'db', path: 'no-slash', sizeBytes: 1, replicas: 3, state: 'ready', parent: null, snapshots: {}, ...stamp }), null)
  t.is(validateObject('connections', 'c1', {
    id: 'c1', app: 'shop', from: { vm: 'lb', terminal: 'out' }, to: { vm: 'web-1', terminal: 'in' }, protocol: 'tcp', port: 80, ...stamp
  }), null)
  t.is(validateObject('nodeLabels', `${NODE}/zone`, { node: NODE, key: 'zone', value: 'a', ...stamp }), null)
  t.is(keyOf('nodeLabels', { node: NODE, key: 'zone', value: 'a' }), labelKey(NODE, 'zone'))
  t.is(keyOf('leases', { vm: 'web-1', holder: NODE, epoch: 1, cpu: 1, memoryBytes: 1 }), 'web-1')
})

test('label keys and values', t => {
  for (const k of ['zone', 'a', 'rack.example.com/row', 'x-1_2']) t.true(isLabelKey(k), k)
  for (const k of ['', '-a', 'a-', 'a b', 'a'.repeat(64), 'ü']) t.false(isLabelKey(k), k)
  t.true(isLabelValue(''))
  t.true(isLabelValue('eu-west 1'))
  t.false(isLabelValue('a\nb'))
  t.false(isLabelValue('x'.repeat(257)))
})

test('meta', t => {
  t.is(validateMeta({ schema: 1, cluster: 'abc' }), null)
  t.not(validateMeta({ schema: 0, cluster: 'abc' }), null)
  t.not(validateMeta({ cluster: 'abc' }), null)
})

test('latest-write: later time wins, then greater node id, then content; order of candidates does not matter', t => {
  const a = { at: 5, by: 'b', v: 1 }
  const b = { at: 6, by: 'a', v: 2 }
  t.true(latestWrite(b, a) > 0)
  t.true(latestWrite({ at: 5, by: 'b' }, { at: 5, by: 'a' }) > 0)
  const v2 = { at: 5, by: 'a', v: 2 }
  const v1 = { at: 5, by: 'a', v: 1 }
  t.true(latestWrite(v2, v1) > 0)
  const labels = [
    { node: 'n', key: 'k', value: 'x', at: 10, by: 'q' },
    { node: 'n', key: 'k', value: 'y', at: 12, by: 'a' },
    { node: 'n', key: 'k', value: 'z', at: 12, by: 'b' }
  ]
  for (const order of [labels, [...labels].reverse(), [labels[1]!, labels[2]!, labels[0]!]]) {
    const r = resolve('nodeLabels', order)!
    t.is(r.value.value, 'z')
    t.is(r.rule, 'latest-write')
    t.true(r.contested)
    t.is(r.candidates, 3)
  }
  t.is(resolve('nodeLabels', [labels[0]!])?.rule, 'single')
  t.is(resolve('nodeLabels', []), undefined)
})

test('highest-epoch: leases go to the greater epoch, then the smaller holder, whatever the clocks say', t => {
  const l = (holder: string, epoch: number, at: number) => ({ vm: 'v', holder, epoch, cpu: 1, memoryBytes: 1, at, by: holder })
  t.true(highestEpoch(l('b', 3, 1), l('a', 2, 999)) > 0)
  t.true(highestEpoch(l('a', 2, 1), l('b', 2, 999)) > 0)
  const r = resolve('leases', [l('b', 2, 999), l('a', 2, 1), l('c', 1, 5000)])!
  t.is(r.value.holder, 'a')
  t.is(r.rule, 'highest-epoch')
})

test('canonical JSON sorts keys at every level', t => {
  t.is(canonical({ b: 1, a: { d: [1, { y: 1, x: 2 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":2,"y":1}]},"b":1}')
})
