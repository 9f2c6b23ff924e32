// The lease a stopped VM keeps (with the node that last ran it, `stopped`): the writes
// of vm rm, create and start (node/dvmm/vms.ts) on one replica, the holder's on another,
// synced (syncPair), and each node's decision step (decide.ts) on what it then holds.
import test from 'ava'
import { Replica, syncPair, type Draft, type Lease } from '../../crdt/index.ts'
import { fenced, type NodeView } from '../../crdt/placement/index.ts'
import { decide, type Decisions } from '../../node/dvmm/decide.ts'
import { docView } from '../../node/dvmm/view.ts'
import { createVmIn, removeVmIn, setDesiredIn } from '../../node/dvmm/vms.ts'

const GiB = 2 ** 30
const A = '12D3KooWAAAA'
const X = '12D3KooWXXXX'
const C = '12D3KooWCCCC'

const vm = (id: string, cpu = 1): Draft<'vms'> => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] } })
const node = (id: string, alive = true, draining = false): NodeView => ({ id, name: id, alive, draining, capacity: { cpu: 4, memoryBytes: 8 * GiB }, labels: {}, ...(alive ? { aliveSince: -Infinity } : {}) })

/** one decision step of `me` on what replica `r` holds; `dead`: nodes not alive (their leases may be taken over) */
function step (r: Replica, me: string, o: { dead?: string[], draining?: string[], runs?: string[] } = {}): Decisions {
  const dead = new Set(o.dead ?? [])
  return decide({
    me,
    now: 100_000,
    doc: docView(r.read()),
    nodes: [A, X, C].map(n => node(n, !dead.has(n), o.draining?.includes(n))),
    holderAlive: n => !dead.has(n),
    lastHeard: () => 0,
    fence: fenced({ rollSize: 3, aliveSeen: 3 - dead.size, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 }),
    runs: new Set(o.runs ?? []),
    busy: new Set(),
    claimedAt: new Map(),
    conflictSeenAt: new Map(),
    unplacedSince: new Map(), // just waiting: only the best-ranked node claims
    capacity: { cpu: 4, memoryBytes: 8 * GiB },
    cfg: { settleMs: 1000, fenceTimeoutMs: 5000, takeoverMarginMs: 1000, strategy: 'spread' }
  })
}

/** a grid of three replicas (A ran web, X is where the requests go, C a third node), synced */
function grid (): { a: Replica, x: Replica, c: Replica, sync: () => void } {
  const a = Replica.create({ clusterId: 'c', nodeId: A })
  const x = Replica.create({ clusterId: 'c', nodeId: X })
  const c = Replica.create({ clusterId: 'c', nodeId: C })
  const sync = (): void => {
    for (const [p, q] of [[a, x], [x, c], [a, c], [a, x]] as const) if (syncPair(p, q).rejected != null) throw new Error('sync refused a change')
  }
  for (const [r, id] of [[a, A], [x, X], [c, C]] as const) r.change(w => { w.put('roll', { node: id, name: id, joined: 1 }) })
  sync()
  return { a, x, c, sync }
}

/** web ran on A and was stopped on request: A's lease, `stopped` (what the holder writes once its run ended) */
function stoppedOnA (g: ReturnType<typeof grid>): void {
  g.x.change(w => { createVmIn(w, vm('web')) })
  g.a.change(w => { w.put('leases', { vm: 'web', holder: A, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running' } satisfies Draft<'leases'>) })
  g.sync()
  g.x.change(w => { setDesiredIn(w, 'web', 'stopped') })
  g.sync()
  g.a.change(w => { w.update('leases', 'web', { status: 'stopped', reason: `stopped on ${A}: desired stopped` } satisfies Partial<Lease>) })
  g.sync()
}

const claimsOf = (g: ReturnType<typeof grid>, o: Parameters<typeof step>[2] = {}): Array<[string, number]> =>
  ([[g.a, A], [g.x, X], [g.c, C]] as const).filter(([, id]) => !(o.dead ?? []).includes(id)).flatMap(([r, id]) => step(r, id, o).claims.map(c => [id, c.epoch] as [string, number]))

test('vm rm and vm create back to back, before the node that ran the stopped VM released its lease: the new VM is placed', t => {
  const g = grid()
  stoppedOnA(g)
  // from X, before A's step saw either write
  g.x.change(w => { removeVmIn(w, 'web') })
  g.x.change(w => { createVmIn(w, vm('web', 2)) })
  t.is(g.x.read().get('leases', 'web'), undefined, 'the stopped lease went with the removal')
  g.sync()
  t.is(g.a.read().get('vms', 'web')?.value.spec.cpu, 2)
  const claims = claimsOf(g)
  t.is(claims.length, 1, `exactly one node claims the new web: ${JSON.stringify(claims)}`)
  t.is(claims[0]![1], 1, 'a placement (epoch 1)')
})

test('vm create of a removed VM\'s name whose stopped lease its dead holder left: the lease goes with the create, the VM is placed', t => {
  const g = grid()
  stoppedOnA(g)
  // the removal came from an agent that did not remove the lease (an older release, or the holder was to release it and died)
  g.x.change(w => { w.remove('vms', 'web') })
  g.sync()
  t.not(g.x.read().get('leases', 'web'), undefined)
  g.x.change(w => { createVmIn(w, vm('web', 2)) })
  t.is(g.x.read().get('leases', 'web'), undefined)
  g.sync()
  const claims = claimsOf(g, { dead: [A] })
  t.is(claims.length, 1, JSON.stringify(claims))
  t.not(claims[0]![0], A)
})

test('vm rm with the holder dead: the stopped lease goes with it; a lease a run may hold stays (its holder releases it, or it is taken over)', t => {
  const g = grid()
  stoppedOnA(g)
  g.x.change(w => { removeVmIn(w, 'web') })
  t.is(g.x.read().get('leases', 'web'), undefined)
  // failed: nothing runs either
  g.x.change(w => { createVmIn(w, vm('db')) })
  g.a.change(w => { w.put('leases', { vm: 'db', holder: A, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'failed', reason: 'driver: boom' }) })
  g.a.change(w => { createVmIn(w, vm('app')) })
  g.a.change(w => { w.put('leases', { vm: 'app', holder: A, epoch: 3, cpu: 1, memoryBytes: GiB, status: 'running' }) })
  g.sync()
  g.x.change(w => { removeVmIn(w, 'db'); removeVmIn(w, 'app') })
  t.is(g.x.read().get('leases', 'db'), undefined, 'failed: removed')
  t.is(g.x.read().get('leases', 'app')?.value.epoch, 3, 'running: left to its holder')
  // made again, the running lease's VM is taken over from its dead holder as before (epoch + 1)
  g.x.change(w => { createVmIn(w, vm('app')) })
  t.is(g.x.read().get('leases', 'app')?.value.status, 'running', 'a running lease stays on create')
})

test('a drain leaves a stopped VM\'s lease where it is (it reserves nothing); started, the VM is placed on another node', t => {
  const g = grid()
  stoppedOnA(g)
  const onA = step(g.a, A, { draining: [A] })
  t.deepEqual([onA.release, onA.park, onA.stop, onA.claims], [[], [], [], []], 'kept: its console stays on A')
  g.x.change(w => { setDesiredIn(w, 'web', 'running') })
  t.is(g.x.read().get('leases', 'web'), undefined, 'vm start removes it')
  g.sync()
  const claims = claimsOf(g, { draining: [A] })
  t.is(claims.length, 1)
  t.not(claims[0]![0], A, 'not on the draining node')
})
