// Which states end `vm wait` and `--wait` (bb49: scripts polled and had to know which
// states are final), and the filters of `vm ls` / GET /v1/vms. Pure.
import test from 'ava'
import { waitVerdict, waitTimeoutMs, type VmSeen } from '../../node/dvmm/vm-wait.ts'
import { keepsVm, vmFilterOf, vmFilterQuery } from '../../node/dvmm/vm-filter.ts'

const vm = (state: string, desired = 'running', reason: string | null = null, lease: { status?: string, completed?: boolean, parked?: boolean } | null = null): VmSeen => ({ kind: 'vm', name: 'web', state, desired, node: state === 'pending' ? null : 'a1', reason, lease })

test('waiting for running: running ends it; pending, starting, paused and unknown go on; failed, ended, stopped meanwhile and removed cannot get there', t => {
  t.deepEqual(waitVerdict('running', vm('running')), { done: true })
  for (const s of ['pending', 'starting', 'paused', 'unknown', 'stopping']) t.like(waitVerdict('running', vm(s, 'running', 'why', { status: 'running' })), { done: false, failed: undefined }, s)
  t.like(waitVerdict('running', vm('pending', 'running', 'no node has 4 cpu free')), { done: false, now: 'pending (no node has 4 cpu free)' })
  t.is(waitVerdict('running', vm('failed', 'running', 'crashed 3 times in 24 h')).failed?.code, 'vm_failed')
  t.regex(waitVerdict('running', vm('failed', 'running', 'crashed 3 times in 24 h')).failed?.message ?? '', /^it failed: crashed 3 times in 24 h/)
  // an end is told by its lease: completed (a clean end its policy keeps), or the crash rule's stop
  t.is(waitVerdict('running', vm('stopped', 'running', 'exited cleanly; restart policy is never', { status: 'stopped', completed: true })).failed?.code, 'vm_ended')
  t.is(waitVerdict('running', vm('stopped', 'running', 'exited with 1: 3 crashes within 24 h, left stopped', { status: 'stopped' })).failed?.code, 'vm_failed')
  t.regex(waitVerdict('running', vm('stopped', 'running', 'x: 3 crashes within 24 h, left stopped', { status: 'stopped' })).failed?.message ?? '', /^it ended and was left stopped: x: 3 crashes/)
  // rv51: shown stopped while it starts again (killed by its node's fence, this node fenced,
  // an end not written yet): its lease is not stopped, or is parked by a start
  for (const lease of [{ status: 'starting' }, { status: 'running' }, { status: 'stopped', parked: true }, null]) t.like(waitVerdict('running', vm('stopped', 'running', 'killed on a1: fenced; it starts again there once that node sees a majority', lease)), { done: false, failed: undefined }, JSON.stringify(lease))
  // after the caller's own start, a stop through another node ends the wait; vm wait waits for a start
  t.is(waitVerdict('running', vm('stopping', 'stopped'), { asked: true }).failed?.code, 'desired_changed')
  t.is(waitVerdict('running', vm('stopped', 'stopped'), { asked: true }).failed?.code, 'desired_changed')
  t.like(waitVerdict('running', vm('stopped', 'stopped')), { done: false, failed: undefined, now: 'stopped on a1; desired stopped: waiting for a start' })
  t.is(waitVerdict('running', { kind: 'gone' }).failed?.code, 'not_found')
  // bb51: a VM of the name made since the wait began is another one
  t.like(waitVerdict('running', { kind: 'replaced' }), { failed: { code: 'not_found', message: 'it was removed, and a new VM of the name made since' } })
  t.like(waitVerdict('gone', { kind: 'replaced' }), { done: true, note: 'removed, and a new VM of the name made since' })
  t.is(waitVerdict('running', { kind: 'stopping', message: 'removed, still stopping on a1' }).failed?.code, 'not_found')
})

test('waiting for stopped: stopped or failed end it (nothing runs); a start meanwhile cannot get there', t => {
  t.true(waitVerdict('stopped', vm('stopped', 'stopped')).done)
  t.true(waitVerdict('stopped', vm('failed', 'running', 'bad command')).done)
  t.false(waitVerdict('stopped', vm('stopping', 'stopped')).done)
  t.false(waitVerdict('stopped', vm('unknown', 'stopped')).done)
  t.is(waitVerdict('stopped', vm('running', 'running'), { asked: true }).failed?.code, 'desired_changed')
  // bb51: a job under restart never stops by itself: vm wait --for stopped waits for it
  t.like(waitVerdict('stopped', vm('running', 'running')), { done: false, failed: undefined })
  t.is(waitVerdict('stopped', { kind: 'gone' }).failed?.code, 'not_found')
})

test('waiting for gone: no VM and no run of a removed one; a removed one still stopping, or one that exists, go on', t => {
  t.true(waitVerdict('gone', { kind: 'gone' }).done)
  t.like(waitVerdict('gone', { kind: 'stopping', message: 'still stopping on a1' }), { done: false, now: 'still stopping on a1' })
  t.regex((waitVerdict('gone', vm('running')) as { now: string }).now, /not removed \(vgrid vm rm removes it\)/)
  // after the caller's own rm, one of the name is a new VM, made once the old run had ended (rv51: rm --wait followed it to its timeout)
  t.like(waitVerdict('gone', vm('pending'), { afterRm: true }), { done: true, note: 'its run ended, and a new VM of the name was made meanwhile' })
})

test('--timeout: seconds or a duration, above 0, at most 24 days', t => {
  t.is(waitTimeoutMs(undefined), 300_000)
  t.is(waitTimeoutMs('90'), 90_000)
  t.is(waitTimeoutMs('1.5'), 1500)
  t.is(waitTimeoutMs('2m'), 120_000)
  for (const bad of ['0', '-1', 'soon', '30d']) t.throws(() => waitTimeoutMs(bad), { message: /--timeout ".*" is not a duration above 0/ }, bad)
})

test('vm filters: each given part must hold; bad values are named', t => {
  const row = { state: 'running' as const, node: 'a1' as string | null, nodeId: '12D3KooWabc' as string | null, app: 'shop' as string | null }
  t.true(keepsVm({}, row, undefined))
  t.true(keepsVm(vmFilterOf({ state: 'running', node: 'a1', app: 'shop', label: 'tier=db' }), row, { tier: 'db', x: 'y' }))
  t.true(keepsVm({ node: '12D3KooWabc' }, row, undefined), 'a node by id')
  t.false(keepsVm({ state: 'stopped' }, row, undefined))
  t.false(keepsVm({ node: 'a2' }, row, undefined))
  t.false(keepsVm({ app: 'blog' }, { ...row, app: null }, undefined))
  t.false(keepsVm(vmFilterOf({ label: ['tier=db', 'zone=1'] }), row, { tier: 'db' }), 'every label')
  t.false(keepsVm({ node: 'a1' }, { ...row, node: null, nodeId: null }, undefined), 'a pending VM is on no node')
  t.throws(() => vmFilterOf({ state: 'runing' }), { message: /state "runing" is none of pending, starting, running, stopping, stopped, failed, paused, unknown/ })
  t.throws(() => vmFilterOf({ state: ['running', 'failed'] }), { message: /state must be given once/ })
  t.throws(() => vmFilterOf({ label: 'tier' }), { message: /label "tier" is not KEY=VALUE/ })
  t.throws(() => vmFilterOf({ label: ['t=a', 't=b'] }), { message: /label t is given twice/ })
  // names an object has of its own are labels like any (rv51: "constructor" was given twice)
  t.deepEqual({ ...vmFilterOf({ label: ['constructor=x', '__proto__=y'] }).labels }, { constructor: 'x', ['__proto__']: 'y' })
  t.false(keepsVm(vmFilterOf({ label: 'constructor=x' }), row, {}))
  t.is(vmFilterQuery({ state: 'running', labels: { 'a b': 'c=d' } }), '?state=running&label=a%20b%3Dc%3Dd')
  t.deepEqual(vmFilterOf({ label: 'a b=c=d' }), { labels: { 'a b': 'c=d' } }, 'a value may hold "="')
  t.is(vmFilterQuery({}), '')
})
