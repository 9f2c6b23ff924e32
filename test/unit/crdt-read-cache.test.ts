// The document's read cache (crdt/reader.ts ResolvedCache) keeps an entry for a key read
// and found absent; no later change names a removed VM's key, so those entries stayed
// for good, one per removed object and kind on every agent (a churn of 4 x 353 VMs left
// about 2,000). They are swept once they outnumber the kind's other entries, and a key
// swept or not reads what the document holds.
import test from 'ava'
import { ResolvedCache } from '../../crdt/reader.ts'
import { Replica, type Draft } from '../../crdt/index.ts'

test('absent entries are swept once past 1,024 and the others; present ones stay', t => {
  const c = new ResolvedCache()
  const present = { value: { value: { id: 'kept' }, by: 'n', at: 1 } as never, invalid: 0 }
  for (let i = 0; i < 100; i++) c.set('vms', `kept-${i}`, present, 1)
  for (let i = 0; i < 5000; i++) c.set('vms', `gone-${i}`, { invalid: 0 }, 0)
  const vms = c.kind('vms')
  t.true(vms.size <= 100 + 1025, `${vms.size} entries`)
  for (let i = 0; i < 100; i++) t.is(vms.get(`kept-${i}`), present)
  // an entry that counted invalid values is no plain absence: kept (its reports are not made again)
  c.set('leases', 'bad', { invalid: 1 }, 0)
  for (let i = 0; i < 3000; i++) c.set('leases', `gone-${i}`, { invalid: 0 }, 0)
  t.truthy(c.kind('leases').get('bad'))
  t.true(c.kind('leases').size <= 1026)
})

test('VMs created, removed and read again: the reads stay true, and one made again under a removed id is read', t => {
  let clock = 1_000_000
  const r = Replica.create({ clusterId: 'c0ffee', nodeId: '12D3KooWNodeOne', now: () => clock++ })
  const vm = (id: string): Draft<'vms'> => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: 1 << 20, volumes: [], constraints: {} } })
  for (let round = 0; round < 3; round++) {
    const ids = Array.from({ length: 800 }, (_, i) => `vm-${round}-${i}`)
    r.change(w => { for (const id of ids) w.put('vms', vm(id)) })
    r.change(w => { for (const id of ids) w.remove('vms', id) })
    for (const id of ids) t.is(r.read().get('vms', id), undefined)
  }
  r.change(w => w.put('vms', vm('vm-0-5')))
  t.is(r.read().get('vms', 'vm-0-5')?.value.name, 'vm-0-5')
  t.is(r.read().get('vms', 'vm-1-5'), undefined)
  t.is(r.read().counts().vms, 1)
})
