// Which states end `vm wait` and `--wait` (bb49: scripts polled and had to know which
// states are final), and the filters of `vm ls` / GET /v1/vms. Pure.
import test from 'ava'
import { waitVerdict, waitTimeoutMs, type VmSeen } from '../../node/dvmm/vm-wait.ts'
import { keepsVm, vmFilterOf, vmFilterQuery } from '../../node/dvmm/vm-filter.ts'

const vm = (state: string, desired = 'running', reason: string | null = null): VmSeen => ({ kind: 'vm', name: 'web', state, desired, node: state === 'pending' ? null : 'a1', reason })

test('waiting for running: running ends it; pending, starting, paused and unknown go on; failed, ended, stopped meanwhile and removed cannot get there', t => {
  t.deepEqual(waitVerdict('running', vm('running')), { done: true })
  for (const s of ['pending', 'starting', 'paused', 'unknown', 'stopping']) t.false(waitVerdict('running', vm(s, 'running', 'why')).done, s)
  t.like(waitVerdict('running', vm('pending', 'running', 'no node has 4 cpu free')), { done: false, now: 'pending (no node has 4 cpu free)' })
  t.is(waitVerdict('running', vm('failed', 'running', 'crashed 3 times in 24 h')).failed?.code, 'vm_failed')
  t.regex(waitVerdict('running', vm('failed', 'running', 'crashed 3 times in 24 h')).failed?.message ?? '', /^it failed: crashed 3 times in 24 h/)
  t.is(waitVerdict('running', vm('stopped', 'running', 'its command ended with status 0')).failed?.code, 'vm_ended')
  t.is(waitVerdict('running', vm('stopping', 'stopped')).failed?.code, 'desired_changed')
  t.is(waitVerdict('running', vm('stopped', 'stopped')).failed?.code, 'desired_changed')
  t.is(waitVerdict('running', { kind: 'gone' }).failed?.code, 'not_found')
  t.is(waitVerdict('running', { kind: 'stopping', message: 'removed, still stopping on a1' }).failed?.code, 'not_found')
})

test('waiting for stopped: stopped or failed end it (nothing runs); a start meanwhile cannot get there', t => {
  t.true(waitVerdict('stopped', vm('stopped', 'stopped')).done)
  t.true(waitVerdict('stopped', vm('failed', 'running', 'bad command')).done)
  t.false(waitVerdict('stopped', vm('stopping', 'stopped')).done)
  t.false(waitVerdict('stopped', vm('unknown', 'stopped')).done)
  t.is(waitVerdict('stopped', vm('running', 'running')).failed?.code, 'desired_changed')
  t.is(waitVerdict('stopped', { kind: 'gone' }).failed?.code, 'not_found')
})

test('waiting for gone: no VM and no run of a removed one; a removed one still stopping, or one that exists, go on', t => {
  t.true(waitVerdict('gone', { kind: 'gone' }).done)
  t.like(waitVerdict('gone', { kind: 'stopping', message: 'still stopping on a1' }), { done: false, now: 'still stopping on a1' })
  t.regex((waitVerdict('gone', vm('running')) as { now: string }).now, /not removed \(vgrid vm rm removes it\)/)
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
  t.is(vmFilterQuery({ state: 'running', labels: { 'a b': 'c=d' } }), '?state=running&label=a%20b%3Dc%3Dd')
  t.deepEqual(vmFilterOf({ label: 'a b=c=d' }), { labels: { 'a b': 'c=d' } }, 'a value may hold "="')
  t.is(vmFilterQuery({}), '')
})
