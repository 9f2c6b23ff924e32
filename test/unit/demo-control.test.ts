// The demo's control requests (node/demo/control.ts, parseControl): each names what is wrong.
import test from 'ava'
import { frozen, parseControl } from '../../node/demo/control.ts'

test('control requests: kill (SIGKILL by default), start, cut (from some or all), heal', t => {
  t.deepEqual(parseControl({ op: 'kill', host: 'host2' }), { op: 'kill', host: 'host2', signal: 'SIGKILL' })
  t.deepEqual(parseControl({ op: 'kill', host: 'host2', signal: 'SIGSTOP' }), { op: 'kill', host: 'host2', signal: 'SIGSTOP' })
  t.deepEqual(parseControl({ op: 'start', host: 'host10' }), { op: 'start', host: 'host10' })
  t.deepEqual(parseControl({ op: 'cut', host: 'host1' }), { op: 'cut', host: 'host1' })
  t.deepEqual(parseControl({ op: 'cut', host: 'host1', from: ['host2', 'host2', 'host3'] }), { op: 'cut', host: 'host1', from: ['host2', 'host3'] })
  t.deepEqual(parseControl({ op: 'heal', host: 'host1' }), { op: 'heal', host: 'host1' })
})

test('bad control requests say what is wrong', t => {
  const err = (r: unknown): string => { const p = parseControl(r); return 'error' in p ? p.error : 'accepted' }
  t.regex(err(null), /expected a JSON object/)
  t.regex(err({ op: 'kill', host: '../x' }), /^host: expected a demo host's name/)
  t.regex(err({ op: 'kill', host: 'host1', signal: 'SIGHUP' }), /^signal: one of SIGKILL, SIGTERM, SIGINT, SIGSTOP, SIGCONT/)
  t.regex(err({ op: 'cut', host: 'host1', from: [] }), /^from: expected a list/)
  t.regex(err({ op: 'cut', host: 'host1', from: ['host1'] }), /cannot be cut off from itself/)
  t.regex(err({ op: 'reboot', host: 'host1' }), /^op: one of kill, start, cut, heal/)
})

test('frozen: a process stopped with SIGSTOP, not one running or gone', async t => {
  const { spawn } = await import('node:child_process')
  const p = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => { try { p.kill('SIGKILL') } catch {} })
  const pid = p.pid!
  t.false(frozen(pid))
  // the stop (and the go on) takes effect once the process is scheduled: on a loaded machine not within 100 ms
  const becomes = async (want: boolean): Promise<boolean> => {
    for (let i = 0; i < 60 && frozen(pid) !== want; i++) await new Promise(resolve => setTimeout(resolve, 50))
    return frozen(pid)
  }
  process.kill(pid, 'SIGSTOP')
  t.true(await becomes(true))
  process.kill(pid, 'SIGCONT')
  t.false(await becomes(false))
  t.false(frozen(2 ** 22 + 1), 'no such process')
})
