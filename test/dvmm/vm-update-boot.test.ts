// `vgrid vm update` of what a VM runs, against a real API of in-process agents with the
// fake driver: a stopped process VM given another command starts with it; a running one
// is refused; the run's lease records what it boots, and `vm show` says when a run boots
// what it had before an update that merged after its start; the CLI's flags.
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli } from './cli-run.ts'
import { serveDvmmRoutes } from './serve-routes.ts'
import { recordStarts, startDvmmGrid, until, vmApi } from './grid.ts'
import { bootDigest } from '../../node/dvmm/boot-fields.ts'

test('vm update of a command: refused while it runs; stopped, updated and started, it runs the new one, as its lease records', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100, stopGraceMs: 12_000 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const started = recordStarts(g)
  const state = g.nodes[0]!.agent.state
  t.is((await cli(api, 'vm', 'create', 'job', '--cpu', '1', '--memory', '64M', '--wait', '--', 'fake:exit', '0', '600000')).code, 0)
  const lease = (): { boot?: string } | undefined => state.read().get('leases', 'job')?.value
  const spec = (): NonNullable<ReturnType<ReturnType<typeof state.read>['get']>>['value'] => state.read().get('vms', 'job')!.value
  await until(() => lease()?.boot != null, 10_000, 'the run recorded in its lease')
  t.is(lease()!.boot, bootDigest((spec() as { spec: Parameters<typeof bootDigest>[0] }).spec), 'the lease records what the run boots')

  const running = await cli(api, 'vm', 'update', 'job', '--json', '--', 'fake:run')
  t.is(running.code, 1)
  t.is(JSON.parse(running.out).error.code, 'vm_running')
  t.regex(running.err, /what it boots or runs change only while nothing of it runs.*\(this update changes command\)/)

  t.is((await cli(api, 'vm', 'stop', 'job', '--wait')).code, 0)
  const up = await cli(api, 'vm', 'update', 'job', '--', 'fake:run')
  t.is(up.code, 0, up.err)
  t.regex(up.out, /^job: updated command$/m)
  t.is((await cli(api, 'vm', 'start', 'job', '--wait')).code, 0)
  t.deepEqual(started.filter(s => s.id === 'job').map(s => s.boot.kind === 'command' ? s.boot.command : null), [['fake:exit', '0', '600000'], ['fake:run']])
  const shown = await cli(api, 'vm', 'show', 'job')
  t.regex(shown.out, /updated on a0 \(epoch \d+\): command fake:exit 0 600000 -> fake:run$/m)
  t.notRegex(shown.out, /this run boots what it was started with/)

  // an update that merged after the start (through a node that had not seen it): the run
  // goes on with what it was started with, and show says so
  await state.write(w => { const v = w.reader.get('vms', 'job')!.value; w.update('vms', 'job', { spec: { ...v.spec, command: ['fake:ignore-stop'] } }) })
  const later = await cli(api, 'vm', 'show', 'job')
  t.regex(later.out, /this run boots what it was started with, before what it boots or runs was changed \(vm update\); the new one from its next start/)
})

test('vm update: the flags of what a VM boots, refused before the agent is asked where they cannot go together', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 100, tickMs: 100 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  t.regex((await cli(api, 'vm', 'update', 'x', '--kernel', '/k', '--image', '/i')).err, /give --kernel \(with --initrd, --cmdline\) or --image, not both/)
  t.regex((await cli(api, 'vm', 'update', 'x', '--initrd', '/i', '--no-initrd')).err, /--initrd sets it and --no-initrd boots without one: give one of them/)
  t.regex((await cli(api, 'vm', 'update', 'x', '--user', 'nobody', '--no-user')).err, /--user sets it and --no-user runs as root: give one of them/)
  t.regex((await cli(api, 'vm', 'update', 'x', '--command', 'a', '--', 'b')).err, /give the command either with --command or after --, not both/)
  t.regex((await cli(api, 'vm', 'update', 'x', '--')).err, /nothing after --/)
  t.regex((await cli(api, 'vm', 'update', 'x', '--boot-volume', '/v', '--kernel', '/k')).err, /--boot-volume and --kernel: a VM boots from a volume, a kernel or an image, one of them: give one/)
  // create's rule: a process VM's command or a qemu VM's kernel, not both
  t.regex((await cli(api, 'vm', 'update', 'x', '--image', '/i', '--', 'b')).err, /a command runs a process VM, --image is for a qemu VM: give one or the other/)
  // the agent's word on a request that goes
  t.is((await cli(api, 'vm', 'create', 'p', '--cpu', '1', '--memory', '64M', '--stopped', '--', 'fake:run')).code, 0)
  t.regex((await cli(api, 'vm', 'update', 'p', '--kernel', '/k')).err, /kernel: a process VM runs its command; kernel is for a qemu VM/)
  const back = await cli(api, 'vm', 'update', 'p', '--command', 'fake:exit 3 10', '--json')
  t.is(back.code, 0, back.err)
  t.deepEqual(JSON.parse(back.out).changed, ['command'])
  t.deepEqual(g.nodes[0]!.agent.state.read().get('vms', 'p')?.value.spec.command, ['fake:exit', '3', '10'], '--command split at its spaces, as create splits it')
})

test('a command line and an image asked at once through two nodes: the image, written later, is kept, and the command line answered 409, not 200 (rv56)', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 400, tickMs: 100 } })
  t.teardown(g.stop)
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-boot-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const kernel = join(dir, 'vmlinux')
  // a bzImage's header ("HdrS" at 0x202): a kernel to the API, not an ELF, so its size is not judged
  const bz = Buffer.alloc(1024)
  bz.write('HdrS', 0x202)
  writeFileSync(kernel, bz)
  const image = join(dir, 'disk.raw')
  const sector = Buffer.alloc(1024 * 1024)
  sector[510] = 0x55
  sector[511] = 0xaa
  writeFileSync(image, sector)
  const apis = g.nodes.map(n => vmApi(t, n))
  const made = await apis[0]!.inject({ method: 'POST', url: '/v1/vms', payload: { name: 'q', driver: 'qemu', cpu: 1, memory: '128M', kernel, cmdline: 'console=ttyS0', desired: 'stopped' } })
  t.is(made.statusCode, 201, made.body)
  await until(() => g.nodes.every(n => n.agent.state.read().get('vms', 'q') != null), 20_000, 'the VM on both nodes')
  const cmdline = apis[0]!.inject({ method: 'PATCH', url: '/v1/vms/q', payload: { cmdline: 'console=ttyS0 quiet' } })
  await new Promise(resolve => setTimeout(resolve, 50))
  const toImage = apis[1]!.inject({ method: 'PATCH', url: '/v1/vms/q', payload: { image } })
  const [a, b] = await Promise.all([cmdline, toImage])
  t.is(b.statusCode, 200, b.body)
  // asked again of the image's spec, the command line is refused (it goes with a kernel): it did not hold
  t.is(a.statusCode, 409, a.body)
  t.like(a.json(), { error: { code: 'changed_meanwhile' } })
  t.regex(a.json<{ error: { message: string } }>().error.message, /whose cmdline value was kept, not this update's/)
  await until(() => g.nodes.every(n => n.agent.state.read().get('vms', 'q')?.value.spec.image === image), 20_000, 'the image on both nodes')
  t.is(g.nodes[0]!.agent.state.read().get('vms', 'q')?.value.spec.cmdline, undefined)
})

test('vm update of a failed VM says its reason is its last run\'s, from before the update, and how to run it with the change (bb53)', async t => {
  const g = await startDvmmGrid({ n: 1, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 300, tickMs: 100 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  // exits with code 1 at once, under never: failed at its first exit
  t.is((await cli(api, 'vm', 'create', 'bad', '--cpu', '1', '--memory', '64M', '--restart', 'never', '--', 'fake:exit', '1', '100')).code, 0)
  await until(() => g.nodes[0]!.agent.state.read().get('leases', 'bad')?.value.status === 'stopped', 10_000, 'the crash rule to stop it')
  const up = await cli(api, 'vm', 'update', 'bad', '--', 'fake:run')
  t.is(up.code, 0, up.err)
  t.regex(up.out, /^bad: updated command\nbad: failed \(.*restart policy is never\)\n {2}\(that is its last run's, from before this update: vgrid vm start bad runs it with the change\)$/m, up.out)
  const labelled = await cli(api, 'vm', 'update', 'bad', '--label', 'a=b')
  t.regex(labelled.out, /that is its last run's/, 'any change')
  const same = await cli(api, 'vm', 'update', 'bad', '--label', 'a=b')
  t.notRegex(same.out, /that is its last run's/, 'nothing changed: nothing to say')
})
