// A guest that reboots itself is started again on its node whatever its restart policy,
// counted no crash (a qemu guest's reset under -no-reboot ends QEMU with status 0, and
// under --restart on-failure read as a job that was done: left stopped). In-process grid,
// fake driver (its `fake:reboot` guest ends as a qemu guest's reboot does).
import test from 'ava'
import { startDvmmGrid, fakeVm, until } from './grid.ts'
import { serveDvmmRoutes } from './serve-routes.ts'
import { cli } from './cli-run.ts'

const DVMM = { settleMs: 300, tickMs: 100, fenceTimeoutMs: 2000, takeoverMarginMs: 500 }

test('a guest\'s reboot restarts it on its node under on-failure and never, counted no crash, shown as rebooted in its history', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const starts = new Map<string, number>()
  n.driver.on('state', e => { if (e.state === 'running') starts.set(e.id, (starts.get(e.id) ?? 0) + 1) })
  await n.agent.state.write(w => {
    w.put('vms', fakeVm('onf', 1, 2 ** 30, { command: ['fake:reboot', '300'], restart: 'on-failure' }))
    w.put('vms', fakeVm('nev', 1, 2 ** 30, { command: ['fake:reboot', '300'], restart: 'never' }))
    // beside them, what a clean exit under on-failure still is: done, left stopped
    w.put('vms', fakeVm('job', 1, 2 ** 30, { command: ['fake:exit', '0', '300'], restart: 'on-failure' }))
  })
  await until(() => (starts.get('onf') ?? 0) >= 2 && (starts.get('nev') ?? 0) >= 2, 20_000, 'both rebooted VMs started again')
  await until(() => n.agent.state.read().get('leases', 'job')?.value.status === 'stopped', 10_000, 'the job left stopped')
  t.is(starts.get('job'), 1)
  for (const vm of ['onf', 'nev']) {
    await until(() => n.dvmm.history.of(vm).length >= 4, 10_000, `${vm}'s second start in its history`)
    const l = n.agent.state.read().get('leases', vm)!.value
    t.deepEqual(l.crashes ?? [], [], `${vm}: no crash counted`)
    const events = n.dvmm.history.of(vm)
    t.deepEqual(events.slice(0, 4).map(e => e.event), ['placed', 'started', 'rebooted', 'started'], `${vm}: ${events.map(e => e.event).join(', ')}`)
    t.regex(events[2]!.detail ?? '', /^rebooted by its guest after \d+ s: restarting \(a guest's reboot is no crash, and restarts it whatever its restart policy\)$/)
  }
  // a second quick reboot waits, as quick clean runs in a row do
  await until(() => /^rebooted by its guest after \d+ s: restarting in 10 s \(at \d\d:\d\d:\d\d UTC; 2 runs in a row/.test(n.agent.state.read().get('leases', 'onf')?.value.reason ?? ''), 10_000, 'the second reboot, with its wait')
  t.deepEqual(n.agent.state.read().get('leases', 'onf')!.value.crashes ?? [], [])
})

test('a drain moves a VM waiting out its restart pause at once, without starting it on the draining node first (bb54)', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const starts: Array<{ node: string, at: number }> = []
  for (const n of g.nodes) n.driver.on('state', e => { if (e.id === 'rb' && e.state === 'running') starts.push({ node: n.agent.config.name, at: Date.now() }) })
  await g.nodes[0]!.agent.state.write(w => { w.put('vms', fakeVm('rb', 1, 2 ** 30, { command: ['fake:reboot', '300'], restart: 'never' })) })
  const lease = (): { holder: string, reason?: string } | undefined => g.nodes[0]!.agent.state.read().get('leases', 'rb')?.value
  // the second quick reboot: a pause of 10 s
  await until(() => /restarting in 10 s/.test(lease()?.reason ?? ''), 20_000, 'the pause after the second reboot')
  const holder = g.nodes.find(n => n.agent.id === lease()!.holder)!
  const other = g.nodes.find(n => n !== holder)!
  const before = starts.length
  const drained = Date.now()
  await holder.agent.state.write(w => { w.update('roll', holder.agent.id, { draining: true }) })
  await until(() => starts.slice(before).some(s => s.node === other.agent.config.name), 8000, 'started on the other node within the pause')
  t.true(Date.now() - drained < 8000)
  t.deepEqual(starts.slice(before).filter(s => s.node === holder.agent.config.name), [], 'not started on the draining node first')
})

test('a guest whose kernel panicked is said so in its history and the crash rule\'s reason, not "crashed (code 0)" (bb54)', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  await n.agent.state.write(w => {
    w.put('vms', fakeVm('pan', 1, 2 ** 30, { command: ['fake:panic', '200'], restart: 'never' }))
    w.put('vms', fakeVm('pan2', 1, 2 ** 30, { command: ['fake:panic', '200'] }))
  })
  await until(() => n.agent.state.read().get('leases', 'pan')?.value.status === 'stopped', 10_000, 'the crash rule to stop it')
  t.is(n.agent.state.read().get('leases', 'pan')!.value.reason, 'crashed: its guest\'s kernel panicked (vgrid vm console pan shows why); restart policy is never')
  await until(() => n.dvmm.history.of('pan2').some(e => e.event === 'crashed'), 10_000, 'the crash in its history')
  t.regex(n.dvmm.history.of('pan2').find(e => e.event === 'crashed')!.detail ?? '', /^crashed: its guest's kernel panicked \(vgrid vm console pan2 shows why\): crash 1 within 24 h/)
})

test('vm start of a VM in its restart pause starts it at once, and says so (bb54: "now starting", and the pause went on)', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: DVMM })
  t.teardown(g.stop)
  const n = g.nodes[0]!
  const api = await serveDvmmRoutes(t, n.dvmm)
  await n.agent.state.write(w => { w.put('vms', fakeVm('rb', 1, 2 ** 30, { command: ['fake:reboot', '300'], restart: 'never' })) })
  await until(() => /restarting in 10 s/.test(n.agent.state.read().get('leases', 'rb')?.value.reason ?? ''), 20_000, 'the pause after the second reboot')
  const starts: number[] = []
  n.driver.on('state', e => { if (e.id === 'rb' && e.state === 'running') starts.push(Date.now()) })
  const asked = Date.now()
  const r = await cli(api, 'vm', 'start', 'rb')
  t.is(r.code, 0, r.err)
  t.regex(r.out, /^rb: desired running, now starting \(its restart pause ends now: it starts at once on its node\)$/m, r.out)
  await until(() => starts.length > 0, 5000, 'the start, well within the 10 s pause')
  t.true(starts[0]! - asked < 5000)
  // the count of quick runs begins anew: its next reboot restarts at once
  const atOnce = (): boolean => n.dvmm.history.of('rb').some(e => e.event === 'rebooted' && e.at >= asked && /^rebooted by its guest after \d+ s: restarting \(a guest's/.test(e.detail ?? ''))
  await until(atOnce, 5000, 'the next reboot, restarted at once')
})
