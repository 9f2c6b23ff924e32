// A node whose overlay is down says so in its advert, and placement keeps VMs with
// connections off it (a tester's drain moved a linked VM onto such a node: its link
// carried nothing, and every other node said ok).
import test from 'ava'
import type { Member } from '../../protocol/membership.ts'
import type { Vm } from '../../crdt/index.ts'
import { demandOf, nodeViews, type DocView } from '../../node/dvmm/view.ts'
import { rank, usageOf } from '../../crdt/placement/index.ts'

const member = (id: string, overlayDown?: string): Member => ({
  nodeId: id,
  state: 'alive',
  since: 0,
  lastSeen: 0,
  version: { incarnation: 1, seq: 1 },
  advert: { name: id, capacity: { cpu: 4, memoryBytes: 2 ** 33, diskBytes: 0 }, labels: {}, ...(overlayDown != null ? { overlayDown } : {}) }
} as unknown as Member)

const vm = (id: string, terminals: { inputs?: string[], outputs?: string[] } = {}): Vm => ({
  id, name: id, app: null, desired: 'running', created: 1, at: 1, by: 'x',
  spec: { driver: 'process', cpu: 1, memoryBytes: 2 ** 28, volumes: [], constraints: {}, ...terminals }
} as unknown as Vm)

test('a VM with terminals needs the overlay; one without does not', t => {
  t.is(demandOf(vm('plain')).links, undefined)
  t.true(demandOf(vm('srv', { inputs: ['in'] })).links)
  t.true(demandOf(vm('cli', { outputs: ['db'] })).links)
})

test('the node whose overlay is down is filtered for a linked VM, with why, and kept for the others', t => {
  const doc: DocView = { vms: new Map(), leases: new Map(), roll: new Map() }
  const members = new Map([['a', member('a', 'WireGuard cannot start: Address already in use')], ['b', member('b')]])
  const nodes = nodeViews(doc, members, () => ({}), 'b')
  t.is(nodes.find(n => n.id === 'a')?.overlayDown, 'WireGuard cannot start: Address already in use')
  t.is(nodes.find(n => n.id === 'b')?.overlayDown, undefined)
  const linked = rank(demandOf(vm('srv', { inputs: ['in'] })), nodes, usageOf([]), { strategy: 'binpack' })
  t.deepEqual(linked.nodes.filter(e => e.filtered != null).map(e => [e.node, e.filtered?.check]), [['a', 'overlay']])
  t.is(linked.best, 'b')
  const plain = rank(demandOf(vm('plain')), nodes, usageOf([]), { strategy: 'binpack' })
  t.is(plain.nodes.filter(e => e.filtered != null).length, 0)
})
