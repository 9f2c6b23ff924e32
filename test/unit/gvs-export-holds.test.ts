// Which snapshots of `vgrid vol export` are abandoned (export-holds.ts): pure decisions
// over the document's volumes, what this node holds, its members and `now`; and what
// `vol rm` makes of them (volumes.ts checkSnapshotsGo).
import test from 'ava'
import { abandonedExports, exportFate, exportRecordOf, exportRenewals, exportSnapshotName, EXPORT_HOLD_MS, type ExportFacts } from '../../node/gvs/export-holds.ts'
import { checkSnapshotsGo, EXPORT_SNAPSHOT } from '../../node/gvs/volumes.ts'
import { validateObject, type Snapshot, type Volume } from '../../crdt/index.ts'

const G = 2 ** 30
const stamp = { at: 1, by: 'node1' }
const NOW = Date.UTC(2026, 11, 4, 13, 55, 59)
const A = 'nodeA'
const B = 'nodeB'

const snap = (name: string, record?: unknown): Snapshot => ({ name, createdAt: NOW - 1000, layers: ['vol-a'], sizeBytes: G, ...stamp, ...(record !== undefined ? { export: record } : {}) }) as Snapshot
const vol = (snaps: Snapshot[]): Volume => ({ id: 'vol-a', path: '/t/v', sizeBytes: G, replicas: 2, state: 'ready', parent: null, snapshots: Object.fromEntries(snaps.map(s => [s.name, s])), ...stamp })
const facts = (over: Partial<ExportFacts> = {}): ExportFacts => ({ now: NOW, self: A, run: 'run2', held: new Set(), members: new Map([[A, 'alive'], [B, 'alive']]), majority: true, ...over })

const E1 = 'export-20261204T135558-k3x9'
const E2 = 'export-20261204T135559-zz01'

test('exportSnapshotName: the time in UTC and the random part; what EXPORT_SNAPSHOT knows; bad random refused', t => {
  const n = exportSnapshotName(NOW, 'k3x9')
  t.is(n, 'export-20261204T135559-k3x9')
  t.true(EXPORT_SNAPSHOT.test(n))
  t.throws(() => exportSnapshotName(NOW, 'UPPER'), { message: /random part must be 1-8 of \[a-z0-9\], not "UPPER"/ })
  t.throws(() => exportSnapshotName(NOW, ''), { message: /random part/ })
})

test('exportRecordOf: only an export-* snapshot with a whole record is an export\'s; the document takes the record', t => {
  const r = { node: A, run: 'run1', until: NOW }
  t.deepEqual(exportRecordOf(snap(E1, r)), r)
  // a user's snapshot, even one named like an export's, is never an export's without the record
  t.is(exportRecordOf(snap(E1)), null)
  t.is(exportRecordOf(snap('nightly', r)), null, 'a user\'s name with a record is still a user\'s')
  for (const bad of [null, 'x', { node: '', run: 'r', until: 1 }, { node: A, run: 'r' }, { node: A, run: 'r', until: Infinity }, { node: A, run: 5, until: 1 }]) t.is(exportRecordOf(snap(E1, bad)), null, JSON.stringify(bad))
  // the schema is open: the document validates a volume whose snapshot carries it
  t.is(validateObject('volumes', 'vol-a', vol([snap(E1, r)])), null)
})

test('on its own node: kept while held (a hold request open, an NBD session reading); gone once not, or when an earlier run made it', t => {
  const v = vol([snap(E1, { node: A, run: 'run2', until: NOW + EXPORT_HOLD_MS }), snap(E2, { node: A, run: 'run1', until: NOW + EXPORT_HOLD_MS }), snap('nightly')])
  t.deepEqual(abandonedExports([v], facts({ held: new Set(['vol-a@' + E1, 'vol-a@' + E2]) })), [], 'both held here: an export of an earlier run\'s snapshot reads it too')
  const gone = abandonedExports([v], facts())
  t.deepEqual(gone.map(g => [g.snapshot, g.why]), [
    [E1, 'its export ended: the vgrid vol export that held it is gone and no NBD session reads it'],
    [E2, 'its export was served by an earlier run of the agent on this node, which ended with it']
  ])
  t.like(gone[0], { volume: 'vol-a', path: '/t/v', node: A, abandoned: true })
  // its own node decides at once, whatever the hold's expiry, with or without a majority
  t.is(abandonedExports([v], facts({ majority: false })).length, 2)
  t.is(exportFate(v, v.snapshots.nightly!, facts()), null, 'a user\'s snapshot is never judged')
})

test('on another node: kept while its node lives, while a session here reads it, without a majority, and until its hold expires; gone after', t => {
  const until = NOW + 60_000
  const v = vol([snap(E1, { node: B, run: 'r', until })])
  const s = v.snapshots[E1]!
  const fate = (over: Partial<ExportFacts>): [boolean, string] => { const f = exportFate(v, s, facts(over))!; return [f.abandoned, f.why] }
  t.deepEqual(fate({}), [false, 'its export runs on its node (alive), which removes it when the export ends'])
  t.deepEqual(fate({ members: new Map([[B, 'suspect']]), now: until + 1 }), [false, 'its export runs on its node (suspect), which removes it when the export ends'])
  t.deepEqual(fate({ members: new Map([[B, 'dead']]) }), [false, `its node is dead; its hold stands until ${new Date(until).toISOString()}`])
  t.deepEqual(fate({ members: new Map([[B, 'dead']]), now: until }), [true, `its node is dead and its hold expired at ${new Date(until).toISOString()}`])
  t.deepEqual(fate({ members: new Map(), now: until + 1 }), [true, `its node is not known here and its hold expired at ${new Date(until).toISOString()}`])
  t.deepEqual(fate({ members: new Map([[B, 'left']]), now: until + 1 })[0], true)
  t.deepEqual(fate({ members: new Map([[B, 'dead']]), now: until + 1, majority: false }), [false, 'this node sees no majority of the grid, so cannot tell whether its export still runs'])
  t.deepEqual(fate({ members: new Map([[B, 'dead']]), now: until + 1, held: new Set(['vol-a@' + E1]) }), [false, 'an NBD session on this node reads it'])
})

test('exportRenewals: this node\'s held exports of this run, once less than half their hold is left', t => {
  const v = vol([
    snap(E1, { node: A, run: 'run2', until: NOW + EXPORT_HOLD_MS / 2 - 1 }),
    snap(E2, { node: A, run: 'run2', until: NOW + EXPORT_HOLD_MS / 2 + 1 }),
    snap('export-20261204T135500-aaaa', { node: A, run: 'run1', until: NOW }),
    snap('export-20261204T135501-bbbb', { node: B, run: 'run2', until: NOW }),
    snap('export-20261204T135502-cccc', { node: A, run: 'run2', until: NOW })
  ])
  const held = new Set(['vol-a@' + E1, 'vol-a@' + E2, 'vol-a@export-20261204T135500-aaaa', 'vol-a@export-20261204T135501-bbbb'])
  t.deepEqual(exportRenewals([v], facts({ held })), [{ volume: 'vol-a', snapshot: E1, record: { node: A, run: 'run2', until: NOW + EXPORT_HOLD_MS } }])
  t.deepEqual(exportRenewals([v], facts()), [], 'nothing held: nothing renewed (the unheld go)')
})

test('vol rm: abandoned export snapshots go with the volume unasked; one an export reads is named, and --snapshots does not take it; an earlier release\'s is said as before', t => {
  const v = vol([snap(E1, { node: A, run: 'run1', until: NOW })])
  t.notThrows(() => { checkSnapshotsGo(v, false, { abandoned: [E1] }) }, 'no longer refused because of an abandoned one')
  t.regex(t.throws(() => { checkSnapshotsGo(v, false, { running: [{ name: E1, node: 'host2' }] }) })!.message,
    new RegExp(`^volume "/t/v" has 1 snapshot \\(${E1}\\), which would go with it: .*; ${E1} is read by a vgrid vol export on host2, which removes it when it ends: wait for it$`))
  const e = t.throws(() => { checkSnapshotsGo(v, true, { running: [{ name: E1, node: 'host2' }] }) }, undefined, '--snapshots does not take one an export reads (bb33)')
  t.is((e as { code?: string }).code, 'export_running')
  t.regex(e!.message, new RegExp(`^volume "/t/v" has a snapshot a vgrid vol export is reading \\(${E1} on host2\\): wait for it to end, or end it with vgrid vol snapshot rm /t/v ${E1} \\(its copy then fails\\), and remove the volume again$`))
  t.notThrows(() => { checkSnapshotsGo(v, true, { abandoned: [E1] }) }, '--snapshots takes an abandoned one')
  const w = vol([snap(E1, { node: A, run: 'run1', until: NOW }), snap('nightly'), snap(E2)])
  const msg = t.throws(() => { checkSnapshotsGo(w, false, { abandoned: [E1] }) })!.message
  t.regex(msg, /has 2 snapshots \(nightly, export-20261204T135559-zz01\)/, 'the abandoned one is not counted')
  t.regex(msg, new RegExp(`; ${E2} is named like an export's but records no export: left by an interrupted export of an earlier release, or a user's own \\(vgrid vol snapshot rm /t/v ${E2} removes it\\)$`))
})
