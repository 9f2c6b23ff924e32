// The drivers' pure decisions: spec validation, exit classification, cgroup layout
// choice from the mounts, link addressing.
import test from 'ava'
import { bootTime, classifyExit, currentBootId, decodeShellStatus, procStat, ranBeforeBoot, recordProblem, sameProcessAlive, validateSpec } from '../../../node/dvmm/drivers/common.ts'
import { watchdogTime } from '../../../node/dvmm/drivers/host-base.ts'
import { DriverError } from '../../../node/dvmm/drivers/types.ts'
import { chooseLayout, createGroups, parseMountinfo, removeGroups } from '../../../node/dvmm/host/cgroups.ts'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freeSlot, slotAddresses, tapName, vethName, vmNetns } from '../../../node/dvmm/host/net.ts'
import { kernelBooted } from '../../../node/dvmm/host/accel.ts'
import { diskImageFormat } from '../../../node/dvmm/boot-checks.ts'

const good = { id: 'web-1', vcpus: 1.5, memoryMiB: 256, boot: { kind: 'command', command: ['/bin/true'] } }

test('validateSpec: a good spec passes; each bad field is named', t => {
  t.is(validateSpec(good, ['command']).id, 'web-1')
  const field = (spec: unknown, boots: Array<'command' | 'kernel' | 'disk'> = ['command']): string | undefined => {
    try { validateSpec(spec, boots); return undefined } catch (err) { t.true(err instanceof DriverError); return (err as DriverError).field }
  }
  t.is(field({ ...good, memoryMiB: 0 }), 'memoryMiB')
  t.is(field({ ...good, memoryMiB: 1.5 }), 'memoryMiB')
  t.is(field({ ...good, vcpus: 0 }), 'vcpus')
  t.is(field({ ...good, vcpus: '2' }), 'vcpus')
  t.is(field({ ...good, id: 'Upper' }), 'id')
  t.is(field({ ...good, id: '' }), 'id')
  t.is(field({ ...good, network: 'yes' }), 'network')
  t.is(field({ ...good, boot: undefined }), 'boot')
  t.is(field({ ...good, boot: { kind: 'command', command: [] } }), 'boot.command')
  t.is(field({ ...good, boot: { kind: 'command', command: ['/bin/x', 3] } }), 'boot.command[1]')
  t.is(field({ ...good, boot: { kind: 'command', command: ['/bin/x'], env: { 'A-B': 'x' } } }), 'boot.env.A-B')
  t.is(field(good, ['kernel']), 'boot.kind')
  t.is(field({ ...good, boot: { kind: 'kernel' } }, ['kernel']), 'boot.kernel')
  t.is(field({ ...good, boot: { kind: 'disk', image: '/x', format: 'vmdk' } }, ['disk']), 'boot.format')
  t.is(field('nope'), 'spec')
})

test('classifyExit: OOM beats everything; a requested stop or kill is not a crash', t => {
  const base = { code: 0, signal: null, oomKills: 0, stopRequested: false, killRequested: false, now: 5 }
  t.is(classifyExit(base).reason, 'exited')
  t.is(classifyExit({ ...base, code: 3 }).reason, 'crashed')
  t.is(classifyExit({ ...base, code: 137, signal: 'SIGKILL', oomKills: 1 }).reason, 'oom-killed')
  t.is(classifyExit({ ...base, code: 143, signal: 'SIGTERM', stopRequested: true }).reason, 'stopped')
  t.is(classifyExit({ ...base, code: null, signal: 'SIGKILL', stopRequested: true, killRequested: true }).reason, 'killed')
  t.is(classifyExit({ ...base, code: null, signal: null }).reason, 'lost')
  t.is(classifyExit({ ...base, code: null, signal: null, hostRestarted: true }).reason, 'host-restarted')
  // a status written, or a kill asked for, says more than the restart
  t.is(classifyExit({ ...base, code: 3, hostRestarted: true }).reason, 'crashed')
  t.is(classifyExit({ ...base, code: null, signal: null, killRequested: true, hostRestarted: true }).reason, 'killed')
  t.deepEqual(decodeShellStatus(137), { code: 137, signal: 'SIGKILL' })
  t.deepEqual(decodeShellStatus(3), { code: 3, signal: null })
})

test('sameProcessAlive: a pid and start time of another boot are not this process', t => {
  const ticks = procStat(process.pid)!.startTicks
  t.true(sameProcessAlive(process.pid, ticks))
  t.true(sameProcessAlive(process.pid, ticks, currentBootId()))
  t.false(sameProcessAlive(process.pid, ticks, 'an-earlier-boot'))
  t.false(sameProcessAlive(process.pid, ticks + 1))
})

test('ranBeforeBoot: by boot id; a record without one by its start, well before this boot', t => {
  t.false(ranBeforeBoot({ bootId: currentBootId(), startedAt: 0 }), 'the boot id decides when there is one')
  t.true(ranBeforeBoot({ bootId: 'an-earlier-boot', startedAt: Date.now() }))
  t.true(ranBeforeBoot({ startedAt: bootTime() - 120_000 }))
  t.false(ranBeforeBoot({ startedAt: bootTime() + 1000 }))
  t.false(ranBeforeBoot({}))
})

const MOUNTINFO_V1 = `25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory`
const MOUNTINFO_V2 = '30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot'

test('chooseLayout: v2 only with cpu and memory, else v1 with both, else why not', t => {
  const v1 = chooseLayout(parseMountinfo(MOUNTINFO_V1), () => ['pids'])
  t.deepEqual(v1.layout, { version: 'v1', cpu: '/sys/fs/cgroup/cpu,cpuacct', memory: '/sys/fs/cgroup/memory' })
  t.regex(v1.why, /unified lacks cpu and memory/)
  const v2 = chooseLayout(parseMountinfo(MOUNTINFO_V2 + '\n' + MOUNTINFO_V1), p => p === '/sys/fs/cgroup' ? ['cpuset', 'cpu', 'io', 'memory', 'pids'] : [])
  t.deepEqual(v2.layout, { version: 'v2', root: '/sys/fs/cgroup' })
  const none = chooseLayout(parseMountinfo(MOUNTINFO_V2), () => ['pids'])
  t.is(none.layout, undefined)
  t.regex(none.why, /lacks cpu and memory; no cgroup v1/)
})

test('createGroups on cgroup v2: the parent the last VM took with it is made again delegating cpu and memory (else the next VM\'s group has no cpu.max to write)', async t => {
  // a directory stands for the v2 mount: the files the driver writes are what is checked
  const root = mkdtempSync(join(tmpdir(), 'vgt-cg2-'))
  t.teardown(() => { rmSync(root, { recursive: true, force: true }) })
  const layout = { version: 'v2' as const, root }
  const first = createGroups(layout, 'vm-a', { cpus: 0.5, memoryBytes: 64 * 2 ** 20 })
  t.is(readFileSync(join(root, 'vgrid', 'cgroup.subtree_control'), 'utf8'), '+cpu +memory')
  t.is(readFileSync(join(first[0]!, 'cpu.max'), 'utf8'), '50000 100000')
  rmSync(join(first[0]!), { recursive: true })
  rmSync(join(root, 'vgrid', 'cgroup.subtree_control'))
  await removeGroups(first)
  t.false(existsSync(join(root, 'vgrid')), 'the parent went with its last VM')
  createGroups(layout, 'vm-b', { cpus: 1, memoryBytes: 64 * 2 ** 20 })
  t.is(readFileSync(join(root, 'vgrid', 'cgroup.subtree_control'), 'utf8'), '+cpu +memory', 'delegated again')
})

test('links: a /30 per slot, names that fit 15 characters and are stable', t => {
  t.deepEqual(slotAddresses('10.254.0.0/20', 0), { hostAddress: '10.254.0.1', vmAddress: '10.254.0.2', prefix: 30 })
  t.deepEqual(slotAddresses('10.254.0.0/20', 65), { hostAddress: '10.254.1.5', vmAddress: '10.254.1.6', prefix: 30 })
  t.throws(() => slotAddresses('10.254.0.0/20', 1024), { message: /no slot 1024/ })
  t.throws(() => slotAddresses('10.254.0.0/31', 0), { message: /not an IPv4 CIDR/ })
  t.is(freeSlot('10.254.0.0/28', [0, 1, 3]), 2)
  t.throws(() => freeSlot('10.254.0.0/28', [0, 1, 2, 3]), { message: /full/ })
  for (const name of [vethName('a-very-long-vm-name-that-goes-on'), tapName('x'), vmNetns('x')]) t.true(name.length <= 15, name)
  t.is(vethName('x'), vethName('x'))
  t.not(vethName('x'), vethName('y'))
})

test('kernelBooted: only a kernel that reached its root fs counts', t => {
  t.true(kernelBooted('...\n[ 1.2] VFS: Unable to mount root fs on unknown-block(0,0)\n'))
  t.false(kernelBooted('KVM internal error. Suberror: 1\n'))
  t.false(kernelBooted(''))
})

test('recordProblem: a run record names what is damaged; kills only ever aim at vgrid groups', t => {
  const rec = { version: 1, id: 'web-1', driver: 'process', state: 'running', pid: 42, pidStartTicks: 7, startedAt: 1, spec: good, cgroups: ['/sys/fs/cgroup/cpu/vgrid/web-1', '/sys/fs/cgroup/memory/vgrid/web-1'] }
  t.is(recordProblem(rec), null)
  t.is(recordProblem({ ...rec, network: { slot: 3, hostIf: 'vgp1' } }), null)
  t.regex(recordProblem(null)!, /not a JSON object/)
  t.regex(recordProblem([rec])!, /not a JSON object/)
  t.regex(recordProblem({ ...rec, version: 2 })!, /version 2/)
  t.regex(recordProblem({ ...rec, spec: undefined })!, /spec lacks/)
  t.regex(recordProblem({ ...rec, spec: null })!, /spec lacks/)
  t.regex(recordProblem({ ...rec, state: 'gone' })!, /state "gone"/)
  t.regex(recordProblem({ ...rec, pid: '42' })!, /pid is not a whole number/)
  t.regex(recordProblem({ ...rec, pid: 0 })!, /pid is 0/)
  t.regex(recordProblem({ ...rec, startedAt: -1 })!, /startedAt/)
  for (const cgroups of [[5], ['/sys/fs/cgroup/memory'], ['/sys/fs/cgroup/memory/vgrid/../x'], ['vgrid/web-1'], '/sys/fs/cgroup/vgrid/x']) {
    t.regex(recordProblem({ ...rec, cgroups })!, /cgroups/, JSON.stringify(cgroups))
  }
  t.regex(recordProblem({ ...rec, network: { slot: 'x' } })!, /network/)
  // the watchdog kills what a record damaged elsewhere still names well
  t.is(recordProblem({ ...rec, spec: undefined, state: 'gone' }, 'kill'), null)
  t.is(recordProblem({ ...rec, id: 'Web', startedAt: 1.5, network: { slot: 3 }, nodeNetns: 5 }, 'kill'), null, 'nothing a kill does not read')
  t.regex(recordProblem({ ...rec, spec: undefined, cgroups: ['/'] }, 'kill')!, /cgroups/)
})

test('watchdogTime: the watchdog\'s mark as a time, or nothing when it holds none', t => {
  t.is(watchdogTime('1767225600000'), ' at 2026-01-01T00:00:00.000Z')
  t.is(watchdogTime('1767225600000\n'), ' at 2026-01-01T00:00:00.000Z')
  for (const junk of ['', '\0\0\0', 'x', '-5', '1e3', '99999999999999999999']) t.is(watchdogTime(junk), '', JSON.stringify(junk))
})

test('diskImageFormat: qcow2 by its magic, raw by a boot sector; any other file is refused with why', t => {
  const qcow2 = new Uint8Array(512)
  qcow2.set([0x51, 0x46, 0x49, 0xfb])
  t.deepEqual(diskImageFormat(qcow2, '/i/a.qcow2'), { format: 'qcow2' })
  const mbr = new Uint8Array(512)
  mbr[510] = 0x55
  mbr[511] = 0xaa
  t.deepEqual(diskImageFormat(mbr, '/i/a.raw'), { format: 'raw' })
  const text = new TextEncoder().encode('root:x:0:0:root:/root:/bin/bash\n')
  t.deepEqual(diskImageFormat(text, '/etc/passwd'), { problem: '/etc/passwd is not a bootable disk image: neither qcow2 nor a raw disk with a boot sector (MBR or GPT)' })
  t.true('problem' in diskImageFormat(new Uint8Array(512), '/i/zeros'), 'a raw file of zeros boots nothing')
})
