// A VM's history (node/dvmm/history.ts): the events of each lease transition, written
// into the lease's log by the writer at the time they happened, and for a lease that
// carries no log (an older agent's), derived from what an agent sees of it.
import test from 'ava'
import { History, appendLog, claimLog, logged, readLog, transitionEvents } from '../../node/dvmm/history.ts'
import { LEASE_LOG_MAX, Replica, isLeaseEvent, syncPair, validateObject, type Lease, type LeaseEvent } from '../../crdt/index.ts'
import { docView } from '../../node/dvmm/view.ts'
import { onExit, quickRestartDelayMs, MIN_CLEAN_RUN_MS, QUICK_RUN_MS } from '../../crdt/placement/restart.ts'

const lease = (o: Partial<Lease>): Lease => ({ vm: 'web', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: 1 << 20, status: 'claimed', at: 1, by: 'n1', ...o } as Lease)
const name = (n: string): string => n.toUpperCase()
const vms = new Set(['web'])

test('a run killed without a crash and started again (fenced, or by the watchdog while its agent was down) shows as killed, then started', t => {
  const h = new History()
  h.observe(new Map([['web', lease({ status: 'running', at: 1 })]]), vms, name)
  h.observe(new Map([['web', lease({ status: 'starting', reason: 'killed: fenced: this agent stalled 7 s', at: 2 })]]), vms, name)
  h.observe(new Map([['web', lease({ status: 'running', at: 3 })]]), vms, name)
  t.deepEqual(h.of('web', name).map(e => [e.at, e.event, e.node, e.detail]), [
    [1, 'placed', 'N1', undefined], [1, 'started', 'N1', undefined],
    [2, 'killed', 'N1', 'killed: fenced: this agent stalled 7 s'],
    [3, 'started', 'N1', undefined]
  ])
})

test('a crash is a crash, not also a kill; a failover is no kill', t => {
  const h = new History()
  h.observe(new Map([['web', lease({ status: 'running' })]]), vms, name)
  h.observe(new Map([['web', lease({ status: 'starting', reason: 'exited (code 1)', crashes: [2] })]]), vms, name)
  h.observe(new Map([['web', lease({ status: 'starting', holder: 'n2', epoch: 2, from: 'n1' })]]), vms, name)
  t.deepEqual(h.of('web').map(e => e.event), ['placed', 'started', 'crashed', 'failed-over'])
  t.is(h.of('web').at(-1)!.detail, 'from N1')
})

test('a lease with a log is the history, whatever this agent saw of it; its times are the writer\'s', t => {
  let l = lease({})
  l = { ...l, log: appendLog(undefined, transitionEvents(undefined, l).map(e => ({ at: 100, ...e }))) }
  l = { ...l, ...logged(l, { status: 'running', reason: 'started by n1' }, 200) }
  l = { ...l, ...logged(l, { status: 'starting', reason: 'exited (code 1)', crashes: [300] }, 300) }
  l = { ...l, ...logged(l, { status: 'running' }, 310) }
  l = { ...l, ...logged(l, {}, 400) }
  const want = [[100, 'placed'], [200, 'started'], [300, 'crashed'], [310, 'started']]
  t.deepEqual((l.log as LeaseEvent[]).map(e => [e.at, e.event]), want, 'an update that changes nothing logs nothing')
  const late = new History()
  late.observe(new Map([['web', { ...l, at: 999 }]]), vms, name)
  t.deepEqual(late.of('web').map(e => [e.at, e.event]), want, 'one that saw only the last state has it all, at the writer\'s times')
  t.is(late.of('web', name)[0]!.node, 'N1', 'node names as the reader knows them')
})

test('local events are marked so and stamped with the wall clock; a removed VM\'s history goes', t => {
  const h = new History(() => 5000.7)
  h.add('web', { event: 'lost-claim', detail: 'to n2 (epoch 1)' })
  h.observe(new Map([['web', lease({ log: [{ at: 4000, event: 'placed', node: 'n2', epoch: 1 }] })]]), vms, name)
  t.deepEqual(h.of('web'), [{ at: 4000, event: 'placed', node: 'n2', epoch: 1 }, { at: 5000, event: 'lost-claim', detail: 'to n2 (epoch 1)', local: true }])
  t.deepEqual((h.carried('web')?.log as LeaseEvent[]).map(e => e.event), ['placed'])
  h.observe(new Map(), vms, name)
  t.is(h.of('web').length, 2, 'the lease gone (released): kept, for the next claim to carry on')
  h.observe(new Map(), new Set(), name)
  t.deepEqual(h.of('web'), [])
})

test('the log keeps the newest events, details clipped', t => {
  const many = Array.from({ length: LEASE_LOG_MAX + 5 }, (_, i) => ({ at: i, event: 'started', node: 'n1' }))
  const log = appendLog(undefined, many)
  t.is(log.length, LEASE_LOG_MAX)
  t.is((log[0] as LeaseEvent).at, 5)
  t.is((appendLog(undefined, [{ at: 1, event: 'failed', node: 'n1', detail: 'x'.repeat(3000) }])[0] as LeaseEvent).detail!.length, 512)
})

test('the schema takes any log: a bad event, too long a log or no list at all never makes the lease (safety-critical) invalid', t => {
  const entry = { at: 1, event: 'placed', node: 'n1', epoch: 1 }
  t.is(validateObject('leases', 'web', lease({})), null, 'no log (an older agent)')
  t.is(validateObject('leases', 'web', lease({ log: [entry, { at: 2, event: 'some-newer-event', node: 'n1', detail: 'x' }] })), null)
  for (const log of [[{ ...entry, event: 'Placed!' }], [{ ...entry, at: -1 }], [entry, 7, null, 'x'], Array.from({ length: LEASE_LOG_MAX + 1 }, () => entry), 'not a list', { at: 1 }]) {
    t.is(validateObject('leases', 'web', lease({ log })), null, JSON.stringify(log).slice(0, 60))
  }
  // the rest of the lease is checked as before
  t.not(validateObject('leases', 'web', lease({ log: [entry], epoch: 0 })), null)
})

test('a peer\'s lease with a bad event in its log is synced and read (its VM is not unplaced); the bad events are left out of the history and counted', t => {
  const A = '12D3KooWAAAA'
  const B = '12D3KooWBBBB'
  const a = Replica.create({ clusterId: 'c', nodeId: A })
  const b = Replica.create({ clusterId: 'c', nodeId: B })
  t.is(syncPair(a, b).rejected, undefined)
  const bad = [{ at: 1, event: 'placed', node: A, epoch: 1 }, { at: 2, event: 'Started!', node: A }, { at: -3, event: 'crashed', node: A }, 'junk', { at: 4, event: 'started', node: A, epoch: 1 }]
  // written as a newer or faulty agent would (this agent's writer takes it too now)
  a.change(w => { w.put('leases', { vm: 'web', holder: A, epoch: 1, cpu: 1, memoryBytes: 1 << 20, status: 'running', log: bad }) })
  t.is(syncPair(a, b).rejected, undefined, 'the peer\'s change is taken')
  const l = docView(b.read()).leases.get('web')
  t.is(l?.winner.holder, A, 'the lease is read: its VM runs there, nobody claims it again')
  t.is(l?.winner.status, 'running')
  const h = new History()
  h.observe(new Map([['web', l!.winner]]), vms, name)
  t.deepEqual(h.of('web').map(e => [e.at, e.event]), [[1, 'placed'], [4, 'started']])
  t.is(h.unreadable('web'), 3)
  t.deepEqual(readLog('not a list'), { events: [], unreadable: 1 })
  t.deepEqual(readLog(undefined), { events: [], unreadable: 0 })
  // a transition written by this agent keeps the entries it cannot read (a newer agent's) and adds its own
  const next = { ...l!.winner, ...logged(l!.winner, { status: 'stopped', reason: 'x' }, 5) }
  t.deepEqual(next.log, [...bad, { at: 5, event: 'stopped', node: A, detail: 'x' }])
  t.is(validateObject('leases', 'web', next), null)
})

test('a VM made again under a removed VM\'s name does not take on its history: a log is carried only to a lease made for the same VM', t => {
  const old = [{ at: 100, event: 'placed', node: 'n1', epoch: 1 }, { at: 110, event: 'started', node: 'n1', epoch: 1 }]
  const claim = lease({ at: 500, made: 400 })
  t.deepEqual((claimLog({ log: old, made: 50 }, claim, name) as LeaseEvent[]).map(e => e.event), ['placed'], 'a former VM\'s log stays behind')
  t.deepEqual((claimLog({ log: old, made: 400 }, claim, name) as LeaseEvent[]).map(e => e.event), ['placed', 'started', 'placed'], 'the same VM\'s carries on')
  t.deepEqual((claimLog({ log: old }, claim, name) as LeaseEvent[]).length, 3, 'a lease of an older agent (no made) is taken as the same VM')
  // the former VM's holder died: the new VM takes its lease over (epoch 2, from n1), and is placed, not failed over
  const takeover = lease({ at: 600, made: 400, epoch: 2, from: 'n1', holder: 'n2', by: 'n2' })
  t.deepEqual(claimLog({ log: old, made: 50 }, takeover, name), [{ at: 600, event: 'placed', node: takeover.holder, name: name(takeover.holder), epoch: 2, detail: `over the lease a former VM of this name left on ${name('n1')}` }])
  t.deepEqual((claimLog({ log: old, made: 400 }, takeover, name) as LeaseEvent[]).at(-1), { at: 600, event: 'failed-over', node: takeover.holder, name: name(takeover.holder), epoch: 2, detail: `from ${name('n1')}` }, 'the same VM\'s takeover is a failover')
  // this agent saw the former VM's lease and never saw it removed (rm and create came in one sync)
  const h = new History()
  h.observe(new Map([['web', lease({ log: old, made: 50 })]]), vms, name)
  t.deepEqual(h.of('web', name, 400), [], 'its lease, not taken over yet, is a former VM\'s: shown as nothing')
  t.is(h.of('web', name, 50).length, 2)
  t.is(h.of('web', name).length, 2, 'a VM of an older agent (no created): shown')
})

test('a stop this node recorded and the lease\'s log then recorded too, a moment apart, shows once (a drain)', t => {
  const h = new History(() => 5000)
  h.add('web', { event: 'stopped', node: 'N2', detail: 'node draining' })
  h.observe(new Map([['web', lease({ holder: 'n2', log: [{ at: 4000, event: 'placed', node: 'n2', epoch: 1 }, { at: 5044, event: 'stopped', node: 'n2', detail: 'node draining' }] })]]), vms, name)
  t.deepEqual(h.of('web', name).map(e => [e.event, e.local === true]), [['placed', false], ['stopped', false]])
  // the same stop again much later is another stop
  h.add('web', { event: 'stopped', node: 'N2', detail: 'node draining' }, 9000)
  t.is(h.of('web', name).filter(e => e.event === 'stopped').length, 2)
})

test('a clean exit under always, after a long enough run, is no crash: restarted, counted nothing, shown as exited', t => {
  const now = 100_000_000
  const d = onExit([now - 1000], now, { policy: 'always', clean: true, detail: 'exited (code 0)', ranMs: MIN_CLEAN_RUN_MS })
  t.like(d, { action: 'restart', crashes: [now - 1000] })
  t.regex(d.reason, /^exited \(code 0\) cleanly after 10 s; restart policy is always: restarting \(a clean exit is no crash\)$/)
  // one that exits 0 at once counts: restarted for ever otherwise
  t.like(onExit([now - 2000, now - 1000], now, { policy: 'always', clean: true, ranMs: 200 }), { action: 'stop' })
  t.is(onExit([now - 2000, now - 1000], now, { policy: 'always', clean: true, detail: 'exited (code 0)', ranMs: 200 }).reason, 'exited (code 0) within 10 s of its start, which counts as a crash: 3 crashes within 24 h, left stopped')
  t.like(onExit([], now, { policy: 'always', clean: true }), { action: 'restart', crashes: [now] }, 'a run of unknown length counts')
  const h = new History()
  h.observe(new Map([['web', lease({ status: 'running', at: 1 })]]), vms, name)
  h.observe(new Map([['web', lease({ status: 'starting', reason: d.reason, at: 2 })]]), vms, name)
  t.deepEqual(h.of('web', name).map(e => e.event), ['placed', 'started', 'exited'])
})

test('events a node stamped with a clock running ahead (past the bound) are shown in this agent\'s time and in order, marked so', t => {
  const h = new History()
  // n1 placed and started it at its 1000; n2, 90 s ahead, took it over at what its clock called 95_000 (our 5000)
  const log = appendLog(undefined, [{ at: 1000, event: 'placed', node: 'n1', epoch: 1 }, { at: 1000, event: 'started', node: 'n1', epoch: 1 }, { at: 95_000, event: 'failed-over', node: 'n2', epoch: 2 }])
  // n1's watchdog kill, appended later, happened at our 6000: after the takeover
  const lateLog = appendLog(log, [{ at: 6000, event: 'killed', node: 'n1', detail: 'by the fencing watchdog' }])
  h.observe(new Map([['web', lease({ status: 'running', holder: 'n2', epoch: 2, log: lateLog })]]), vms, name)
  const off = (n: string): number | undefined => n === 'n2' ? 90_000 : undefined
  t.deepEqual(h.of('web', name, undefined, off).map(e => [e.at, e.event, e.node, e.clockMs]), [
    [1000, 'placed', 'N1', undefined], [1000, 'started', 'N1', undefined],
    [5000, 'failed-over', 'N2', 90_000],
    [6000, 'killed', 'N1', undefined]
  ])
  t.is(h.of('web', name).at(-1)!.event, 'failed-over', 'without the offsets: in the future, out of order')
})

test('an event keeps the name its node had when it was written: shown once the node has left the roll and the member table', t => {
  let l = lease({})
  l = { ...l, log: claimLog(undefined, l, n => n === 'n1' ? 'h1' : n) }
  l = { ...l, ...logged(l, { status: 'running' }, 200, 'h1') }
  t.deepEqual((l.log as LeaseEvent[]).map(e => e.name), ['h1', 'h1'])
  const h = new History()
  h.observe(new Map([['web', l]]), vms, n => n)
  t.deepEqual(h.of('web', n => n).map(e => e.node), ['h1', 'h1'], 'a node nobody knows now: the name in the log')
  t.deepEqual(h.of('web', name).map(e => e.node), ['N1', 'N1'], 'a node known now: its name now (a renamed node)')
  t.deepEqual(transitionEvents(undefined, lease({}))[0], { event: 'placed', node: 'n1', epoch: 1 }, 'no name known: none written')
  t.is(validateObject('leases', 'web', l), null, 'the lease with named events is valid')
  t.true((l.log as unknown[]).every(isLeaseEvent), 'and its events readable')
})

test('quick clean runs in a row under always wait longer and longer before their restart; a long run starts the count again (bb45)', t => {
  const now = 100_000_000
  const quick = (quickRuns: number): ReturnType<typeof onExit> => onExit([], now, { policy: 'always', clean: true, detail: 'exited (code 0)', ranMs: 11_000, quickRuns })
  t.is(quick(0).reason, 'exited (code 0) cleanly after 11 s; restart policy is always: restarting (a clean exit is no crash)')
  t.is((quick(0) as { delayMs?: number }).delayMs, undefined, 'the first quick run restarts at once')
  t.like(quick(1), { action: 'restart', crashes: [], delayMs: 10_000 })
  t.is(quick(1).reason, 'exited (code 0) cleanly after 11 s; restart policy is always: restarting in 10 s (at 03:46:50 UTC; 2 runs in a row under 10 min: each doubles the wait, up to 5 min) (a clean exit is no crash)', 'with the time it restarts, now + 10 s (100,010,000 ms after the epoch)')
  t.like(quick(2), { delayMs: 20_000 })
  t.like(quick(50), { delayMs: 300_000 }, 'at most 5 min')
  // a run of 10 min or more: at once, whatever came before
  t.is((onExit([], now, { policy: 'always', clean: true, ranMs: QUICK_RUN_MS, quickRuns: 9 }) as { delayMs?: number }).delayMs, undefined)
  t.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map(quickRestartDelayMs), [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000])
  // crashes keep their own rule
  t.like(onExit([], now, { policy: 'always', clean: false, ranMs: 11_000, quickRuns: 5 }), { action: 'restart', crashes: [now] })
  t.true(MIN_CLEAN_RUN_MS < QUICK_RUN_MS)
})

test('a VM\'s updates kept in its entry are its history too: shown once where its lease\'s log has them as well, and where a claim written at the same moment lost them there; before any lease too', t => {
  let l = lease({})
  l = { ...l, log: appendLog(undefined, transitionEvents(undefined, l).map(e => ({ at: 100, ...e }))) }
  const both = { at: 150, event: 'updated', node: 'n1', epoch: 1, detail: 'labels - -> a=b' }
  const lost = { at: 250, event: 'updated', node: 'n2', detail: 'cpu 1 -> 2' }
  l = { ...l, log: appendLog(l.log, [both]) }
  l = { ...l, ...logged(l, { status: 'running', reason: 'started by n1' }, 200) }
  const h = new History()
  h.observe(new Map([['web', l]]), vms, name)
  const updates = appendLog(appendLog(undefined, [both]), [lost])
  t.deepEqual(h.of('web', name, undefined, undefined, updates).map(e => [e.at, e.event, e.detail ?? null]), [[100, 'placed', null], [150, 'updated', 'labels - -> a=b'], [200, 'started', null], [250, 'updated', 'cpu 1 -> 2']])
  t.deepEqual(h.of('new', name, undefined, undefined, [lost, { not: 'an event' }]).map(e => [e.at, e.event, e.node]), [[250, 'updated', 'N2']], 'no lease yet: its updates; what is no event is left out')
  t.deepEqual(h.of('new', name, undefined, undefined, 'no list'), [])
})
