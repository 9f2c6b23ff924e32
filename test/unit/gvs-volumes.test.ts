import test from 'ava'
import { planCreate, planResize, planRename, checkDestroy, checkRename, checkSnapshotName, findVolume, stillThere, checkSize, checkPath, splitSnapshotRef, sayLayers, planSnapshot, planClone, cloneSource, overProvisioned, checkSnapshotsGo, EXPORT_SNAPSHOT, volumeUse } from '../../node/gvs/volumes.ts'
import { validateObject, type Lease, type Volume, type Vm } from '../../crdt/index.ts'

const G = 2 ** 30
const pool = { nodes: 3, freeBytes: 100 * G }
const stamp = { at: 1, by: 'node1' }
const vol = (over: Partial<Volume> = {}): Volume => ({ id: 'vol-a', path: '/shop/db/data', sizeBytes: 10 * G, replicas: 2, state: 'ready', parent: null, snapshots: {}, ...stamp, ...over })

test('create: defaults, a valid document object', t => {
  const d = planCreate({ path: '/shop/web/root', size: '4G' }, [vol()], pool, () => 'vol-new')
  t.like(d, { id: 'vol-new', path: '/shop/web/root', sizeBytes: 4 * G, replicas: 2, minReplicas: 2, thin: true, epoch: 1 })
  t.is(validateObject('volumes', 'vol-new', { ...d, ...stamp }), null)
  t.is(planCreate({ path: '/a', size: 512 }, [], { nodes: 1, freeBytes: G }).replicas, 1, 'R defaults to at most the node count')
})

test('create: bad input gets a clear error naming the field', t => {
  const e = (req: object, p = pool): string => {
    try { planCreate(req, [vol()], p); return 'accepted' } catch (err) { return `${(err as Error).name}: ${(err as Error).message}` }
  }
  t.regex(e({ path: 'shop/db', size: '1G' }), /ValidationError: path "shop\/db" is not a volume path/)
  t.regex(e({ path: '/shop/../x', size: '1G' }), /"\." or "\.\." segment/)
  t.regex(e({ path: '/x', size: 0 }), /must be a positive whole number/)
  t.regex(e({ path: '/x', size: -5 }), /must be a positive whole number/)
  t.regex(e({ path: '/x', size: 1000 }), /not a multiple of 512/)
  t.regex(e({ path: '/x', size: 'lots' }), /is not a size/)
  t.regex(e({ path: '/x' }), /size is required/)
  t.regex(e({ path: '/x', size: true }), /size must be bytes \(a number\) or a size such as "10G", not a boolean/)
  t.regex(e({ path: '/x', size: {} }), /size must be bytes .*, not an object/)
  t.regex(e({ path: '/x', size: '60G' }), /more than the pool's/)
  t.regex(e({ path: '/x', size: '1G', replicas: 4 }), /more than the 3 live node/)
  t.regex(e({ path: '/x', size: '1G', replicas: 2, minReplicas: 3 }), /the least copies a write needs \(--min-replicas, minReplicas\) 3 must be a whole number from 1 to the replicas \(2\)/)
  t.regex(e({ path: '/x', size: '1G', thin: 'yes' }), /thin must be true or false/)
  t.regex(e({ path: '/x', size: '1G', thin: false }), /thick provisioning \(thin: false\) is not implemented/)
  t.regex(e({ path: '/shop/db/data', size: '1G' }), /ConflictError: a volume already has the path/)
})

test('resize grows only; rename keeps paths unique; destroy refuses a volume in use', t => {
  t.is(planResize(vol(), '20G', pool), 20 * G)
  t.throws(() => planResize(vol(), '5G', pool), { message: /shrinking to .* is refused/ })
  t.throws(() => planResize(vol(), '100G', pool), { message: /more than the pool's/ })
  t.is(planRename(vol(), '/shop/db/data2', [vol()]), '/shop/db/data2')
  t.throws(() => planRename(vol(), '/b', [vol(), vol({ id: 'vol-b', path: '/b' })]), { message: /already has the path "\/b"/ })
  const vm = { id: 'db', name: 'db', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: G, volumes: ['vol-a'], constraints: {} }, ...stamp } as Vm
  t.throws(() => checkDestroy(vol(), [vm]), { message: /in use by VM "db"/ })
  // a stopped VM keeps its disk (it would fail at its next start): not destroyed under it, but renamed (it names it by id)
  t.throws(() => checkDestroy(vol(), [{ ...vm, desired: 'stopped' }]), { message: /is a disk of VM "db" \(stopped\); detach it \(vgrid vm update db --detach \/[^)]*\), or remove the VM, first/ })
  t.notThrows(() => checkDestroy(vol(), [{ ...vm, desired: 'stopped', spec: { ...vm.spec, volumes: [] } }]))
  t.throws(() => checkRename(vol(), [vm]), { message: /in use by VM "db", which opens it by its path/ })
  t.throws(() => checkRename(vol(), [{ ...vm, desired: 'stopped' }], [{ vm: 'db', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: G, status: 'stopping', ...stamp }]), { message: /in use by VM "db"/ }, 'stopping is not stopped')
  t.notThrows(() => checkRename(vol(), [{ ...vm, desired: 'stopped' }]))
  t.throws(() => checkRename(vol(), [], [], [{ node: 'n2', writers: 1 }]), { message: /being written over NBD \(1 session on node n2\)/ })
  // a VM's disk session (its QEMU, running or still stopping after vm rm) is said as such, with what to wait for
  t.throws(() => checkRename(vol(), [], [], [{ node: 'n2', name: 'd3', writers: 1, vmDisks: 1 }]), { message: /being written over NBD \(1 VM disk session on d3 \(a VM runs there, or still stops\)\); wait until the VM has stopped/ })
  t.throws(() => checkRename(vol(), [], [], [{ node: 'n2', name: 'd3', writers: 3, vmDisks: 1 }]), { message: /\(2 sessions on d3, 1 VM disk session on d3 \(a VM runs there, or still stops\)\); disconnect its writers first/ })
  // snapshot references split at the first "@" (paths have none); new names may not hold one
  t.deepEqual(splitSnapshotRef('/c1@a@b'), { volume: '/c1', snapshot: 'a@b' })
  t.is(splitSnapshotRef('/c1'), null)
  t.throws(() => checkSnapshotName('a@b'), { message: /snapshot name "a@b" must be/ })
  t.is(checkSnapshotName('daily-2026.12.01:03'), 'daily-2026.12.01:03')
  t.is(findVolume([vol()], '/shop/db/data').id, 'vol-a')
  t.throws(() => findVolume([vol()], '/nope'), { message: /no volume with id or path/ })
  t.is(checkSize(4096), 4096)
  t.throws(() => checkSize('8192T'), { message: /size "8192T" is larger than any volume can be \(at most 9007199254740480 bytes, just under 8 PiB\)/ })
  t.is(checkPath('/a/b-c/d.e_f'), '/a/b-c/d.e_f')
  // a path of an id's shape could name another volume (export names are paths without "/", or ids)
  t.throws(() => checkPath('/vol-0123456789ab'), { message: /has the shape of a volume id/ })
  t.throws(() => planRename(vol(), '/vol-0123456789ab', [vol()]), { message: /has the shape of a volume id/ })
  t.is(checkPath('/vol-0123456789ab/data'), '/vol-0123456789ab/data')
  t.is(checkPath('/vol-0123'), '/vol-0123')
})

test('vol import refuses a volume a VM runs from, or another NBD session writes to', async t => {
  const { refuseInUse } = await import('../../node/gvs/cli-copy.ts')
  const base = { volume: 'vol-a', path: '/T/A', vms: [], writers: [] }
  t.notThrows(() => { refuseInUse('/T/A', base) })
  t.notThrows(() => { refuseInUse('/T/A', { ...base, vms: [{ id: 'q1', name: 'q1', desired: 'stopped', running: false }] }) }, 'a stopped VM\'s disk is what an import provisions')
  t.throws(() => { refuseInUse('/T/A', { ...base, vms: [{ id: 'q3', name: 'q3', desired: 'running', running: true }] }) }, { message: '/T/A is a disk of VM "q3", which runs from it: an import would write under it; stop the VM first' })
  t.throws(() => { refuseInUse('/T/A', { ...base, writers: [{ node: 'n2', writers: 2 }] }) }, { message: /\(2 sessions on node n2\): an import would be a second writer; disconnect it first/ })
})

test('sayLayers: object-set names in a message said as paths, snapshots and layers', t => {
  const id = 'vol-0123456789ab'
  const v: Volume = {
    ...vol(),
    id,
    path: '/shop/db',
    layers: [`${id}@3`, `${id}@2`, `${id}@1`],
    snapshots: { nightly: { name: 'nightly', createdAt: 1, layers: [`${id}@2`, `${id}@1`], at: 1, by: 'n' } }
  }
  const say = (s: string): string => sayLayers(s, [v])
  t.is(say(`volume "${id}@3" object 5: no replica could serve the read`), 'volume "/shop/db" object 5: no replica could serve the read')
  t.is(say(`volume "${id}" is read-only`), 'volume "/shop/db" is read-only')
  t.is(say(`${id}@2 object 1; ${id}@1 object 2`), '/shop/db@nightly object 1; /shop/db layer 1 object 2')
  t.is(say('volume "vol-ffffffffffff@2" object 1'), 'volume "vol-ffffffffffff@2" object 1', 'a volume not here: as it was')
  t.is(say('nothing to name'), 'nothing to name')
  // the volume's first layer is its first snapshot's once one is taken: said as the snapshot (a tester saw a
  // snapshot's damaged object named as the volume's)
  const first: Volume = { ...v, layers: [`${id}@2`, id], snapshots: { s1: { name: 's1', createdAt: 1, layers: [id], at: 1, by: 'n' } } }
  t.is(sayLayers(`object 1 of ${id} on a2`, [first]), 'object 1 of /shop/db@s1 on a2')
  t.is(sayLayers(`object 1 of ${id}@2 on a2`, [first]), 'object 1 of /shop/db on a2')
  // the volume is gone, a clone still reads its layer: said as what the clone was made from
  const clone: Volume = { ...vol(), id: 'vol-cccccccccccc', path: '/shop/copy', parent: id, layers: ['vol-cccccccccccc', `${id}@2`, `${id}@1`] }
  t.is(sayLayers(`object 1 of ${id}@2 on a2`, [clone]), 'object 1 of the snapshot /shop/copy was cloned from (its volume removed since) on a2')
  t.is(sayLayers(`object 1 of ${id}@7`, [clone]), `object 1 of ${id}@7`, 'a layer nothing reads: as it was')
})

test('a VOLUME@SNAPSHOT given where a volume is expected: a snapshot is read-only, said with what to do instead; one that does not exist is said so', t => {
  const snap = (name: string): Volume['snapshots'][string] => ({ name, createdAt: 1, layers: ['vol-a'], sizeBytes: G, ...stamp })
  const vs = [vol({ path: '/bb/r3', snapshots: { s1: snap('s1'), s2: snap('s2') } })]
  const e = (ref: string, doing?: string): { name: string, message: string, code?: string } => {
    try { findVolume(vs, ref, doing); return { name: 'found', message: '' } } catch (err) { return err as { name: string, message: string, code?: string } }
  }
  t.like(e('/bb/r3@s1', 'resized'), { name: 'ConflictError', code: 'read-only', message: '"/bb/r3@s1" is snapshot s1 of volume /bb/r3, and a snapshot is read-only: it cannot be resized (vgrid vol clone /bb/r3@s1 NEWPATH makes a writable volume of it; vgrid vol snapshot rm /bb/r3 s1 removes it)' })
  t.like(e('vol-a@s2', 'removed as a volume'), { name: 'ConflictError', code: 'read-only' })
  t.regex(e('vol-a@s2', 'removed as a volume').message, /snapshot s2 of volume \/bb\/r3.*cannot be removed as a volume.*vgrid vol snapshot rm \/bb\/r3 s2 removes it/)
  // asked only to look (vol info): not found, saying what it is
  t.like(e('/bb/r3@s1'), { name: 'NotFoundError' })
  t.regex(e('/bb/r3@s1').message, /^no volume with id or path "\/bb\/r3@s1": "\/bb\/r3@s1" is snapshot s1 of volume \/bb\/r3, and a snapshot is read-only/)
  t.like(e('/bb/r3@nope', 'resized'), { name: 'NotFoundError', message: 'no volume with id or path "/bb/r3@nope", and volume /bb/r3 has no snapshot "nope" (it has s1, s2)' })
  t.like(e('/bb/none@s1', 'resized'), { name: 'NotFoundError', message: 'no volume with id or path "/bb/none@s1"' })
  t.is(e('/' + 'x'.repeat(8000)).message, `no volume with id or path "/${'x'.repeat(39)}…" (8001 characters)`, 'bb41: not echoed whole')
})

test('cloneSource: a clone names its parent by PATH@SNAP, and what is left once either is gone (vol info showed the parent\'s id)', t => {
  const snap = planSnapshot(vol({ id: 'vol-aaaaaaaaaaaa', path: '/u/src' }), 's1', 1)
  const src = vol({ id: 'vol-aaaaaaaaaaaa', path: '/u/src', layers: snap.layers, snapshots: { s1: { ...snap.snapshot, at: 1, by: 'n' } as Volume['snapshots'][string] } })
  const clone = { ...planClone({ path: '/u/moved', from: '/u/src@s1' }, [src], () => 'vol-bbbbbbbbbbbb'), ...stamp } as unknown as Volume
  t.is(cloneSource(clone, [src, clone]), '/u/src@s1')
  t.is(cloneSource({ ...src }, [src]), null, 'no clone')
  t.is(cloneSource(clone, [{ ...src, snapshots: {} }, clone]), 'a snapshot of /u/src removed since')
  t.is(cloneSource(clone, [clone]), 'a volume removed since (vol-aaaaaaaaaaaa)')
})

test('overProvisioned: thin volumes let in one by one that together promise more than the pool has free are noted', t => {
  const pool = { nodes: 3, freeBytes: 293 * G }
  const v = (size: number): Volume => ({ ...vol(), sizeBytes: size * G, replicas: 2 })
  t.is(overProvisioned([v(140)], pool), null)
  t.is(overProvisioned([v(140), v(140), v(140)], pool), 'the volumes now provision 840.0 GiB (sizes x replicas), more than the pool\'s 293.0 GiB free: they are thin, which is fine until that much is written; writes fail once a disk is full')
})

test('a volume with snapshots goes only with them; an export snapshot a killed vol export left is said to be one', t => {
  const snap = (name: string, at: number): Volume['snapshots'][string] => ({ name, createdAt: at, layers: ['vol-a'], sizeBytes: G, ...stamp })
  const v = (names: string[]): Volume => vol({ path: '/t/v', snapshots: Object.fromEntries(names.map((n, i) => [n, snap(n, i)])) })
  t.notThrows(() => { checkSnapshotsGo(v([]), false) })
  t.notThrows(() => { checkSnapshotsGo(v(['s1']), true) })
  const e = t.throws(() => { checkSnapshotsGo(v(['s1']), false) })
  t.regex(e!.message, /^volume "\/t\/v" has 1 snapshot \(s1\), which would go with it: .*DELETE with \?snapshots=true\)$/)
  // the name cli-copy.ts gives: when, and a few random characters
  const left = 'export-20261204T135559-k3x9'
  t.true(EXPORT_SNAPSHOT.test(left))
  t.regex(t.throws(() => { checkSnapshotsGo(v(['s1', left]), false) })!.message, new RegExp(`; ${left} is named like an export's but records no export: left by an interrupted export of an earlier release, or a user's own \\(vgrid vol snapshot rm /t/v ${left} removes it\\)$`))
})

test('volumeUse: what each VM naming a volume does now, and the runs of removed VMs that may still have it open', t => {
  const v = vol({ id: 'vol-d', path: '/t/d' })
  const vmOf = (id: string, created: number, desired: 'running' | 'stopped' = 'running'): Vm => ({ id, name: id, app: null, desired, created, spec: { driver: 'qemu', cpu: 1, memoryBytes: G, volumes: ['vol-d'], constraints: {} }, ...stamp })
  const leaseOf = (vm: string, extra: Partial<Lease>): Lease => ({ vm, holder: 'h2', epoch: 1, cpu: 1, memoryBytes: G, ...stamp, ...extra })
  // g2 made after g1 was removed (its node away): pending, not "running"; g1's run may have the disk open
  const u = volumeUse(v, [vmOf('g2', 200)], [leaseOf('g1', { status: 'running', made: 100, disks: ['vol-d'] })])
  t.deepEqual([...u.states], [['g2', 'pending']])
  t.deepEqual(u.formerRuns, [{ vm: 'g1', node: 'h2' }])
  // a VM made again under the name: the former run is its predecessor's, the new one pending
  const again = volumeUse(v, [vmOf('g1', 300)], [leaseOf('g1', { status: 'running', made: 100, disks: ['vol-d'] })])
  t.deepEqual([...again.states], [['g1', 'pending']])
  t.deepEqual(again.formerRuns, [{ vm: 'g1', node: 'h2' }])
  // its own lease: as it says (claimed is starting); ended runs hold nothing
  t.deepEqual([...volumeUse(v, [vmOf('g3', 1)], [leaseOf('g3', { status: 'claimed', made: 1, disks: ['vol-d'] })]).states], [['g3', 'starting']])
  t.deepEqual([...volumeUse(v, [vmOf('g3', 1)], [leaseOf('g3', { status: 'running', made: 1 })]).states], [['g3', 'running']])
  t.deepEqual(volumeUse(v, [], [leaseOf('g1', { status: 'failed', made: 100, disks: ['vol-d'] })]).formerRuns, [])
  t.deepEqual([...volumeUse(v, [vmOf('g4', 1, 'stopped')], []).states], [['g4', 'stopped']])
})

test('a volume found by its path and removed while the request waited is said so by that path, not by an id the user never typed (bb26)', t => {
  const v = vol()
  t.is(stillThere([vol({ path: '/moved' })], v).path, '/moved', 'found by its id, renamed or not')
  t.throws(() => stillThere([vol({ id: 'vol-b' })], v), { message: 'volume /shop/db/data (vol-a) was removed meanwhile, by another request' })
})

test('a size of a few bytes that is no whole sector hints at units: a number alone is bytes (bb46)', t => {
  t.throws(() => checkSize('10'), { message: 'size 10 is not a multiple of 512 bytes (whole sectors); a number alone is bytes: 10M or 10G?' })
  t.throws(() => checkSize(1000), { message: 'size 1000 is not a multiple of 512 bytes (whole sectors); a number alone is bytes: 1000M or 1000G?' })
  t.is(checkSize('10M'), 10 * 2 ** 20)
})
