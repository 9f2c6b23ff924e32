// A link made on one node while another removed one of its VMs (bb27: `vm rm s1` and
// `link create c1.o s1.i` at once): the removal took the links it saw, so the new one
// stays, naming a VM that is gone. A VM made again under that name starts with no
// link: the create takes such links with it, as links cannot be made before their VMs.
import test from 'ava'
import { Replica, syncPair, type Draft } from '../../crdt/index.ts'
import { createVmIn, removeVmIn } from '../../node/dvmm/vms.ts'
import { formerVmLinks } from '../../node/lcm/links.ts'

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

test('a link that arrives after its VM was removed and made again carries nothing: it names the former VM (rv33)', t => {
  const x = Replica.create({ clusterId: 'c', nodeId: '12D3KooWXXXX' })
  const y = Replica.create({ clusterId: 'c', nodeId: '12D3KooWYYYY' })
  const sync = (): void => { t.is(syncPair(x, y).rejected, undefined) }
  x.change(w => { createVmIn(w, vm('c1', { outputs: ['o'] })); createVmIn(w, vm('s1', { inputs: ['i'] })) })
  sync()
  // y links to s1 as it has it (the LCM's POST records each end's created); x removes
  // s1 and makes it again before that link reaches it
  const old = y.read().get('vms', 's1')!.value.created!
  y.change(w => { w.put('connections', { ...link('l1'), to: { vm: 's1', terminal: 'i', created: old } }) })
  x.change(w => { removeVmIn(w, 's1') })
  x.change(w => { createVmIn(w, vm('s1', { inputs: ['i'] })) })
  sync()
  const r = x.read()
  const now = r.get('vms', 's1')!.value.created!
  t.not(now, old)
  const links = r.list('connections')
  t.is(links.length, 1, 'the link came after the new VM: still there')
  const created = new Map(r.list('vms').map(v => [v.id, v.created]))
  const { links: kept, skipped } = formerVmLinks(links, v => created.get(v))
  t.deepEqual(kept, [])
  t.regex(skipped[0]!.reason, /^made for a former VM named s1, removed since/)
  // a link made for the VM as it is now, and one from before ends were stamped, count
  t.is(formerVmLinks([{ ...link('l2'), to: { vm: 's1', terminal: 'i', created: now } }, link('l3')], v => created.get(v)).links.length, 2)
})
