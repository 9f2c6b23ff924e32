// The lease a stopped VM keeps (with the node that last ran it, `stopped`): the writes
// of vm rm, create and start (node/dvmm/vms.ts) on one replica, the holder's on another,
// synced (syncPair), and each node's decision step (decide.ts) on what it then holds.
import test from 'ava'
import { Replica, syncPair, type Draft, type Lease } from '../../crdt/index.ts'
import { fenced, type NodeView } from '../../crdt/placement/index.ts'
import { claimStillApplies, decide, startsStillDue, type DecideInput, type Decisions } from '../../node/dvmm/decide.ts'
import { parkedLease } from '../../node/dvmm/run-steps.ts'
import { docView } from '../../node/dvmm/view.ts'
import { createVmIn, removeVmIn, setDesiredIn, unplacedVms, vmRow } from '../../node/dvmm/vms.ts'

const GiB = 2 ** 30
const A = '12D3KooWAAAA'
const X = '12D3KooWXXXX'
const C = '12D3KooWCCCC'

const vm = (id: string, cpu = 1): Draft<'vms'> => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] } })
const node = (id: string, alive = true, draining = false): NodeView => ({ id, name: id, alive, draining, capacity: { cpu: 4, memoryBytes: 8 * GiB }, labels: {}, ...(alive ? { aliveSince: -Infinity } : {}) })

/** the decision step's input of `me` on what replica `r` holds; `dead`: nodes not alive (their leases may be taken over) */
function inputOf (r: Replica, me: string, o: { dead?: string[], draining?: string[], runs?: string[] } = {}): DecideInput {
  const dead = new Set(o.dead ?? [])
  return {
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
  }
}

/** one decision step of `me` on what replica `r` holds */
const step = (r: Replica, me: string, o: Parameters<typeof inputOf>[2] = {}): Decisions => decide(inputOf(r, me, o))

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

test('vm create of a removed VM\'s name while its live holder still runs or stops it: refused, naming the node (the new VM would take over that run and its old reservation)', t => {
  const g = grid()
  g.x.change(w => { createVmIn(w, vm('app')) })
  g.a.change(w => { w.put('leases', { vm: 'app', holder: A, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running' }) })
  g.sync()
  g.x.change(w => { removeVmIn(w, 'app') })
  const alive = (id: string): string | null => id === A ? 'node-a' : null
  const e = t.throws(() => { g.x.change(w => { createVmIn(w, vm('app', 4), alive) }) })
  t.regex(e?.message ?? '', /was removed, and node-a is still stopping it/)
  t.is((e as { code?: string }).code, 'still_stopping', 'a code of its own, not name_in_use: it passes (bb49)')
  t.is(g.x.read().get('vms', 'app'), undefined, 'nothing of the refused create is written')
  // a holder not heard from (suspect): it may be dead, and then nobody stops the run (a tester read "still stopping it" of a crashed node)
  const suspect = t.throws(() => { g.x.change(w => { createVmIn(w, vm('app', 4), id => id === A ? { name: 'node-a', suspect: true } : null) }) })
  t.regex(suspect?.message ?? '', /was removed, and node-a, which holds its lease \(epoch 1, running\), has not been heard from for a moment: create it again once that node has released it, or, if it is dead, once its fence timeout has passed/)
  // once the holder released it, the name is free
  g.sync()
  g.a.change(w => { w.remove('leases', 'app') })
  g.sync()
  g.x.change(w => { createVmIn(w, vm('app', 4), alive) })
  t.not(g.x.read().get('vms', 'app'), undefined)
})

test('a drain leaves a stopped VM\'s lease where it is (it reserves nothing); started, the VM is placed on another node', t => {
  const g = grid()
  stoppedOnA(g)
  const onA = step(g.a, A, { draining: [A] })
  t.deepEqual([onA.release, onA.park, onA.stop, onA.claims], [[], [], [], []], 'kept: its console stays on A')
  g.x.change(w => { setDesiredIn(w, 'web', 'running') })
  t.like(g.x.read().get('leases', 'web')?.value, { holder: A, epoch: 1, status: 'stopped', parked: true }, 'vm start parks it: placed anew over it')
  g.sync()
  const claims = claimsOf(g, { draining: [A] })
  t.is(claims.length, 1)
  t.not(claims[0]![0], A, 'not on the draining node')
  t.is(claims[0]![1], 2, 'at the next epoch, never back to 1')
})

/** the claims a step decided, written as the service writes them (service.ts flush: only where claimStillApplies) */
function writeClaims (r: Replica, me: string, d: Decisions): number {
  let n = 0
  r.change(w => {
    for (const c of d.claims) {
      if (!claimStillApplies(w.reader.get('leases', c.vm)?.value, c)) continue
      w.put('leases', { vm: c.vm, holder: me, epoch: c.epoch, cpu: c.cpu, memoryBytes: c.memoryBytes, status: 'claimed', ...(c.from != null && c.parked !== true ? { from: c.from } : {}) })
      n++
    }
  })
  return n
}

/** web runs on A (epoch 1), and is stopped from X; A's stop is under way (its lease still says running) */
function stopping (): ReturnType<typeof grid> {
  const g = grid()
  g.x.change(w => { createVmIn(w, vm('web')) })
  g.a.change(w => { w.put('leases', { vm: 'web', holder: A, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running' }) })
  g.sync()
  g.x.change(w => { setDesiredIn(w, 'web', 'stopped') })
  g.sync()
  return g
}

/** A's stop ends: it parks its lease (local-vms.ts leaveStopped), while X's `vm start`, seeing the lease still running, only sets desired running */
function raced (g: ReturnType<typeof grid>): void {
  g.a.change(w => { const l = w.reader.get('leases', 'web')!.value; w.update('leases', 'web', parkedLease(l, `stopped on ${A}: desired stopped`, 5)) })
  g.x.change(w => { setDesiredIn(w, 'web', 'running') })
  t0(g.x.read().get('leases', 'web')?.value.status === 'running', 'X saw the lease running: the start kept it')
  g.sync()
}
const t0 = (ok: boolean, what: string): void => { if (!ok) throw new Error(what) }

test('vm start racing the holder\'s stop: desired running over a parked lease is placed anew over it (epoch + 1), once, and the holder never starts it under the parked lease', t => {
  const g = stopping()
  raced(g)
  for (const r of [g.a, g.x, g.c]) {
    t.is(r.read().get('vms', 'web')?.value.desired, 'running')
    t.like(r.read().get('leases', 'web')?.value, { holder: A, epoch: 1, status: 'stopped', parked: true })
  }
  // the holder: nothing to start, stop or release under its parked lease
  const onA = step(g.a, A)
  t.deepEqual([onA.start, onA.stop, onA.release, onA.park], [[], [], [], []])
  t.deepEqual(onA.unplaced, ['web'], 'waiting for a holder, on every node')
  // exactly the best-ranked node claims, over the parked lease
  const deciders = [[g.a, A], [g.x, X], [g.c, C]] as const
  const decided = deciders.map(([r, id]) => ({ r, id, d: step(r, id) }))
  const claimers = decided.filter(x => x.d.claims.length > 0)
  t.is(claimers.length, 1, 'one node claims')
  t.like(claimers[0]!.d.claims[0], { vm: 'web', epoch: 2, from: A, parked: true })
  t.is(writeClaims(claimers[0]!.r, claimers[0]!.id, claimers[0]!.d), 1)
  g.sync()
  for (const [r] of deciders) t.like(r.read().get('leases', 'web')?.value, { holder: claimers[0]!.id, epoch: 2, status: 'claimed' })
  t.is(g.a.read().get('leases', 'web')?.value.from, undefined, 'a placement anew, not a takeover')
  // settled, only the claimer starts it
  const settled = deciders.map(([r, id]) => step(r, id, {}).start)
  t.deepEqual(settled.flat(), ['web'])
})

test('placed anew over a parked lease by several nodes at once (each one\'s fallback allowed it): one claim wins everywhere, the others lose before any start', t => {
  const g = stopping()
  raced(g)
  const deciders = [[g.a, A], [g.x, X], [g.c, C]] as const
  const long = new Map([['web', -1e9]])
  for (const [r, id] of deciders) {
    const d = decide({ ...inputOf(r, id), unplacedSince: long })
    t.is(d.claims.length, 1, `${id} claims (waited long: every node may)`)
    writeClaims(r, id, d)
  }
  g.sync()
  const winners = deciders.map(([r]) => docView(r.read()).leases.get('web')!.winner.holder)
  t.is(new Set(winners).size, 1, 'every node names the same winner')
  const starts = deciders.map(([r, id]) => step(r, id).start.map(() => id)).flat()
  t.deepEqual(starts, [winners[0]], 'only the winner starts it')
})

test('a claim over a parked lease survives a concurrent vm start, which leaves the parked lease as it is; the crash rule\'s stopped lease (not parked) stays stopped', t => {
  const g = stopping()
  raced(g)
  const [r, id] = ([[g.a, A], [g.x, X], [g.c, C]] as const).find(([r, id]) => step(r, id).claims.length > 0)!
  writeClaims(r, id, step(r, id))
  // another node, not having seen the claim, starts the VM again: the parked lease stays as it is
  const other = r === g.x ? g.c : g.x
  other.change(w => { setDesiredIn(w, 'web', 'running') })
  t.like(other.read().get('leases', 'web')?.value, { holder: A, epoch: 1, parked: true })
  g.sync()
  t.like(g.a.read().get('leases', 'web')?.value, { holder: id, epoch: 2 }, 'the claim is kept (a removal takes only the values its writer saw)')
  // a claim over the parked lease is written only while it is still the parked lease it saw
  t.false(claimStillApplies({ holder: A, epoch: 1, status: 'running' }, { epoch: 2, from: A, parked: true }))
  t.false(claimStillApplies({ holder: A, epoch: 1, status: 'stopped' }, { epoch: 2, from: A, parked: true }), 'the crash rule\'s')
  t.true(claimStillApplies({ holder: A, epoch: 1, status: 'stopped', parked: true }, { epoch: 2, from: A, parked: true }))
  t.false(claimStillApplies({ holder: id, epoch: 2, status: 'claimed' }, { epoch: 2, from: A, parked: true }))

  // the crash rule: stopped with desired running, left so until started again
  const h = grid()
  h.x.change(w => { createVmIn(w, vm('web')) })
  h.a.change(w => { w.put('leases', { vm: 'web', holder: A, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'stopped', reason: 'exited: 3 crashes within 24 h, left stopped', crashes: [1, 2, 3] }) })
  h.sync()
  for (const [rr, me] of [[h.a, A], [h.x, X], [h.c, C]] as const) {
    const d = step(rr, me)
    t.deepEqual([d.claims, d.start, d.unplaced], [[], [], []], me)
  }
})

test('a start decided on one read is not carried out once the lease was parked or left failed meanwhile', t => {
  const g = stopping()
  g.x.change(w => { setDesiredIn(w, 'web', 'running') })
  g.sync()
  const before = docView(g.a.read())
  g.a.change(w => { const l = w.reader.get('leases', 'web')!.value; w.update('leases', 'web', parkedLease(l, 'stopped', 5)) })
  t.deepEqual(startsStillDue(['web'], before, docView(g.a.read()), A, true), [])
  t.deepEqual(startsStillDue(['web'], before, before, A, true), ['web'], 'unchanged: due')
})

test('vm ls: a VM started again over a parked lease is pending (no node) until placed; stopped, its parked lease names the node that ran it', t => {
  const g = stopping()
  g.a.change(w => { const l = w.reader.get('leases', 'web')!.value; w.update('leases', 'web', parkedLease(l, 'stopped on a: desired stopped', 5)) })
  g.sync()
  const parked = docView(g.x.read())
  t.like(vmRow(parked.vms.get('web')!, parked.leases.get('web'), n => n), { state: 'stopped', node: A, nodeId: A, epoch: 1 })
  g.x.change(w => { w.update('vms', 'web', { desired: 'running' }) })
  const started = docView(g.x.read())
  t.like(vmRow(started.vms.get('web')!, started.leases.get('web'), n => n, 'no node fits'), { state: 'pending', node: null, nodeId: null, epoch: null, reason: 'no node fits' })
  const none = [node(A, false), node(X, false), node(C, false)]
  t.deepEqual(unplacedVms(started, none).map(u => u.vm), ['web'], 'health: placed nowhere while no node fits')
})

test('parkedLease: a lease about to start again says what happened last, not "it was starting" (a tester saw it of a VM that had run for minutes)', t => {
  const base = { vm: 'w', holder: 'a', epoch: 2, cpu: 1, memoryBytes: 1, at: 1, made: 1, log: [] } as unknown as Lease
  const killed = 'killed by the fencing watchdog at 2026-12-04T05:26:47.665Z while the agent was down or still loading (not back within the watchdog\'s timeout of its last feed)'
  t.is(parkedLease({ ...base, status: 'starting', reason: killed }, 'stopped on a: desired stopped', 5).reason, `stopped on a: desired stopped (before: ${killed})`)
  t.is(parkedLease({ ...base, status: 'starting' }, 'stopped', 5).reason, 'stopped (it was starting)')
  t.is(parkedLease({ ...base, status: 'failed', reason: 'no such user' }, 'stopped', 5).reason, 'stopped (it was failed: no such user)')
  t.is(parkedLease({ ...base, status: 'running', reason: 'x' }, 'stopped', 5).reason, 'stopped')
})
