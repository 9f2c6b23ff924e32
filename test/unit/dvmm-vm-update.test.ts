// `vgrid vm update` (node/dvmm/vm-update.ts): the request checked field by field, the
// fields it changes, which of them wait until nothing of the VM runs; and the holder's
// side (decide.ts `leaseOutdated`): a lease claimed before a change of size or volumes
// is not started, but parked and placed anew.
import test from 'ava'
import { changeSummary, olderAgents, runsForUpdate, runningUpdateWhy, vmUpdateOf } from '../../node/dvmm/vm-update.ts'
import { volumeList } from '../../node/dvmm/update-cli.ts'
import { decide, leaseOutdated, startsStillDue, DISKS_CHANGED, OUTDATED_LEASE, UNFIT_LEASE, type DecideInput } from '../../node/dvmm/decide.ts'
import { driverSpec } from '../../node/dvmm/run-steps.ts'
import type { DocView, LeaseView } from '../../node/dvmm/view.ts'
import type { Lease, RollEntry, Vm } from '../../crdt/index.ts'
import { fenced, type NodeView } from '../../crdt/placement/index.ts'
import { ValidationError } from '../../node/errors.ts'

const GiB = 2 ** 30
const MiB = 2 ** 20
const node = (id: string, cpu = 4, mem = 8 * GiB): NodeView => ({ id, name: id, alive: true, draining: false, capacity: { cpu, memoryBytes: mem }, labels: {} })
const NODES = [node('a'), node('b', 8, 16 * GiB)]
const vm = (extra: Partial<Vm['spec']> = {}): Vm => ({ id: 'web', name: 'web', app: null, desired: 'stopped', spec: { driver: 'process', cpu: 1, memoryBytes: 64 * MiB, volumes: [], constraints: { zone: 'a' }, command: ['x'], labels: { tier: 'web' }, ...extra }, at: 1, by: 'a' })

function refused (t: import('ava').ExecutionContext, body: unknown, field: string, msg: RegExp, v = vm()): void {
  const err = t.throws(() => vmUpdateOf(body, v, NODES), { instanceOf: ValidationError })
  t.is((err as ValidationError & { field: string }).field, field, String(err?.message))
  t.regex(err!.message, msg)
}

test('an update changes only what it names, and says which fields changed', t => {
  const u = vmUpdateOf({ cpu: 2, memory: '128M', labels: { tier: 'api', team: 'x' } }, vm(), NODES)
  t.deepEqual(u.changed, ['cpu', 'memory', 'labels'])
  t.like(u.spec, { driver: 'process', cpu: 2, memoryBytes: 128 * MiB, constraints: { zone: 'a' }, command: ['x'] })
  t.deepEqual(u.spec.labels, { tier: 'api', team: 'x' })
  // null removes a label or constraint, or puts restart and the group back to none
  const v = vm({ restart: 'never', antiAffinity: 'g' })
  const back = vmUpdateOf({ restart: null, antiAffinity: null, labels: { tier: null }, constraints: { zone: null, rack: '1' } }, v, NODES)
  t.deepEqual(back.changed, ['restart', 'labels', 'constraints', 'antiAffinity'])
  t.is(back.spec.restart, undefined)
  t.is(back.spec.antiAffinity, undefined)
  t.is(back.spec.labels, undefined, 'the last label removed: none')
  t.deepEqual(back.spec.constraints, { rack: '1' })
  // already so: nothing changes (a script may ask again)
  t.deepEqual(vmUpdateOf({ cpu: 1, memory: 64 * MiB, labels: { tier: 'web', gone: null }, restart: 'always' }, vm(), NODES).changed, [])
  t.deepEqual(vmUpdateOf({ restart: 'always' }, vm({ restart: 'always' }), NODES).changed, [], 'always is the default')
})

test('an update request that is wrong is a 400 naming the field', t => {
  refused(t, 'x', 'body', /must be a JSON object/)
  refused(t, {}, 'body', /names nothing to change: give one or more of cpu, memory/)
  refused(t, { name: 'other' }, 'name', /unknown field "name" \(this request takes cpu, memory, volumes, restart, labels, constraints, antiAffinity, inputs, outputs, command, user, kernel, initrd, cmdline, image, bootVolume, volumesWere, inputsWere, outputsWere\)/)
  refused(t, { driver: 'qemu' }, 'driver', /unknown field "driver"/)
  refused(t, { cpu: 0 }, 'cpu', /above 0/)
  refused(t, { cpu: '2' }, 'cpu', /must be a JSON number/)
  refused(t, { cpu: 9 }, 'cpu', /9 vCPUs is more than any node has \(largest: 8\)/)
  refused(t, { memory: '512K' }, 'memory', /below the 1M a process VM needs/)
  refused(t, { memory: '32G' }, 'memory', /more than any node has \(largest: 16/)
  refused(t, { memory: '8M' }, 'memory', /below the 16M a qemu VM needs/, vm({ driver: 'qemu', command: undefined, kernel: '/nonexistent/vmlinux' }))
  refused(t, { restart: 'sometimes' }, 'restart', /must be one of always, on-failure, never \(or null: the default, always\)/)
  refused(t, { antiAffinity: 'a b' }, 'antiAffinity', /must be a group name/)
  refused(t, { labels: ['a'] }, 'labels', /must be an object: a key set to a string sets it, set to null removes it/)
  refused(t, { labels: { 'bad key': 'x' } }, 'labels', /key "bad key" is not a label key/)
  refused(t, { constraints: { zone: 5 } }, 'constraints.zone', /must be a string/)
  const many = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v']))
  refused(t, { labels: many }, 'labels', /would have 65 entries, more than the 64/)
})

test('size, constraints and the group wait until nothing of the VM runs; labels and restart do not', t => {
  const running = { status: 'running' as const, own: true }
  t.true(runsForUpdate(['memory'], running))
  t.true(runsForUpdate(['labels', 'constraints'], { status: 'claimed', own: true }), 'a claim is on its way to a start')
  t.false(runsForUpdate(['labels', 'restart'], running))
  t.false(runsForUpdate(['cpu'], { status: 'stopped', own: true }), 'stopped')
  t.false(runsForUpdate(['cpu'], { status: 'failed', own: true }), 'failed (the crash rule)')
  t.false(runsForUpdate(['cpu'], { status: 'stopped', parked: true, own: true }))
  t.false(runsForUpdate(['cpu'], undefined), 'pending: no lease')
  t.false(runsForUpdate(['cpu'], { ...running, own: false }), "a former VM's run of the name is not this VM's")
  // its node out of sight: until its fence has ended the run there (bb52: a VM stopped on a dead node could not be changed)
  t.true(runsForUpdate(['cpu'], { ...running, awayLeftMs: 4000 }))
  t.false(runsForUpdate(['cpu'], { ...running, awayLeftMs: 0 }))
  t.regex(runningUpdateWhy('web', 'host2', ['cpu'], { status: 'running', awayLeftMs: 3500 }), /^VM "web" may still run on host2, which is out of sight: its run there ends by its fence within 4 s: .*wait until nothing of it runs \(vgrid vm wait web --for stopped\), then update it/)
  t.regex(runningUpdateWhy('web', 'host2', ['antiAffinity'], { status: 'stopping' }), /^VM "web" is stopping on host2: .*\(this update changes anti-affinity\); wait until nothing of it runs/)
  t.regex(runningUpdateWhy('web', 'host2', ['cpu', 'labels', 'memory']), /^VM "web" runs on host2 \(or is being started there\): a VM's cpu, memory, volumes, constraints, anti-affinity group and what it boots or runs change only while nothing of it runs.*\(this update changes cpu and memory\).*vgrid vm stop web --wait/)
})

const roll = (id: string): RollEntry => ({ node: id, name: id, joined: 1, draining: false, at: 1, by: id })
function input (vms: Vm[], leases: LeaseView[]): DecideInput {
  const doc: DocView = { vms: new Map(vms.map(v => [v.id, v])), leases: new Map(leases.map(l => [l.winner.vm, l])), roll: new Map(['a', 'b', 'c'].map(n => [n, roll(n)])) }
  return {
    me: 'a', now: 10_000, doc, nodes: [{ ...node('a'), labels: { zone: 'a' } }, node('b'), node('c')],
    holderAlive: () => true, lastHeard: () => 0, fence: fenced({ rollSize: 3, aliveSeen: 3, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 }),
    runs: new Set(), busy: new Set(), claimedAt: new Map([['web', 1000]]), conflictSeenAt: new Map(), unplacedSince: new Map(),
    capacity: { cpu: 4, memoryBytes: 8 * GiB },
    cfg: { settleMs: 1000, fenceTimeoutMs: 5000, takeoverMarginMs: 1000, strategy: 'spread' }
  }
}

test('a lease claimed before a change of size or volumes is parked, not started, by its holder', t => {
  const lease: Lease = { vm: 'web', holder: 'a', epoch: 3, cpu: 1, memoryBytes: 64 * MiB, status: 'claimed', at: 1, by: 'a' }
  const grown = { ...vm({ memoryBytes: 256 * MiB }), desired: 'running' as const }
  t.true(leaseOutdated(lease, grown))
  const d = decide(input([grown], [{ winner: lease, claims: [lease] }]))
  t.deepEqual(d.start, [], 'not started with a size its node did not reserve')
  t.deepEqual(d.release, [{ vm: 'web', why: OUTDATED_LEASE }])
  // the same size: started as ever
  const same = { ...vm(), desired: 'running' as const }
  t.false(leaseOutdated(lease, same))
  // a disk attached or detached after the claim likewise (the holder would fence and open others than its lease names)
  const disked = { ...vm({ driver: 'qemu', volumes: ['vol-b', 'vol-a'] }), desired: 'running' as const }
  t.true(leaseOutdated({ ...lease, disks: ['vol-a', 'vol-b'] }, disked), 'another order: another boot disk')
  t.true(leaseOutdated({ ...lease, disks: ['vol-b'] }, disked))
  t.false(leaseOutdated({ ...lease, disks: ['vol-b', 'vol-a'] }, disked))
  t.deepEqual(decide(input([disked], [{ winner: { ...lease, disks: ['vol-b'] }, claims: [{ ...lease, disks: ['vol-b'] }] }])).release, [{ vm: 'web', why: OUTDATED_LEASE }])
  t.deepEqual(decide(input([same], [{ winner: lease, claims: [lease] }])).start, ['web'])
  // a run already going keeps its size: not released
  const i = input([grown], [{ winner: { ...lease, status: 'running' }, claims: [{ ...lease, status: 'running' }] }])
  t.deepEqual(decide({ ...i, runs: new Set(['web']) }).release, [])
})

test("a driver is asked for the lease's size, not the spec's", t => {
  const v = { ...vm({ cpu: 3, memoryBytes: 512 * MiB }), desired: 'running' as const }
  t.like(driverSpec(v, null, [], { cpu: 1, memoryBytes: 64 * MiB }), { vcpus: 1, memoryMiB: 64 })
  t.like(driverSpec(v), { vcpus: 3, memoryMiB: 512 }, 'no lease given: the spec')
})

test('volumes: the whole new list, checked as a create checks it, this VM\'s own disks not "in use"', t => {
  const vols: Record<string, { id: string, path: string, snapshots: string[] }> = { '/d/a': { id: 'vol-a', path: '/d/a', snapshots: [] }, '/d/b': { id: 'vol-b', path: '/d/b', snapshots: ['s1'] }, '/d/c': { id: 'vol-c', path: '/d/c', snapshots: [] } }
  const lookup = { find: (ref: string) => vols[ref] ?? Object.values(vols).find(v => v.id === ref), usedBy: (id: string) => id === 'vol-c' ? 'db' : undefined }
  const q = { ...vm({ driver: 'qemu', command: undefined, volumes: ['vol-a'] }) }
  const u = vmUpdateOf({ volumes: ['vol-a', '/d/b'] }, q, NODES, lookup)
  t.deepEqual(u.spec.volumes, ['vol-a', 'vol-b'])
  t.deepEqual(u.changed, ['volumes'])
  t.deepEqual(vmUpdateOf({ volumes: ['/d/a'] }, q, NODES, lookup).changed, [], 'by path or id alike')
  t.deepEqual(vmUpdateOf({ volumes: ['/d/b', '/d/a'], bootVolume: '/d/b' }, { spec: { ...q.spec, volumes: ['vol-a', 'vol-b'] } }, NODES, lookup).changed, ['volumes'], 'the order is the boot order')
  const err = t.throws(() => vmUpdateOf({ volumes: ['/d/c'] }, q, NODES, lookup))
  t.regex(err!.message, /\/d\/c is already a disk of VM db/)
  t.regex(t.throws(() => vmUpdateOf({ volumes: ['/d/b@s1'] }, q, NODES, lookup))!.message, /read-only: a VM's disk is written; clone it/)
  t.regex(t.throws(() => vmUpdateOf({ volumes: ['/d/a', 'vol-a'] }, q, NODES, lookup))!.message, /listed twice/)
  t.regex(t.throws(() => vmUpdateOf({ volumes: [] }, q, NODES, lookup))!.message, /^volumes: this VM boots from its first volume \(it has neither kernel nor image\): it keeps at least one$/)
  t.deepEqual(vmUpdateOf({ volumes: [] }, { spec: { ...q.spec, kernel: '/k' } }, NODES, lookup).spec.volumes, [], 'one that boots a kernel may have none')
  t.regex(t.throws(() => vmUpdateOf({ volumes: ['/d/a'] }, vm(), NODES, lookup))!.message, /a process VM cannot attach volumes/)
})

test('a claim on a node without a label its VM needs now is parked before its first start; one that ran is kept', t => {
  const lease: Lease = { vm: 'web', holder: 'a', epoch: 1, cpu: 1, memoryBytes: 64 * MiB, status: 'claimed', at: 1, by: 'a' }
  const needs = { ...vm({ constraints: { disk: 'ssd' } }), desired: 'running' as const }
  t.deepEqual(decide(input([needs], [{ winner: lease, claims: [lease] }])).release, [{ vm: 'web', why: UNFIT_LEASE }])
  t.deepEqual(decide(input([needs], [{ winner: lease, claims: [lease] }])).start, [])
  // after a crash (status starting): restarted where it ran, as ever
  const crashed = { ...lease, status: 'starting' as const }
  t.deepEqual(decide(input([needs], [{ winner: crashed, claims: [crashed] }])).start, ['web'])
  const fits = { ...vm({ constraints: {} }), desired: 'running' as const }
  t.deepEqual(decide(input([fits], [{ winner: lease, claims: [lease] }])).start, ['web'])
})

test('an update of placement fields waits for members of an earlier release; one not probed yet runs no VM', t => {
  const m = (name: string, state: string, vmHost?: { leaseSized?: boolean } | null): [string, { state: string, advert: { name: string, vmHost?: { leaseSized?: boolean } | null } }] => [name, { state, advert: { name, ...(vmHost !== undefined ? { vmHost } : {}) } }]
  t.deepEqual(olderAgents(new Map([m('h1', 'alive', { leaseSized: true }), m('h2', 'alive', {}), m('h3', 'suspect', {}), m('h4', 'dead', {}), m('h5', 'alive'), m('h6', 'alive', null)])), ['h2', 'h3'])
})

test('another first volume of a VM that boots from its first volume is another boot disk: only when said (bb52)', t => {
  const vols: Record<string, { id: string, path: string, snapshots: string[] }> = { '/d/boot': { id: 'vol-a', path: '/d/boot', snapshots: [] }, '/d/data': { id: 'vol-b', path: '/d/data', snapshots: [] } }
  const lookup = { find: (ref: string) => vols[ref] ?? Object.values(vols).find(v => v.id === ref), usedBy: () => undefined }
  const q = vm({ driver: 'qemu', command: undefined, volumes: ['vol-a', 'vol-b'] })
  const err = t.throws(() => vmUpdateOf({ volumes: ['/d/data'] }, q, NODES, lookup))
  t.regex(err!.message, /^bootVolume: this VM boots from its first volume, \/d\/boot: this update makes \/d\/data its boot disk; if that is meant, say so \(bootVolume, --boot-volume \/d\/data\), else keep \/d\/boot first$/)
  t.deepEqual(vmUpdateOf({ volumes: ['/d/data'], bootVolume: '/d/data' }, q, NODES, lookup).spec.volumes, ['vol-b'])
  t.deepEqual(vmUpdateOf({ volumes: ['vol-b', 'vol-a'], bootVolume: 'vol-b' }, q, NODES, lookup).changed, ['volumes'], 'a reorder')
  t.deepEqual(vmUpdateOf({ volumes: ['vol-a'] }, q, NODES, lookup).spec.volumes, ['vol-a'], 'the boot disk kept: nothing to say')
  t.regex(t.throws(() => vmUpdateOf({ volumes: ['vol-b', 'vol-a'], bootVolume: 'vol-a' }, q, NODES, lookup))!.message, /this update makes \/d\/data its boot disk/)
  t.regex(t.throws(() => vmUpdateOf({ bootVolume: 'vol-b' }, q, NODES, lookup))!.message, /must be the first of the volumes/)
  // a VM that boots a kernel given a boot volume boots from it instead (below): the first
  t.regex(t.throws(() => vmUpdateOf({ volumes: ['vol-a'], bootVolume: '/d/data' }, { spec: { ...q.spec, kernel: '/k' } }, NODES, lookup))!.message, /must be the first of the volumes/)
  // a VM that boots a kernel: any order
  t.deepEqual(vmUpdateOf({ volumes: ['vol-b'] }, { spec: { ...q.spec, kernel: '/k' } }, NODES, lookup).spec.volumes, ['vol-b'])
})

test('what an update changed, for its history', t => {
  const before = vm({ restart: 'never' }).spec
  const after = { ...before, cpu: 2, memoryBytes: 3 * GiB, labels: { tier: 'api' }, restart: undefined, antiAffinity: 'g' }
  t.is(changeSummary(before, after, ['cpu', 'memory', 'restart', 'labels', 'antiAffinity']), 'cpu 1 -> 2; memory 64M -> 3G; restart never -> always; labels tier=web -> tier=api; anti-affinity none -> g')
  t.is(changeSummary({ ...before, volumes: ['vol-a'] }, { ...before, volumes: [] }, ['volumes'], v => `/p/${v}`), 'volumes /p/vol-a -> none')
})

test("the CLI's list of volumes: detached out, attached last, the boot volume first", t => {
  const has = [{ id: 'vol-a', path: '/d/boot' }, { id: 'vol-b', path: '/d/data' }]
  t.deepEqual(volumeList('q', has, ['/d/new'], []), ['vol-a', 'vol-b', '/d/new'])
  t.deepEqual(volumeList('q', has, ['/d/data'], []), ['vol-a', 'vol-b'], 'attached already: where it is')
  t.deepEqual(volumeList('q', has, [], ['d/data']), ['vol-a'])
  t.deepEqual(volumeList('q', has, ['/d/new'], ['/d/boot'], '/d/new'), ['/d/new', 'vol-b'])
  t.deepEqual(volumeList('q', has, [], [], '/d/data'), ['vol-b', 'vol-a'])
  t.throws(() => volumeList('q', has, ['/d/x'], ['/d/x']), { message: /--attach \/d\/x and --detach \/d\/x: give one of them/ })
  t.throws(() => volumeList('q', has, [], ['/d/nope']), { message: /VM q has no volume \/d\/nope \(it has \/d\/boot, \/d\/data\)/ })
  t.throws(() => volumeList('q', has, [], ['/d/boot'], 'vol-a'), { message: /--boot-volume vol-a and --detach vol-a: give one of them/ })
})

test('a run started with disks its spec no longer names is stopped (placed anew); a start judged again after the write is not made with them (rv55)', t => {
  const lease: Lease = { vm: 'web', holder: 'a', epoch: 1, cpu: 1, memoryBytes: 64 * MiB, status: 'running', disks: ['vol-a', 'vol-d'], at: 1, by: 'a' }
  const detached = { ...vm({ driver: 'qemu', volumes: ['vol-a'], constraints: {} }), desired: 'running' as const }
  const running = (l: Lease): DecideInput => ({ ...input([detached], [{ winner: l, claims: [l] }]), runs: new Set(['web']) })
  t.deepEqual(decide(running(lease)).stop, [{ vm: 'web', why: DISKS_CHANGED }])
  t.deepEqual(decide(running({ ...lease, disks: ['vol-a'] })).stop, [], 'its disks: kept')
  const { disks: _, ...older } = lease
  t.deepEqual(decide(running(older)).stop, [], "a lease of an earlier release names no disks: not judged (an upgrade moves nothing)")
  t.false(leaseOutdated(older, detached))
  // a start decided on the read before the step's write, an update merged in that write
  const claimed: Lease = { ...lease, status: 'claimed', disks: ['vol-a', 'vol-d'] }
  const before: DocView = { vms: new Map([['web', { ...detached, spec: { ...detached.spec, volumes: ['vol-a', 'vol-d'] } }]]), leases: new Map([['web', { winner: claimed, claims: [claimed] }]]), roll: new Map() }
  const after: DocView = { ...before, vms: new Map([['web', detached]]) }
  t.deepEqual(startsStillDue(['web'], before, before, 'a', true), ['web'])
  t.deepEqual(startsStillDue(['web'], before, after, 'a', true), [], 'not started with disks its lease does not name')
})
