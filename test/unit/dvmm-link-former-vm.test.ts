// A link made on one node while another removed one of its VMs (bb27: `vm rm s1` and
// `link create c1.o s1.i` at once): the removal took the links it saw, so the new one
// stays, naming a VM that is gone. A VM made again under that name starts with no
// link: the create takes such links with it, as links cannot be made before their VMs.
import test from 'ava'
import { Replica, syncPair, type Draft } from '../../crdt/index.ts'
import { createVmIn, removeVmIn } from '../../node/dvmm/vms.ts'

const GiB = 2 ** 30
const vm = (id: string, t: { inputs?: string[], outputs?: string[] }): Draft<'vms'> => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'], ...t } })
const link = (id: string): Draft<'connections'> => ({ id, app: null, from: { vm: 'c1', terminal: 'o' }, to: { vm: 's1', terminal: 'i' }, protocol: 'tcp', port: 80 })

test('a link made concurrently with the removal of its VM does not connect a new VM of that name', t => {
  const x = Replica.create({ clusterId: 'c', nodeId: '12D3KooWXXXX' })
  const y = Replica.create({ clusterId: 'c', nodeId: '12D3KooWYYYY' })
  const sync = (): void => { t.is(syncPair(x, y).rejected, undefined) }
  x.change(w => { createVmIn(w, vm('c1', { outputs: ['o'] })); createVmIn(w, vm('s1', { inputs: ['i'] })) })
  sync()
  // at once: x removes s1 (no link yet), y links c1 to it (s1 still there as y sees it)
  const { result: took } = x.change(w => removeVmIn(w, 's1'))
  t.deepEqual(took, [])
  y.change(w => { w.put('connections', link('l1')) })
  sync()
  t.is(x.read().get('vms', 's1'), undefined)
  t.truthy(x.read().get('connections', 'l1'), 'the link names a VM that is gone')
  // a new VM of that name: made without the former one's link
  y.change(w => { createVmIn(w, vm('s1', { inputs: ['i'] })) })
  sync()
  t.truthy(x.read().get('vms', 's1'))
  t.is(x.read().get('connections', 'l1'), undefined)
  t.is(y.read().list('connections').length, 0)
})
