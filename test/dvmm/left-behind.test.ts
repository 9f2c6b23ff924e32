// What a starting agent does with each VM a previous run left (leftBehind, pure).
import test from 'ava'
import { leftBehind } from '../../node/dvmm/left-behind.ts'
import type { VmExit } from '../../node/dvmm/drivers/types.ts'

const ME = 'me'
const exit = (reason: VmExit['reason'], code: number | null = 0): VmExit => ({ code, signal: null, reason, at: 5000 })
const ended = (reason: VmExit['reason'], startedAt = 1000, error?: string) => ({ state: reason === 'exited' || reason === 'stopped' || reason === 'killed' ? 'stopped' as const : 'failed' as const, exit: exit(reason), startedAt, error })
const lease = (status: string | undefined, at = 2000, holder = ME) => ({ holder, status: status as 'running', at })

test('a VM still running is adopted, whoever holds the lease (the step kills it if not this node)', t => {
  t.deepEqual(leftBehind({ state: 'running', startedAt: 1000 }, lease('running'), ME), { do: 'adopt' })
  t.deepEqual(leftBehind({ state: 'starting' }, lease('running', 2000, 'other'), ME), { do: 'adopt' })
  t.deepEqual(leftBehind({ state: 'running' }, lease('claimed', 2000, 'other'), ME), { do: 'adopt' })
  t.deepEqual(leftBehind({ state: 'running' }, undefined, ME), { do: 'adopt' })
})

test('a VM running under this node\'s lease that still says claimed or starting (its start\'s write was lost with the previous run) is adopted and its lease written running', t => {
  for (const status of ['claimed', 'starting', undefined]) {
    const d = leftBehind({ state: 'running', startedAt: 3000 }, lease(status), ME)
    t.is(d.do, 'adopt', status)
    t.regex(d.do === 'adopt' ? d.running ?? '' : '', /found running when the agent came back \(the write of its start was lost\)/, status)
  }
  // stopped or failed: written already, the step judges it (a stop asked for stops it)
  for (const status of ['stopped', 'failed']) t.deepEqual(leftBehind({ state: 'running' }, lease(status), ME), { do: 'adopt' }, status)
})

test('a VM whose stop was under way (its guest may still run) is stopped, whoever holds the lease, before the step judges it', t => {
  for (const l of [lease('running'), lease('stopping'), lease('running', 2000, 'other'), undefined]) {
    t.deepEqual(leftBehind({ state: 'stopping', startedAt: 1000 }, l, ME), { do: 'stop', why: 'its stop was under way when the agent went down' })
  }
})

test('a guest that ended by itself while its lease says running goes through the crash rule', t => {
  for (const r of ['exited', 'crashed', 'oom-killed', 'lost'] as const) {
    const d = leftBehind(ended(r), lease('running'), ME)
    t.deepEqual(d, { do: 'exit', exit: exit(r) }, r)
  }
})

test('a VM gone with its host\'s restart is no crash: the decision step starts it again as its lease says', t => {
  const d = leftBehind({ state: 'stopped', exit: exit('host-restarted', null), startedAt: 1000, error: 'its host restarted while it ran' }, lease('running'), ME)
  t.is(d.do, 'leave')
  t.regex(d.do === 'leave' ? d.why : '', /host-restarted.*not the guest's doing/)
})

test('a lease no longer this node\'s, or none, is left to the decision step', t => {
  t.is(leftBehind(ended('crashed'), lease('running', 2000, 'other'), ME).do, 'leave')
  t.is(leftBehind(ended('exited'), undefined, ME).do, 'leave')
})

test('an exit already written is not counted again', t => {
  // the crash rule wrote stopped (never, on-failure, the limit)
  t.is(leftBehind(ended('exited'), lease('stopped'), ME).do, 'leave')
  t.is(leftBehind(ended('crashed'), lease('failed'), ME).do, 'leave')
  // it wrote starting (a restart due) after the run ended: the record is of that run
  t.is(leftBehind(ended('crashed', 1000), lease('starting', 6000), ME).do, 'leave')
  // a claim written after the run (a VM started again after a stop): the record is older
  t.is(leftBehind(ended('exited', 1000), lease('claimed', 6000), ME).do, 'leave')
  t.is(leftBehind({ state: 'stopped', exit: exit('exited') }, lease('starting', 6000), ME).do, 'leave', 'no start time: not counted twice')
})

test('a run that began after the lease said claimed or starting (its running was not written) is counted', t => {
  t.is(leftBehind(ended('crashed', 3000), lease('starting', 2000), ME).do, 'exit')
  t.is(leftBehind(ended('exited', 3000), lease('claimed', 2000), ME).do, 'exit')
})

test('stops and kills are no crashes: this node asked, or the fencing watchdog killed it', t => {
  // killed by the watchdog, lease still this node's and running: no crash, but the lease is told (every agent's history shows it)
  t.deepEqual(leftBehind(ended('killed', 1000, 'killed by the fencing watchdog at 2026-01-01T00:00:00.000Z'), lease('running'), ME),
    { do: 'restart', why: 'killed by the fencing watchdog at 2026-01-01T00:00:00.000Z while the agent was down or still loading (not back within the watchdog\'s timeout of its last feed, or after a graceful stop within the restart grace)' })
  t.is(leftBehind(ended('killed', 1000, 'killed by the fencing watchdog'), lease('running', 2000, 'other'), ME).do, 'leave', 'moved on: nothing of this node\'s to tell')
  t.is(leftBehind(ended('killed', 1000, 'killed by the fencing watchdog'), lease('stopped'), ME).do, 'leave')
  t.is(leftBehind(ended('stopped'), lease('running'), ME).do, 'leave')
  // a start that never completed (the agent stopped while starting it): nothing to count
  t.is(leftBehind({ state: 'failed', error: 'the agent stopped while starting it' }, lease('running'), ME).do, 'leave')
  // a stop under way: no crash either; it is carried through (below)
  t.is(leftBehind({ state: 'stopping' }, lease('running'), ME).do, 'stop')
})
