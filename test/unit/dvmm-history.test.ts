// A VM's history (node/dvmm/history.ts): the events of each lease transition, written
// into the lease's log by the writer at the time they happened, and for a lease that
// carries no log (an older agent's), derived from what an agent sees of it.
import test from 'ava'
import { History, appendLog, logged, transitionEvents } from '../../node/dvmm/history.ts'
import { LEASE_LOG_MAX, validateObject, type Lease } from '../../crdt/index.ts'

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
  t.deepEqual(l.log!.map(e => [e.at, e.event]), want, 'an update that changes nothing logs nothing')
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
  t.deepEqual(h.carried('web')?.map(e => e.event), ['placed'])
  h.observe(new Map(), vms, name)
  t.is(h.of('web').length, 2, 'the lease gone (released): kept, for the next claim to carry on')
  h.observe(new Map(), new Set(), name)
  t.deepEqual(h.of('web'), [])
})

test('the log keeps the newest events, details clipped', t => {
  const many = Array.from({ length: LEASE_LOG_MAX + 5 }, (_, i) => ({ at: i, event: 'started', node: 'n1' }))
  const log = appendLog(undefined, many)
  t.is(log.length, LEASE_LOG_MAX)
  t.is(log[0]!.at, 5)
  t.is(appendLog(undefined, [{ at: 1, event: 'failed', node: 'n1', detail: 'x'.repeat(3000) }])[0]!.detail!.length, 512)
})

test('the schema: a lease with a log is valid, one without still is; a bad entry or too long a log is refused', t => {
  const entry = { at: 1, event: 'placed', node: 'n1', epoch: 1 }
  t.is(validateObject('leases', 'web', lease({})), null, 'no log (an older agent)')
  t.is(validateObject('leases', 'web', lease({ log: [entry, { at: 2, event: 'some-newer-event', node: 'n1', detail: 'x' }] })), null)
  t.not(validateObject('leases', 'web', lease({ log: [{ ...entry, event: 'Placed!' }] })), null)
  t.not(validateObject('leases', 'web', lease({ log: [{ ...entry, at: -1 }] })), null)
  t.not(validateObject('leases', 'web', lease({ log: Array.from({ length: LEASE_LOG_MAX + 1 }, () => entry) })), null)
})
