// The I/O edge of export snapshots' cleanup (export-sweeper.ts): leases that run out,
// NBD sessions that read, what it removes from the document and logs, whose it leaves
// alone, and the holds it renews there.
import test from 'ava'
import { Replica } from '../../crdt/replica.ts'
import type { Snapshot } from '../../crdt/index.ts'
import { ExportSweeper } from '../../node/gvs/export-sweeper.ts'
import { EXPORT_HOLD_MS } from '../../node/gvs/export-holds.ts'
import { createLogger } from '../../node/log.ts'

const A = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const B = '12D3KooWLRPJAA5o6Z6bJgzUs4PQ1ZMVGMBb7ZNmBqXoCHTJUXDn'
const VOL = 'vol-aaaaaaaaaaaa'

function setup (members: Map<string, string>) {
  const replica = Replica.create({ clusterId: 'c1', nodeId: A })
  const lines: string[] = []
  const sweeper = new ExportSweeper({
    self: A,
    log: createLogger({ write: l => { lines.push(l) } }),
    volumes: () => replica.read().list('volumes'),
    members: () => members,
    live: () => [...members].filter(([, s]) => s === 'alive').map(([n]) => n),
    majority: () => true,
    write: async (fn, message) => replica.change(fn, message).result
  }, { leaseMs: 150 })
  const snap = (name: string, record?: object): Snapshot => ({ name, createdAt: 1, layers: [VOL], sizeBytes: 4096, at: 1, by: A, ...(record != null ? { export: record } : {}) }) as Snapshot
  const put = (snaps: Snapshot[]): void => {
    replica.change(w => { w.put('volumes', { id: VOL, path: '/t/v', sizeBytes: 4096, replicas: 1, state: 'ready', parent: null, snapshots: Object.fromEntries(snaps.map(s => [s.name, s])) }) })
  }
  const names = (): string[] => Object.keys(replica.read().get('volumes', VOL)!.value.snapshots).sort()
  return { replica, lines, sweeper, snap, put, names }
}

test('a lease that runs out unrenewed lets its snapshot go (logged); a session reading it keeps it; a dead node\'s expired one goes; a live node\'s and a user\'s stay', async t => {
  const { lines, sweeper, snap, put, names } = setup(new Map([[A, 'alive'], [B, 'dead']]))
  const now = Date.now()
  const E1 = 'export-20261204T135501-aaaa'
  const E2 = 'export-20261204T135502-bbbb'
  const E3 = 'export-20261204T135503-cccc'
  put([
    snap(E1, sweeper.record(now)),
    snap(E2, { node: B, run: 'x', until: now - 1 }),
    snap(E3, { node: B, run: 'x', until: now + 60_000 }),
    snap('export-20261204T135504-user'),
    snap('nightly')
  ])
  sweeper.lease(VOL, E1, now)
  const dev = {}
  sweeper.opened(dev, VOL, E3)
  t.deepEqual((await sweeper.sweep()).map(r => r.snapshot), [E2], 'the dead node\'s expired hold: this node is the volume\'s only live one, so it acts')
  t.truthy(lines.find(l => /removed an export snapshot whose export is gone/.test(l) && l.includes(E2) && l.includes('its node is dead and its hold expired')))
  // the lease runs out: the snapshot goes once nothing reads it
  await new Promise(resolve => setTimeout(resolve, 200))
  t.false(sweeper.leased(VOL, E1))
  t.deepEqual((await sweeper.sweep()).map(r => r.snapshot), [E1])
  t.deepEqual(names(), [E3, 'export-20261204T135504-user', 'nightly'])
  // E3's node is dead but its hold stands, and a session here reads it: it stays
  sweeper.released(dev)
  t.deepEqual(await sweeper.sweep(), [])
  t.deepEqual(names(), [E3, 'export-20261204T135504-user', 'nightly'], 'a user\'s snapshots, even one named like an export\'s, are never removed')
  await sweeper.stop()
})

test('a leased export\'s hold is renewed in the document once half of it is left; a lease renewed in time keeps its snapshot', async t => {
  const { replica, sweeper, snap, put, names } = setup(new Map([[A, 'alive']]))
  const E = 'export-20261204T135501-aaaa'
  const now = Date.now()
  put([snap(E, { ...sweeper.record(now), until: now + EXPORT_HOLD_MS / 2 - 1000 })])
  sweeper.lease(VOL, E)
  t.deepEqual(await sweeper.sweep(), [])
  const until = (replica.read().get('volumes', VOL)!.value.snapshots[E] as Snapshot & { export: { until: number } }).export.until
  t.true(until >= now + EXPORT_HOLD_MS, 'renewed to a whole hold from now')
  for (let i = 0; i < 4; i++) { await new Promise(resolve => setTimeout(resolve, 80)); sweeper.lease(VOL, E) }
  t.deepEqual(await sweeper.sweep(), [])
  t.deepEqual(names(), [E], 'kept while its lease is renewed')
  sweeper.endLease(VOL, E)
  t.deepEqual((await sweeper.sweep()).map(r => r.snapshot), [E], 'gone once the lease is given up')
  await sweeper.stop()
})
