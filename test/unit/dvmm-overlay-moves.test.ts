// A node whose overlay stays down moves its running VMs with connections to a node
// whose overlay is up (node/dvmm/overlay-moves.ts, through decide): after the wait,
// only those, only where another node ranks best, never without a majority; and the
// ranking then places them elsewhere (this node last). Every other node's health says so.
import test from 'ava'
import { decide, type DecideInput } from '../../node/dvmm/decide.ts'
import { OVERLAY_MOVE_AFTER_MS } from '../../node/dvmm/overlay-moves.ts'
import type { DocView, LeaseView } from '../../node/dvmm/view.ts'
import type { Lease, RollEntry, Vm } from '../../crdt/index.ts'
import { fenced, type NodeView } from '../../crdt/placement/index.ts'
import { parkedLease } from '../../node/dvmm/run-steps.ts'
import { membersOverlayDown } from '../../node/lcm/health.ts'
import type { Member } from '../../protocol/membership.ts'

const GiB = 2 ** 30
const [A, B, C] = ['nodeA', 'nodeB', 'nodeC']
const DOWN = 'WireGuard cannot start: Address already in use'
const linked = (id: string, cpu = 1): Vm => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'], inputs: ['in'] }, at: 1, by: A } as unknown as Vm)
const plain = (id: string): Vm => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] }, at: 1, by: A })
const held = (v: string, holder = A): LeaseView => { const l: Lease = { vm: v, holder, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running', at: 1, by: holder }; return { winner: l, claims: [l] } }
const roll = (id: string): RollEntry => ({ node: id, name: id, joined: 1, draining: false, at: 1, by: id })
const node = (id: string, extra: Partial<NodeView> = {}): NodeView => ({ id, name: id, alive: true, draining: false, capacity: { cpu: 4, memoryBytes: 8 * GiB }, labels: {}, ...extra })
const majority = fenced({ rollSize: 3, aliveSeen: 3, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 })
const NOW = 100_000

function input (vms: Vm[], over: Partial<DecideInput> = {}): DecideInput {
  const doc: DocView = { vms: new Map(vms.map(v => [v.id, v])), leases: new Map(vms.map(v => [v.id, held(v.id)])), roll: new Map([A, B, C].map(n => [n, roll(n)])) }
  return {
    me: A, now: NOW, doc, nodes: [node(A, { overlayDown: DOWN }), node(B), node(C)],
    holderAlive: () => true, lastHeard: () => 0, fence: majority,
    runs: new Set(vms.map(v => v.id)), busy: new Set(), claimedAt: new Map(), conflictSeenAt: new Map(), unplacedSince: new Map(),
    capacity: { cpu: 4, memoryBytes: 8 * GiB },
    overlay: { why: DOWN, since: NOW - OVERLAY_MOVE_AFTER_MS },
    cfg: { settleMs: 1000, fenceTimeoutMs: 5000, takeoverMarginMs: 1000, strategy: 'spread' },
    ...over
  }
}

test('once the overlay has been down long enough, the VMs with connections stop here, saying why; the others stay', t => {
  const d = decide(input([linked('web'), plain('batch')]))
  t.deepEqual(d.stop.map(s => s.vm), ['web'])
  t.regex(d.stop[0]!.why, /^this node's overlay has been down for 30 s \(WireGuard cannot start: Address already in use\): its connections carry nothing here; moved to a node whose overlay is up \(node[BC] ranks best\)$/)
  t.deepEqual(d.kill, [])
})

test('before the wait is over nothing moves, and the step wakes when it is', t => {
  const d = decide(input([linked('web')], { overlay: { why: DOWN, since: NOW - 10_000 } }))
  t.deepEqual(d.stop, [])
  t.is(d.wakeInMs, OVERLAY_MOVE_AFTER_MS - 10_000)
  t.deepEqual(decide(input([linked('web')], { cfg: { settleMs: 1000, fenceTimeoutMs: 5000, takeoverMarginMs: 1000, strategy: 'spread', overlayMoveAfterMs: 5000 }, overlay: { why: DOWN, since: NOW - 10_000 } })).stop.map(s => s.vm), ['web'], 'the wait is a setting')
})

test('nothing moves with the overlay up, without a majority, while the advert does not say it, or to nowhere better', t => {
  t.deepEqual(decide(input([linked('web')], { overlay: null })).stop, [], 'overlay up')
  const noMajority = fenced({ rollSize: 3, aliveSeen: 1, lastMajorityAt: NOW - 1000, now: NOW, fenceTimeoutMs: 5000 })
  t.deepEqual(decide(input([linked('web')], { fence: noMajority })).stop, [], 'no majority: no one could place it again')
  t.deepEqual(decide(input([linked('web')], { nodes: [node(A), node(B), node(C)] })).stop, [], 'others do not read this node as down yet: they could rank it first again')
  t.deepEqual(decide(input([linked('web')], { nodes: [node(A, { overlayDown: DOWN }), node(B, { overlayDown: DOWN }), node(C, { overlayDown: DOWN })] })).stop, [], 'every overlay down: no better place')
  t.deepEqual(decide(input([linked('web')], { nodes: [node(A, { overlayDown: DOWN }), node(B, { alive: false }), node(C, { draining: true })] })).stop, [], 'no other node may take it')
  t.deepEqual(decide(input([linked('big', 4)], { nodes: [node(A, { overlayDown: DOWN }), node(B, { capacity: { cpu: 2, memoryBytes: 8 * GiB } }), node(C, { capacity: { cpu: 2, memoryBytes: 8 * GiB } })] })).stop, [], 'fits nowhere else: it stays')
  t.deepEqual(decide(input([linked('web')], { busy: new Set(['web']) })).stop, [], 'a start or stop in flight: left alone')
})

test('the parked lease is placed anew on a node whose overlay is up, never back here', t => {
  const parked = held('web')
  const p = { ...parked.winner, ...parkedLease(parked.winner, 'stopped on nodeA: overlay down', 2) }
  const lease = { winner: p, claims: [p] }
  const after = (me: string): DecideInput => {
    const i = input([linked('web')], { me, runs: new Set(), overlay: me === A ? { why: DOWN, since: 0 } : null, unplacedSince: new Map([['web', NOW]]) })
    i.doc.leases.set('web', lease)
    return i
  }
  const claimers = [A, B, C].filter(me => decide(after(me)).claims.some(c => c.vm === 'web'))
  t.is(claimers.length, 1)
  t.not(claimers[0], A)
})

test('health on every other node names the members whose overlay is down, and only alive ones', t => {
  const m = (id: string, state: string, overlayDown?: string): [string, Member] => [id, { nodeId: id, state, since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 }, advert: { name: `host-${id}`, ...(overlayDown != null ? { overlayDown } : {}) } } as unknown as Member]
  t.deepEqual(membersOverlayDown(new Map([m(A, 'alive'), m(B, 'alive')]), A), [])
  t.deepEqual(membersOverlayDown(new Map([m(A, 'alive', DOWN), m(B, 'alive')]), A), [], 'this node\'s own is its overlay-down problem')
  t.deepEqual(membersOverlayDown(new Map([m(A, 'alive'), m(B, 'dead', DOWN)]), A), [], 'a dead member\'s advert is old')
  const [p] = membersOverlayDown(new Map([m(A, 'alive'), m(C, 'alive', 'WireGuard cannot start: x'), m(B, 'alive', DOWN)]), A)
  t.is(p?.service, 'lcm')
  t.is(p?.cause, 'members-overlay-down')
  t.is(p?.message, `the overlay (WireGuard) of 2 member(s) is down: host-nodeB (${DOWN}), host-nodeC (WireGuard cannot start: x); the connections of their VMs to VMs on other nodes carry nothing, and those VMs move to nodes whose overlay is up, where one fits`)
})
