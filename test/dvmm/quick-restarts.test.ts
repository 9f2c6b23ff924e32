// A VM under `always` that ends cleanly every few seconds is restarted at once the first
// time, then only after a wait that doubles (restart.ts, as Kubernetes' CrashLoopBackOff):
// each restart wrote two changes to the cluster document, which keeps its whole history
// (bb45: a VM running 11 s at a time, 7,850 restarts a day). In-process grid, fake driver.
import test from 'ava'
import { startDvmmGrid, fakeVm, until, sleep } from './grid.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

test('quick clean runs in a row: restarted at once, then after 10 s, saying so; a stop or a leave ends the wait at once', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const starts: number[] = []
  n.driver.on('state', e => { if (e.id === 'job' && e.state === 'running') starts.push(Date.now()) })
  const other: number[] = []
  n.driver.on('state', e => { if (e.id === 'job2' && e.state === 'running') other.push(Date.now()) })
  // ends with status 0 after 10.2 s: a clean run (MIN_CLEAN_RUN_MS), a quick one
  await n.agent.state.write(w => {
    w.put('vms', fakeVm('job', 1, 2 ** 30, { command: ['fake:exit', '0', '10200'], restart: 'always' }))
    w.put('vms', fakeVm('job2', 1, 2 ** 30, { command: ['fake:exit', '0', '10200'], restart: 'always' }))
  })
  await until(() => starts.length >= 2, 30_000, 'the first restart')
  t.true(starts[1]! - starts[0]! < 10_200 + 3000, `the first restart at once: ${starts[1]! - starts[0]!} ms after the start`)
  // the second end: a wait of 10 s, said in the lease
  await until(() => /restarting in 10 s \(at \d\d:\d\d:\d\d UTC; 2 runs in a row under 10 min/.test(n.agent.state.read().get('leases', 'job')?.value.reason ?? ''), 20_000, 'the second end, with its wait')
  const ended = Date.now()
  t.is(n.agent.state.read().get('leases', 'job')?.value.status, 'starting')
  // job2, in the same wait, is asked stopped: stopped at once, never started again (rv45: busy until the wait was over)
  await until(() => /restarting in 10 s/.test(n.agent.state.read().get('leases', 'job2')?.value.reason ?? ''), 5000, 'job2 in its wait too')
  const asked = Date.now()
  await n.agent.state.write(w => { w.put('vms', { ...w.reader.get('vms', 'job2')!.value, desired: 'stopped' }) })
  await until(() => n.agent.state.read().get('leases', 'job2')?.value.status === 'stopped', 5000, 'job2 stopped within its wait')
  t.true(Date.now() - asked < 5000)
  await sleep(Math.max(0, 7000 - (Date.now() - ended)))
  t.is(starts.length, 2, 'not started again within the wait')
  await until(() => starts.length >= 3, 15_000, 'the restart after the wait')
  t.true(starts[2]! - ended >= 9000, `restarted ${starts[2]! - ended} ms after the second end`)
  t.is(other.length, 2, 'job2 not started again')
  // the third end: 20 s; the service's stop (a leave) ends the wait at once (rv45: it waited it out)
  await until(() => /restarting in 20 s/.test(n.agent.state.read().get('leases', 'job')?.value.reason ?? ''), 20_000, 'the third end, with its wait')
  const stopAt = Date.now()
  await n.dvmm.stop({ graceful: true })
  t.true(Date.now() - stopAt < 8000, `the service stopped ${Date.now() - stopAt} ms after it was asked`)
  t.is(starts.length, 3, 'nothing started by the stop')
})
