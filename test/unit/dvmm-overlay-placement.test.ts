// A node whose overlay is down says so in its advert, and placement puts it last for
// VMs with connections (a tester's drain moved a linked VM onto such a node: its link
// carried nothing, and every other node said ok). It is not excluded: a link between
// two VMs of one node needs no tunnel, and a grid of one node has no other.
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

const doc: DocView = { vms: new Map(), leases: new Map(), roll: new Map() }
const DOWN = 'WireGuard cannot start: Address already in use'

test('a qemu VM with volumes and neither kernel nor image boots from a volume, and needs an agent that can (rv36)', t => {
  const q = (spec: Record<string, unknown>): Vm => ({ ...vm('q'), spec: { ...vm('q').spec, driver: 'qemu', ...spec } } as unknown as Vm)
  t.true(demandOf(q({ volumes: ['v1'] })).volumeBoot)
  t.is(demandOf(q({ volumes: ['v1'], kernel: '/k' })).volumeBoot, undefined)
  t.is(demandOf(q({ volumes: ['v1'], image: '/i' })).volumeBoot, undefined)
  t.is(demandOf(vm('p')).volumeBoot, undefined)
})

test('a VM with terminals needs the overlay; one without does not', t => {
  t.is(demandOf(vm('plain')).links, undefined)
  t.true(demandOf(vm('srv', { inputs: ['in'] })).links)
  t.true(demandOf(vm('cli', { outputs: ['db'] })).links)
})

test('a node whose overlay is down is the last choice for a linked VM, saying why, and a choice like any for the others', t => {
  const nodes = nodeViews(doc, new Map([['a', member('a', DOWN)], ['b', member('b')], ['c', member('c')]]), () => ({}), 'b')
  t.is(nodes.find(n => n.id === 'a')?.overlayDown, DOWN)
  t.is(nodes.find(n => n.id === 'b')?.overlayDown, undefined)
  // each strategy, many VMs: never a first, always the last
  for (const strategy of ['binpack', 'spread'] as const) {
    for (let i = 0; i < 20; i++) {
      const r = rank(demandOf(vm(`srv${i}`, { inputs: ['in'] })), nodes, usageOf([]), { strategy })
      t.not(r.best, 'a')
      t.is(r.nodes.at(-1)?.node, 'a')
      t.regex(r.nodes.at(-1)?.why ?? '', /its overlay is down \(WireGuard cannot start: Address already in use\): the last choice for a VM with connections/)
    }
  }
  const plain = [...Array(20).keys()].map(i => rank(demandOf(vm(`p${i}`)), nodes, usageOf([]), { strategy: 'spread' }).best)
  t.true(plain.includes('a'), 'VMs without connections still go there')
})

test('a grid whose only node has its overlay down still places a linked VM there (links between its own VMs work)', t => {
  const nodes = nodeViews(doc, new Map([['a', member('a', DOWN)]]), () => ({}), 'a')
  t.is(rank(demandOf(vm('srv', { inputs: ['in'] })), nodes, usageOf([]), { strategy: 'binpack' }).best, 'a')
})

test('a node is said cut only from members alive: one it did not reach that has since left reaches nobody (bb31: the node stayed the last choice, and an anti-affinity group piled elsewhere)', t => {
  const cut = (id: string, unreached: string[]): Member => { const m = member(id); return { ...m, advert: { ...m.advert, unreached } } as unknown as Member }
  const left = { ...member('a'), state: 'left' } as unknown as Member
  const nodes = nodeViews(doc, new Map([['a', left], ['b', cut('b', ['c'])], ['c', cut('c', ['a'])]]), () => ({}), 'b')
  t.deepEqual(nodes.find(n => n.id === 'b')?.unreached, ['c'], 'b does not reach c, alive')
  t.is(nodes.find(n => n.id === 'c')?.unreached, undefined, 'c did not reach a, which left')
})
