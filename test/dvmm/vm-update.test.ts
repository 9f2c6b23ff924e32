// `vgrid vm update` against a real API of in-process agents with the fake driver: a
// stopped VM resized and started with its new size; a running one refused a new size
// but given labels; volumes attached and detached; and a size changed while a claim
// settles (an update merged from another node) never runs the VM with a size its node
// did not reserve.
import test from 'ava'
import { cli } from './cli-run.ts'
import { serveDvmmRoutes } from './serve-routes.ts'
import { recordStarts, startDvmmGrid, until, vmApi } from './grid.ts'
import { gvsOf, socketOf } from '../gvs/agent-grid.ts'
import { writeBootSector } from './boot-sector.ts'
import { apiOf } from '../gvs/hosts.ts'

const MiB = 2 ** 20

test('vm update: a stopped VM resized runs with its new size; a running one keeps its size and takes labels', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100, stopGraceMs: 12_000 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const started = recordStarts(g)

  t.is((await cli(api, 'vm', 'create', 'web', '--cpu', '1', '--memory', '64M', '--label', 'old=1', '--stopped', '--', 'fake:run')).code, 0)
  const up = await cli(api, 'vm', 'update', 'web', '--cpu', '2', '--memory', '128M', '--label', 'tier=web', '--rm-label', 'old', '--restart', 'on-failure')
  t.is(up.code, 0, up.err)
  t.regex(up.out, /^web: updated cpu, memory, restart, labels$/m)
  const again = await cli(api, 'vm', 'update', 'web', '--memory', '128M', '--json')
  t.is(again.code, 0, again.err)
  t.deepEqual(JSON.parse(again.out).changed, [], 'already so: nothing changed')
  const spec = g.nodes[1]!.agent.state.read().get('vms', 'web')?.value.spec
  t.like(spec, { cpu: 2, memoryBytes: 128 * MiB, restart: 'on-failure', labels: { tier: 'web' } })

  t.is((await cli(api, 'vm', 'start', 'web', '--wait')).code, 0)
  t.like(g.nodes[0]!.agent.state.read().get('leases', 'web')?.value, { cpu: 2, memoryBytes: 128 * MiB }, 'reserved with its new size')
  t.like(started.at(-1), { id: 'web', vcpus: 2, memoryMiB: 128 }, 'run with it')

  // running: its size waits for a stop; labels and the restart policy do not
  const refused = await cli(api, 'vm', 'update', 'web', '--memory', '256M', '--label', 'x=y', '--json')
  t.is(refused.code, 1)
  t.is(JSON.parse(refused.out).error.code, 'vm_running')
  t.regex(refused.err, /VM "web" runs on a[01] \(or is being started there\): .*change only while nothing of it runs.*\(this update changes memory\); stop it first \(vgrid vm stop web --wait\)/)
  t.is(g.nodes[0]!.agent.state.read().get('vms', 'web')?.value.spec.labels?.x, undefined, 'nothing of a refused update is written')
  const labelled = await cli(api, 'vm', 'update', 'web', '--label', 'x=y', '--restart', 'always')
  t.is(labelled.code, 0, labelled.err)
  t.like(g.nodes[0]!.agent.state.read().get('vms', 'web')?.value.spec, { labels: { tier: 'web', x: 'y' }, restart: 'always' })
  t.is(started.filter(s => s.id === 'web').length, 1, 'a label does not restart it')
  // each update is in its history (bb52: none left a trace)
  const shown = await cli(api, 'vm', 'show', 'web')
  t.regex(shown.out, /updated on a0 \(epoch 1\): restart on-failure -> always; labels tier=web -> tier=web,x=y$/m)
  // and the one before its first start, when it had no lease (kept in the VM's entry, `updates`)
  t.regex(shown.out, /updated on a0: cpu 1 -> 2; memory 64M -> 128M; restart always -> on-failure; labels old=1 -> tier=web$/m, shown.out)

  // wrong requests: said before anything is asked, or by the agent
  t.regex((await cli(api, 'vm', 'update', 'web')).err, /say what to change/)
  t.regex((await cli(api, 'vm', 'update', 'web', '--label', 'a=b', '--rm-label', 'a')).err, /--label a=\.\.\. and --rm-label a: give one of them/)
  t.regex((await cli(api, 'vm', 'update', 'web', '--anti-affinity', 'g', '--no-anti-affinity')).err, /give one of them/)
  const missing = await cli(api, 'vm', 'update', 'nosuch', '--cpu', '1')
  t.is(missing.code, 1)
  t.regex(missing.err, /no VM "nosuch"/)
  const big = await cli(api, 'vm', 'update', 'web', '--cpu', '64')
  t.regex(big.err, /cpu: 64 vCPUs is more than any node has \(largest: 4\)/)
  const res = await fetch(`http://${api}/v1/vms/web`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ volumes: ['/t/x'] }) })
  t.is(res.status, 400)
  t.regex(((await res.json()) as { error: { message: string } }).error.message, /a process VM cannot attach volumes/)
})

test('a size changed while a claim settles: the holder parks the lease and the VM runs with the new size at the next epoch', async t => {
  // a long settle window: the change lands while the claim waits in it
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 2000, tickMs: 100 } })
  t.teardown(g.stop)
  const started = recordStarts(g)
  const a = g.nodes[0]!.agent.state
  await a.write(w => { w.put('vms', { id: 'job', name: 'job', app: null, desired: 'running', created: 1, spec: { driver: 'process', cpu: 1, memoryBytes: 64 * MiB, volumes: [], constraints: {}, command: ['fake:run'] } }) })
  await until(() => a.read().get('leases', 'job')?.value.status === 'claimed', 10_000, 'a claim')
  const claimed = a.read().get('leases', 'job')!.value
  t.is(claimed.memoryBytes, 64 * MiB)
  // as an update through another node that merged after the claim (the running check passed there)
  await a.write(w => { const v = w.reader.get('vms', 'job')!.value; w.update('vms', 'job', { spec: { ...v.spec, memoryBytes: 256 * MiB } }) })
  await until(() => { const l = a.read().get('leases', 'job')?.value; return l?.status === 'running' && l.memoryBytes === 256 * MiB }, 20_000, 'the VM running with its new size')
  const l = a.read().get('leases', 'job')!.value
  t.true(l.epoch > claimed.epoch, `placed anew at the next epoch (${claimed.epoch} -> ${l.epoch})`)
  const runs = started.filter(s => s.id === 'job')
  t.deepEqual(runs.map(s => s.memoryMiB), [256], 'never run with a size other than its lease reserved')
})

test('vm update --attach|--detach: a stopped VM gets and gives up volumes, whose lease then names them; a running one is refused', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=100G', dvmm: { settleMs: 300, tickMs: 100, stopGraceMs: 12_000 }, volumeStore: true })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const gvs = apiOf(gvsOf(g.nodes[0]!.agent))
  t.teardown(async () => { await gvs.close() })
  const ids: Record<string, string> = {}
  for (const p of ['/t/boot', '/t/data', '/t/other']) {
    const made = await gvs.inject({ method: 'POST', url: '/v1/volumes', payload: { path: p, size: '8M' } })
    t.is(made.statusCode, 201, made.body)
    ids[p] = made.json<{ id: string }>().id
  }
  await until(() => g.nodes.every(n => Object.values(ids).every(id => n.agent.state.read().get('volumes', id) != null)), 20_000, 'the volumes on both nodes')
  // a qemu VM that boots from its first volume (the fake driver stands for QEMU here), which has a boot sector; another VM's disk
  await writeBootSector(socketOf(g.nodes[0]!.agent), 't/boot')
  t.is((await cli(api, 'vm', 'create', 'srv', '--cpu', '1', '--memory', '64M', '--volume', '/t/boot', '--stopped')).code, 0)
  t.is((await cli(api, 'vm', 'create', 'db', '--driver', 'qemu', '--kernel', process.execPath, '--cpu', '1', '--memory', '64M', '--volume', '/t/other', '--stopped')).code, 0)
  const spec = (): string[] | undefined => g.nodes[0]!.agent.state.read().get('vms', 'srv')?.value.spec.volumes

  const attached = await cli(api, 'vm', 'update', 'srv', '--attach', '/t/data')
  t.is(attached.code, 0, attached.err)
  t.regex(attached.out, /^srv: updated volumes$/m)
  t.deepEqual(spec(), [ids['/t/boot'], ids['/t/data']])
  const taken = await cli(api, 'vm', 'update', 'srv', '--attach', '/t/other', '--json')
  t.is(JSON.parse(taken.out).error.code, 'volume_in_use')
  t.regex(taken.err, /\/t\/other is already a disk of VM db/)
  const nope = await cli(api, 'vm', 'update', 'srv', '--detach', '/t/nope')
  t.regex(nope.err, /--detach \/t\/nope: VM srv has no volume \/t\/nope \(it has \/t\/boot, \/t\/data\)/)
  t.is(nope.code, 2, 'a bad value')
  t.regex((await cli(api, 'vm', 'update', 'srv', '--detach', '/t/boot', '--detach', '/t/data')).err, /this VM boots from its first volume \(it has neither kernel nor image\): it keeps at least one/)

  const first = await cli(api, 'vm', 'start', 'srv', '--wait')
  t.is(first.code, 0, first.out + first.err)
  t.deepEqual(g.nodes[0]!.agent.state.read().get('leases', 'srv')?.value.disks, [ids['/t/boot'], ids['/t/data']], 'its lease names the disks it runs with')
  // a list made from what the client saw, changed meanwhile through another node: refused, not undone (rv55)
  const stale = await fetch(`http://${api}/v1/vms/srv`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ volumes: ['/t/boot'], volumesWere: ['/t/boot'] }) })
  t.is(stale.status, 409)
  t.regex(((await stale.json()) as { error: { message: string } }).error.message, /the volumes of VM "srv" were changed through another node meanwhile \(now \/t\/boot, \/t\/data\): nothing was changed/)
  const running = await cli(api, 'vm', 'update', 'srv', '--detach', '/t/data', '--json')
  t.is(JSON.parse(running.out).error.code, 'vm_running')
  t.regex(running.err, /\(this update changes volumes\)/)

  // stopped: detached, the volume is nobody's disk and goes with vol rm
  t.is((await cli(api, 'vm', 'stop', 'srv', '--wait')).code, 0)
  const inUse = await gvs.inject({ method: 'DELETE', url: `/v1/volumes/${ids['/t/data']!}` })
  t.is(inUse.statusCode, 409, 'a disk of a VM is not removed')
  const detached = await cli(api, 'vm', 'update', 'srv', '--detach', '/t/data')
  t.is(detached.code, 0, detached.err)
  t.deepEqual(spec(), [ids['/t/boot']])
  await until(() => g.nodes.every(n => n.agent.state.read().get('vms', 'srv')?.value.spec.volumes.length === 1), 20_000, 'the detach on both nodes')
  const rm = await gvs.inject({ method: 'DELETE', url: `/v1/volumes/${ids['/t/data']!}` })
  t.is(rm.statusCode, 200, rm.body)
  const again = await cli(api, 'vm', 'start', 'srv', '--wait')
  t.is(again.code, 0, again.out + again.err)
  t.deepEqual(g.nodes[0]!.agent.state.read().get('leases', 'srv')?.value.disks, [ids['/t/boot']])
})

test('two updates of one VM through two nodes at once: one kept and answered 200, the other answered 409 changed_meanwhile, never both', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  const apis = g.nodes.map(n => vmApi(t, n))
  t.is((await apis[0]!.inject({ method: 'POST', url: '/v1/vms', payload: { name: 'web', driver: 'process', cpu: 1, memory: '64M', command: ['fake:run'], desired: 'stopped' } })).statusCode, 201)
  await until(() => g.nodes.every(n => n.agent.state.read().get('vms', 'web') != null), 20_000, 'the VM on both nodes')
  for (const [round, field] of [[0, 'memory'], [1, 'labels']] as const) {
    const bodies = field === 'memory' ? [{ memory: `${96 + round * 64}M` }, { memory: `${128 + round * 64}M` }] : [{ labels: { who: 'a0' } }, { labels: { who: 'a1' } }]
    const [a, b] = await Promise.all(apis.map(async (api, i) => await api.inject({ method: 'PATCH', url: '/v1/vms/web', payload: bodies[i] })))
    t.log(`${field}: ${a!.statusCode} ${b!.statusCode}`)
    t.deepEqual([a!.statusCode, b!.statusCode].sort(), [200, 409], `${a!.body} ${b!.body}`)
    const lost = a!.statusCode === 409 ? a! : b!
    t.like(lost.json(), { error: { code: 'changed_meanwhile' } })
    t.regex(lost.json<{ error: { message: string } }>().error.message, new RegExp(`was updated at the same moment through another node, whose ${field} value was kept, not this update's: look at it`))
    const kept = bodies[a!.statusCode === 200 ? 0 : 1]!
    await until(() => g.nodes.every(n => {
      const spec = n.agent.state.read().get('vms', 'web')?.value.spec
      return 'memory' in kept ? spec?.memoryBytes === parseInt(kept.memory) * MiB : spec?.labels?.who === kept.labels.who
    }), 20_000, 'the kept update on both nodes')
  }
  // other labels at once: each update answered 200 holds (both, where one was made over the other)
  const [a, b] = await Promise.all(apis.map(async (api, i) => await api.inject({ method: 'PATCH', url: '/v1/vms/web', payload: { labels: { [`k${i}`]: 'v' } } })))
  t.log(`other labels: ${a!.statusCode} ${b!.statusCode}`)
  t.true([a, b].some(r => r!.statusCode === 200))
  await new Promise(resolve => setTimeout(resolve, 1000))
  for (const [i, r] of [a, b].entries()) {
    if (r!.statusCode === 200) t.true(g.nodes.every(n => n.agent.state.read().get('vms', 'web')?.value.spec.labels?.[`k${i}`] === 'v'), `k${i} answered 200 and kept`)
    else t.like(r!.json(), { error: { code: 'changed_meanwhile' } })
  }
})

test('vm update of a VM whose node stopped for a restart (left, not dead): labels are taken, a size is refused 409 while its run may go on, never a 500 (bb53)', async t => {
  const g = await startDvmmGrid({ n: 3, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  const apis = await Promise.all(g.nodes.map(async n => await serveDvmmRoutes(t, n.dvmm)))
  t.is((await cli(apis[0]!, 'vm', 'create', 'web', '--cpu', '1', '--memory', '64M', '--', 'fake:run')).code, 0)
  await until(() => g.nodes[0]!.agent.state.read().get('leases', 'web')?.value.status === 'running', 20_000, 'web running')
  const h = g.nodes.findIndex(n => n.agent.id === g.nodes[0]!.agent.state.read().get('leases', 'web')?.value.holder)
  const holder = g.nodes[h]!
  const asked = g.nodes[(h + 1) % 3]!
  const api = apis[(h + 1) % 3]!
  // its holder stops for a restart (SIGTERM): left, its VM and lease stay for the next run
  await holder.dvmm.stop({ graceful: true, leave: false })
  await holder.agent.stop({ graceful: true, leave: false })
  await until(() => asked.agent.membership.members.get(holder.agent.id)?.state === 'left', 20_000, 'the holder seen as left')
  const labelled = await cli(api, 'vm', 'update', 'web', '--label', 'z=1')
  t.is(labelled.code, 0, labelled.err)
  t.is(asked.agent.state.read().get('vms', 'web')?.value.spec.labels?.z, '1')
  const sized = await cli(api, 'vm', 'update', 'web', '--memory', '128M', '--json')
  t.is(sized.code, 1, sized.err)
  t.is(JSON.parse(sized.out).error.code, 'vm_running', sized.out)
  // out of sight once its leave is seen; on a loaded machine the restart grace can still hold it in sight: either way a 409
  t.regex(sized.err, /VM "web" (may still run on a\d, which is out of sight|runs on a\d \(or is being started there\))/)
})

test('vm update --input/--output/--rm-input/--rm-output: a running VM gets and gives up terminals without a restart; one a link uses goes only with the link', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 100, tickMs: 100 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const started = recordStarts(g)
  t.is((await cli(api, 'vm', 'create', 'web', '--cpu', '1', '--memory', '64M', '--output', 'db', '--wait', '--', 'fake:run')).code, 0)
  const up = await cli(api, 'vm', 'update', 'web', '--output', 'cache', '--input', 'http')
  t.is(up.code, 0, up.err)
  t.regex(up.out, /^web: updated inputs, outputs$/m)
  const spec = (): Record<string, unknown> | undefined => g.nodes[0]!.agent.state.read().get('vms', 'web')?.value.spec
  t.like(spec(), { inputs: ['http'], outputs: ['db', 'cache'] })
  t.is(started.filter(s => s.id === 'web').length, 1, 'not restarted')
  t.regex((await cli(api, 'vm', 'show', 'web')).out, /updated on a0 \(epoch 1\): inputs none -> http; outputs db -> db, cache$/m)
  // a link from its output db: that terminal goes only with the link
  const created = g.nodes[0]!.agent.state.read().get('vms', 'web')!.value.created
  await g.nodes[0]!.agent.state.write(w => { w.put('connections', { id: 'link-t', app: null, from: { vm: 'web', terminal: 'db', created }, to: { vm: 'pg', terminal: 'sql' }, protocol: 'tcp', port: 5432 }) })
  const inUse = await cli(api, 'vm', 'update', 'web', '--rm-output', 'db', '--json')
  t.is(inUse.code, 1)
  t.is(JSON.parse(inUse.out).error.code, 'terminal_in_use')
  t.regex(inUse.err, /output terminal "db" of VM "web" is used by link link-t \(web\.db -> pg\.sql\): remove the link first \(vgrid link rm link-t\), then the terminal/)
  t.like(spec(), { outputs: ['db', 'cache'] }, 'nothing of it written')
  const gone = await cli(api, 'vm', 'update', 'web', '--rm-output', 'cache', '--rm-input', 'http')
  t.is(gone.code, 0, gone.err)
  t.like(spec(), { outputs: ['db'], inputs: [] })
  t.regex((await cli(api, 'vm', 'show', 'web')).out, /^ {2}terminals: inputs -; outputs db$/m)
  const noInput = await cli(api, 'vm', 'update', 'web', '--rm-input', 'http')
  t.regex(noInput.err, /--rm-input http: VM web has no input terminal http \(it has no inputs\)/)
  t.is(noInput.code, 2, 'a bad value')
  t.regex((await cli(api, 'vm', 'update', 'web', '--input', 'db')).err, /--input db: VM web has output db \(a terminal is an input or an output\): --rm-output db with it/)
  t.regex((await cli(api, 'vm', 'update', 'web', '--input', '1x')).err, /--input "1x": "1x" is not a terminal name/, 'named by its flag, not its place in the list sent')
  // a list made from one another update has changed since: 409, not undone (rv57)
  const stale = await fetch(`http://${api}/v1/vms/web`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: ['a'], inputsWere: ['x'] }) })
  t.is(stale.status, 409)
  t.regex(((await stale.json()) as { error: { message: string } }).error.message, /the inputs of VM "web" were changed through another node meanwhile \(now none\): nothing was changed/)
})
