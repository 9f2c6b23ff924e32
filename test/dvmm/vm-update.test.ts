// `vgrid vm update` against a real API of in-process agents with the fake driver: a
// stopped VM resized and started with its new size; a running one refused a new size
// but given labels; and a size changed while a claim settles (an update merged from
// another node) never runs the VM with a size its node did not reserve.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { serveDvmmRoutes } from './serve-routes.ts'
import { startDvmmGrid, until } from './grid.ts'
import type { DriverVmSpec } from '../../node/dvmm/drivers/types.ts'

const run = promisify(execFile)
const SCRIPT = "const m = await import(process.cwd() + '/node/dvmm/cli.ts'); const [cmd, ...rest] = process.argv.slice(1); try { await m[cmd](rest) } catch (e) { process.stderr.write(e.message + '\\n'); if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ error: { code: e.code } })); process.exitCode = e.exitCode ?? 1 }"
const MiB = 2 ** 20

async function cli (api: string, ...args: string[]): Promise<{ code: number, out: string, err: string }> {
  try {
    const r = await run(process.execPath, ['--input-type=module', '-e', SCRIPT, ...args], { env: { ...process.env, VGRID_API: api }, timeout: 60_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number, stdout: string, stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

test('vm update: a stopped VM resized runs with its new size; a running one keeps its size and takes labels', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100, stopGraceMs: 12_000 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const started: DriverVmSpec[] = []
  for (const n of g.nodes) {
    const start = n.driver.start.bind(n.driver)
    n.driver.start = async spec => { started.push(spec); return await start(spec) }
  }

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

  // wrong requests: said before anything is asked, or by the agent
  t.regex((await cli(api, 'vm', 'update', 'web')).err, /say what to change/)
  t.regex((await cli(api, 'vm', 'update', 'web', '--label', 'a=b', '--rm-label', 'a')).err, /--label a=\.\.\. and --rm-label a: give one of them/)
  t.regex((await cli(api, 'vm', 'update', 'web', '--anti-affinity', 'g', '--no-anti-affinity')).err, /give one of them/)
  const missing = await cli(api, 'vm', 'update', 'nosuch', '--cpu', '1')
  t.is(missing.code, 1)
  t.regex(missing.err, /no VM "nosuch"/)
  const big = await cli(api, 'vm', 'update', 'web', '--cpu', '64')
  t.regex(big.err, /cpu: 64 vCPUs is more than any node has \(largest: 4\)/)
  const res = await fetch(`http://${api}/v1/vms/web`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ volumes: [] }) })
  t.is(res.status, 400)
  t.regex(((await res.json()) as { error: { message: string } }).error.message, /unknown field "volumes"/)
})

test('a size changed while a claim settles: the holder parks the lease and the VM runs with the new size at the next epoch', async t => {
  // a long settle window: the change lands while the claim waits in it
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 2000, tickMs: 100 } })
  t.teardown(g.stop)
  const started: DriverVmSpec[] = []
  for (const n of g.nodes) {
    const start = n.driver.start.bind(n.driver)
    n.driver.start = async spec => { started.push(spec); return await start(spec) }
  }
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
