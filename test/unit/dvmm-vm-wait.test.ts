// Which states end `vm wait` and `--wait` (bb49: scripts polled and had to know which
// states are final), and the filters of `vm ls` / GET /v1/vms. Pure.
import test from 'ava'
import { waitForVm, waitVerdict, waitTimeoutMs, type VmSeen } from '../../node/dvmm/vm-wait.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import { CliError } from '../../node/cli/client.ts'
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

const row = (state: string, node: string | null, reason: string | null = null): VmDetail => ({ name: 'web', id: 'web', state, desired: 'running', node, reason, lease: null, created: 1 }) as unknown as VmDetail

test('waitForVm: a look that hangs past the answer time is ridden out, the wait\'s own timeout holds (rv53, bb51)', async t => {
  let n = 0
  const api = { get: async <T>(): Promise<T> => (++n === 2 ? await new Promise<never>(() => {}) : row(n < 3 ? 'starting' : 'running', 'a1')) as T }
  const r = await waitForVm(api, 'web', 'running', { timeoutMs: 5000, answerMs: 200, pollMs: 10 })
  t.is(r.detail?.state, 'running')
  t.is(n, 3, 'the hung look was given up, the next one judged')
  // one that never answers: the wait ends at its own timeout, not later
  const t0 = Date.now()
  await t.throwsAsync(waitForVm({ get: async () => await new Promise<never>(() => {}) }, 'web', 'running', { timeoutMs: 300, answerMs: 30_000, pollMs: 10 }), { message: /^web: not running after 0.3 s: not looked at yet$/ })
  t.true(Date.now() - t0 < 1500)
})

test('waitForVm: a progress line is said when it says something new, not when a countdown in it moves (bb51, rv53)', async t => {
  const seq = [row('starting', 'a1', 'restarting in 5 s'), row('starting', 'a1', 'restarting in 4 s'), row('starting', 'a2'), row('starting', 'a12'), row('running', 'a12')]
  let n = 0
  const lines: string[] = []
  await waitForVm({ get: async <T>(): Promise<T> => seq[Math.min(n++, seq.length - 1)] as T }, 'web', 'running', { timeoutMs: 5000, pollMs: 1, progress: l => { lines.push(l) } })
  t.deepEqual(lines, ['web: starting on a1 (restarting in 5 s)', 'web: starting on a2', 'web: starting on a12'])
})

test('waitForVm: a VM made again under the name is another one; a wrong address is said at once', async t => {
  let n = 0
  const api = { get: async <T>(): Promise<T> => ({ ...row('starting', 'a1'), created: n++ === 0 ? 1 : 2 }) as T }
  await t.throwsAsync(waitForVm(api, 'web', 'running', { timeoutMs: 5000, pollMs: 1 }), { message: /web: will not be running: it was removed, and a new VM of the name made since/ })
  const unreachable = { get: async (): Promise<never> => { throw new CliError('cannot reach the vgrid agent', 1, { code: 'agent_unreachable' }) } }
  await t.throwsAsync(waitForVm(unreachable, 'web', 'running', { timeoutMs: 60_000 }), { message: /cannot reach/ })
  // after the caller's own request reached it, the agent's restart is ridden out
  let m = 0
  const restarting = { get: async <T>(): Promise<T> => { if (m++ < 2) throw new CliError('cannot reach the vgrid agent', 1, { code: 'agent_unreachable' }); return row('running', 'a1') as T } }
  t.is((await waitForVm(restarting, 'web', 'running', { timeoutMs: 5000, pollMs: 1, asked: true })).detail?.state, 'running')
})
