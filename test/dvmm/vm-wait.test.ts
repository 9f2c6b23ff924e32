// `vgrid vm wait`, the --wait of vm create|start|stop|rm, and vm ls's filters, against
// a real API of in-process agents with the fake driver (bb49: scripts polled vm show and
// listed every VM to find the failed ones).
import test from 'ava'
import { cli } from './cli-run.ts'
import { serveDvmmRoutes } from './serve-routes.ts'
import { startDvmmGrid, until } from './grid.ts'

test('vm create|start|stop|rm --wait, vm wait and vm ls filters', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 200, tickMs: 100, stopGraceMs: 12_000 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)

  // create --wait answers once it runs, the pending and starting states on stderr
  const created = await cli(api, 'vm', 'create', 'web', '--cpu', '1', '--memory', '64M', '--label', 'tier=web', '--app', 'shop', '--wait', '--', 'fake:run')
  t.is(created.code, 0, created.err)
  t.regex(created.out, /^web: running$/m)
  t.notRegex(created.out, /pending|starting/, 'progress goes to stderr')
  t.is((await cli(api, 'vm', 'create', 'other', '--cpu', '0.5', '--memory', '64M', '--stopped', '--', 'fake:run')).code, 0)
  t.regex((await cli(api, 'vm', 'create', 'x', '--cpu', '1', '--memory', '64M', '--stopped', '--wait', '--', 'fake:run')).err, /--wait waits until the VM runs, and --stopped makes it without starting it/)
  t.regex((await cli(api, 'vm', 'stop', 'web', '--timeout', '5')).err, /--timeout is how long --wait waits: give --wait too/)

  // filters, in the CLI and the API
  const only = async (...f: string[]): Promise<string[]> => {
    const r = await cli(api, 'vm', 'ls', '--json', ...f)
    t.is(r.code, 0, r.err)
    return (JSON.parse(r.out) as { vms: Array<{ name: string }> }).vms.map(x => x.name)
  }
  t.deepEqual(await only(), ['other', 'web'])
  t.deepEqual(await only('--state', 'running'), ['web'])
  t.deepEqual(await only('--state', 'stopped'), ['other'])
  t.deepEqual(await only('--label', 'tier=web', '--app', 'shop'), ['web'])
  t.deepEqual(await only('--label', 'tier=db'), [])
  const holder = g.nodes[0]!.agent.state.read().get('leases', 'web')!.value.holder
  t.deepEqual(await only('--node', holder), ['web'], 'a node by id')
  t.deepEqual(await only('--node', `${holder.slice(0, 8)}…${holder.slice(-6)}`), ['web'], 'by the short id vgrid nodes shows')
  const holderName = `a${g.nodes.findIndex(n => n.agent.id === holder)}`
  t.deepEqual(await only('--node', holderName), ['web'], 'by name')
  const noNode = await cli(api, 'vm', 'ls', '--node', 'nosuchnode')
  t.is(noNode.code, 1)
  t.regex(noNode.err, /no node with id or name "nosuchnode"/)
  t.regex((await cli(api, 'vm', 'ls', '--state', 'failed')).out, /^no VMs match$/m)
  const badState = await cli(api, 'vm', 'ls', '--state', 'runing')
  t.is(badState.code, 2)
  t.regex(badState.err, /--state "runing" is none of pending, starting, running/)
  const res = await fetch(`http://${api}/v1/vms?state=runing`)
  t.is(res.status, 400)
  t.regex(((await res.json()) as { error: { message: string } }).error.message, /state "runing" is none of/)

  // stop --wait until nothing runs, start --wait until it runs again
  const stopped = await cli(api, 'vm', 'stop', 'web', '--wait')
  t.is(stopped.code, 0, stopped.err)
  t.regex(stopped.out, /^web: stopped/m)
  const started = await cli(api, 'vm', 'start', 'web', '--wait', '--json')
  t.is(started.code, 0, started.err)
  t.like(JSON.parse(started.out), { name: 'web', state: 'running', desired: 'running' })

  // a VM that cannot get there: the wait ends at once with why, or at its timeout with where it stands
  const failing = await cli(api, 'vm', 'create', 'bad', '--cpu', '0.5', '--memory', '64M', '--restart', 'never', '--wait', '--json', '--', 'fake:nope')
  t.is(failing.code, 1, failing.out + failing.err)
  t.like(JSON.parse(failing.out), { error: { code: 'vm_failed' } })
  t.regex(failing.err, /^bad: will not be running: it failed: /m)
  const nowhere = await cli(api, 'vm', 'create', 'nowhere', '--cpu', '0.5', '--memory', '64M', '--constraint', 'rack=none', '--wait', '--timeout', '2', '--', 'fake:run')
  t.is(nowhere.code, 1)
  t.regex(nowhere.err, /^nowhere: not running after 2 s: pending \(.*rack=none/m)
  t.regex(nowhere.err, /^nowhere: pending/m, 'where it stood, said as it waited')
  // vm wait waits on a VM desired otherwise (a job may end by itself, another may stop it), to its timeout
  const notStopped = await cli(api, 'vm', 'wait', 'web', '--for', 'stopped', '--timeout', '1', '--json')
  t.like(JSON.parse(notStopped.out), { error: { code: 'timeout' } })
  // bb51: a job under restart never is waited for until it ends by itself; one that crashed is failed
  t.is((await cli(api, 'vm', 'create', 'job', '--cpu', '0.1', '--memory', '64M', '--restart', 'never', '--', 'fake:exit', '0', '3000')).code, 0)
  const jobDone = await cli(api, 'vm', 'wait', 'job', '--for', 'stopped', '--json')
  t.is(jobDone.code, 0, jobDone.err)
  t.like(JSON.parse(jobDone.out), { name: 'job', state: 'stopped', lease: { completed: true } })
  t.is((await cli(api, 'vm', 'create', 'crash', '--cpu', '0.1', '--memory', '64M', '--restart', 'never', '--', 'fake:exit', '3', '300')).code, 0)
  t.like(JSON.parse((await cli(api, 'vm', 'wait', 'crash', '--for', 'stopped', '--json')).out), { state: 'failed' })
  t.deepEqual(await only('--state', 'failed'), ['bad', 'crash'], 'a crash left stopped is failed (bb51: vm ls --state failed missed it)')
  // an agent never reached is said at once, not retried for the whole timeout (bb51)
  const t0 = Date.now()
  const wrong = await cli('127.0.0.1:1', 'vm', 'wait', 'web', '--json')
  t.like(JSON.parse(wrong.out), { error: { code: 'agent_unreachable' } })
  t.true(Date.now() - t0 < 20_000)
  t.is((await cli(api, 'vm', 'wait', 'web', '--for', 'later')).code, 2)

  // rm --wait: until its run has ended (the fake ignores the stop, so the grace passes); the name is free at once then
  t.is((await cli(api, 'vm', 'create', 'stubborn', '--cpu', '0.5', '--memory', '64M', '--wait', '--', 'fake:ignore-stop')).code, 0)
  const rm = await fetch(`http://${api}/v1/vms/stubborn`, { method: 'DELETE' })
  t.is(rm.status, 200)
  const meanwhile = await fetch(`http://${api}/v1/vms/stubborn`)
  t.is(meanwhile.status, 404)
  const body = (await meanwhile.json()) as { error: { code: string, message: string } }
  t.is(body.error.code, 'still_stopping')
  t.regex(body.error.message, /^no VM "stubborn": it was removed, and a[01] is still stopping its run \(lease epoch 1, (running|stopping)\)$/)
  const gone = await cli(api, 'vm', 'wait', 'stubborn', '--for', 'gone')
  t.is(gone.code, 0, gone.err)
  t.regex(gone.out, /^stubborn: gone$/m)
  t.regex(gone.err, /still stopping its run/, 'said while it waited')
  t.is((await cli(api, 'vm', 'create', 'stubborn', '--cpu', '0.5', '--memory', '64M', '--stopped', '--', 'fake:run')).code, 0, 'the name is free')
  const rmWait = await cli(api, 'vm', 'rm', 'web', '--wait')
  t.is(rmWait.code, 0, rmWait.err)
  t.regex(rmWait.out, /^web: gone$/m)
  t.regex(rmWait.err, /^web: removed/m, 'the rm\'s own line first (rv51)')
  t.false([...g.nodes].some(n => n.fake.vms.get('web')?.state === 'running'), 'nothing of it runs')
  const nosuch = await cli(api, 'vm', 'wait', 'nosuch')
  t.is(nosuch.code, 1)
  t.regex(nosuch.err, /^no VM "nosuch"$/m, 'not "removed" (rv51)')
  t.regex((await cli(api, 'vm', 'ls', '--label', 't=a', '--label', 't=b')).err, /--label t is given twice with different values/)
})

test('vm stop --wait of a VM whose node died waits until that node\'s fence has passed (bb51: it ended while the run went on)', async t => {
  const FENCE_MS = 15_000
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 200, tickMs: 100, fenceTimeoutMs: FENCE_MS } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  t.is((await cli(api, 'vm', 'create', 'far', '--cpu', '0.5', '--memory', '64M', '--constraint', 'pin=x', '--stopped', '--', 'fake:run')).code, 0)
  // on a node other than the one asked
  const far = g.nodes[2]!
  await far.agent.state.write(w => { w.setLabel(far.agent.id, 'pin', 'x') })
  await until(() => g.nodes.every(n => n.agent.state.read().labelsOf(far.agent.id).pin === 'x'), 10_000, 'the label everywhere')
  t.is((await cli(api, 'vm', 'start', 'far', '--wait')).code, 0)
  t.is(g.nodes[0]!.agent.state.read().get('leases', 'far')?.value.holder, far.agent.id)
  const killedAt = Date.now()
  await far.dvmm.stop({ graceful: false })
  await far.agent.stop({ graceful: false })
  await until(() => g.nodes[0]!.agent.membership.members.get(far.agent.id)?.state === 'dead', 30_000, 'the node seen dead')
  const stopped = await cli(api, 'vm', 'stop', 'far', '--wait')
  t.is(stopped.code, 0, stopped.err)
  t.regex(stopped.err, /far: stopping on a2 \(its node a2 is not alive: its run there ends with that node's fence, within \d+ s\)/)
  t.regex(stopped.out, /^far: stopped \(its node a2 is not alive: its run there was ended by that node's fence/m)
  t.true(Date.now() - killedAt >= FENCE_MS, `answered ${Date.now() - killedAt} ms after the kill: not before the fence timeout`)
})
