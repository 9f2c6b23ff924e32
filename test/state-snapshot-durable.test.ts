// The state files' crash and failure edges around a snapshot: a snapshot renamed in
// place counts even if the log cannot be started afresh after it (a write answered
// with an error must never come back after a restart); a damaged log's intact records
// stay on disk until a snapshot holds them; a log cut inside its header is never
// appended to. Disk failures are real ones: a directory in the way of a file the store
// creates (open() fails with EISDIR, as it would with ENOSPC or EIO).
import test, { type ExecutionContext } from 'ava'
import { appendFile, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Counter, Registry } from 'prom-client'
import { StateStore, DiskError } from '../node/state/store.ts'
import { Persister } from '../node/state/persister.ts'
import { StateService, StateUnavailableError, type StateServiceInit } from '../node/state/index.ts'
import { Replica } from '../crdt/index.ts'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { createLogger, silentLogger } from '../node/log.ts'
import { tempDir, waitFor } from './helpers/agent-process.ts'

const opts = { clusterId: 'c1', nodeId: '12D3KooWDurable' }

async function fresh (t: ExecutionContext): Promise<string> {
  const dir = await tempDir('vgrid-snapdur-')
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  return dir
}

/** the document as a restart reads it from `dir` (and what the store reported) */
async function restartRead (dir: string): Promise<{ replica: Replica, problems: unknown[] }> {
  const disk = await new StateStore(dir).read()
  const replica = disk.snapshot != null ? Replica.load(opts, disk.snapshot) : Replica.create(opts)
  for (const rec of disk.records) replica.loadIncremental(rec)
  return { replica, problems: disk.problems }
}

test('a snapshot saved before the new log fails keeps its writes acknowledged; appends are refused until a snapshot starts a new log', async t => {
  const dir = await fresh(t)
  const store = new StateStore(dir)
  await store.read()
  await store.openLog()
  const replica = Replica.create(opts)
  const errors: DiskError[] = []
  const p = new Persister({ store, replica, onDiskError: e => errors.push(e) })
  await p.commit(w => w.setLabel(opts.nodeId, 'a', '1'))

  // the new log cannot be created (a full disk would fail the same open)
  const obstacle = join(dir, 'state', 'log.tmp')
  await mkdir(obstacle)
  const [snap, b] = await Promise.allSettled([p.snapshot(), p.commit(w => w.setLabel(opts.nodeId, 'b', '2'))])
  t.is(snap.status, 'fulfilled', 'the snapshot is on disk')
  t.is(b.status, 'fulfilled', 'a write in the saved snapshot is acknowledged, not answered with an error')
  t.deepEqual(replica.read().labelsOf(opts.nodeId), { a: '1', b: '2' })
  t.true(errors.length >= 1, 'the disk trouble is reported')
  t.regex(errors[0]!.message, /starting a new log .*the snapshot is saved/)
  t.truthy(store.appendsRefused)

  // a restart now reads exactly what was acknowledged (the old log replays over the snapshot)
  let back = await restartRead(dir)
  t.deepEqual(back.problems, [])
  t.deepEqual(back.replica.read().labelsOf(opts.nodeId), { a: '1', b: '2' })
  t.deepEqual(back.replica.heads().sort(), replica.heads().sort())

  // an append is refused, and leaves the log as it was
  const logBefore = await readFile(store.path('log'))
  const err = await t.throwsAsync(store.append(Uint8Array.from([1, 2, 3])))
  t.true(err instanceof DiskError)
  t.deepEqual(await readFile(store.path('log')), logBefore)

  // while the log stays blocked, writes go into snapshots (each one counts)
  await p.commit(w => w.setLabel(opts.nodeId, 'c', '3'))
  t.deepEqual((await restartRead(dir)).replica.read().labelsOf(opts.nodeId), { a: '1', b: '2', c: '3' })

  // the disk recovers: the next snapshot starts a new log and appends carry on
  await rmdir(obstacle)
  await p.snapshot()
  t.is(store.appendsRefused, undefined)
  t.is(store.sizes.logRecords, 0)
  await p.commit(w => w.setLabel(opts.nodeId, 'd', '4'))
  t.is(store.sizes.logRecords, 1, 'an append, not a snapshot')
  await store.close()
  back = await restartRead(dir)
  t.deepEqual(back.problems, [])
  t.deepEqual(back.replica.read().labelsOf(opts.nodeId), { a: '1', b: '2', c: '3', d: '4' })
  t.deepEqual(back.replica.heads().sort(), replica.heads().sort())
})

test('a log cut inside its header is started afresh, not appended to', async t => {
  const dir = await fresh(t)
  await mkdir(join(dir, 'state'))
  await writeFile(join(dir, 'state', 'log'), 'VGLO')
  const s = new StateStore(dir)
  t.deepEqual((await s.read()).problems, [])
  await s.openLog()
  await s.append(Uint8Array.from([1, 2, 3]))
  await s.close()
  const back = await new StateStore(dir).read()
  t.deepEqual(back.problems, [])
  t.deepEqual(back.records.map(r => [...r]), [[1, 2, 3]])
})

let hosts = 0
async function memoryHost (t: ExecutionContext): Promise<VgridHost> {
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: generateClusterKey(), listen: [`/memory/snapdur${process.pid}-${hosts++}`], mdns: false, transport: 'memory' })
  t.teardown(async () => await host.stop())
  return host
}

function service (host: VgridHost, dataDir: string, init: Partial<StateServiceInit> = {}): StateService {
  const registry = new Registry()
  const gossipRejected = new Counter({ name: 'vgrid_gossip_rejected_total', help: 'x', labelNames: ['topic', 'reason'] as const, registers: [registry] })
  return new StateService({ host, dataDir, clusterId: opts.clusterId, log: silentLogger, registry, gossipRejected, ...init })
}

test('the service stays degraded while no new log can be started after a saved snapshot, and heals once it can', async t => {
  const dir = await fresh(t)
  const host = await memoryHost(t)
  const node = host.peerId.toString()
  const lines: string[] = []
  const svc = service(host, dir, { log: createLogger({ write: l => lines.push(l) }), compactIntervalMs: 30, diskCheckIntervalMs: 30 })
  await svc.start()
  t.teardown(async () => await svc.stop().catch(() => {}))
  await svc.setLabel(node, 'a', '1')
  const obstacle = join(dir, 'state', 'log.tmp')
  await mkdir(obstacle)
  // the compaction's snapshot is saved; the new log is not
  await waitFor(() => !svc.health().ok, 10_000, 'degraded')
  t.regex(lines.find(l => / ERROR /.test(l)) ?? '', /the snapshot is saved; no appends until a snapshot starts a new log/)
  await t.throwsAsync(svc.setLabel(node, 'b', '2'), { instanceOf: StateUnavailableError })
  // every retry saves a snapshot but still starts no log: not yet healed
  const retries = async (): Promise<number> => (await svc.metrics.diskErrors.get()).values.reduce((n, v) => n + v.value, 0)
  await waitFor(async () => await retries() >= 4, 10_000, 'retries')
  t.false(svc.health().ok)
  t.false(lines.some(l => /saved again/.test(l)), 'no recovery is claimed while the log cannot be started')

  await rmdir(obstacle)
  await waitFor(() => svc.health().ok, 10_000, 'healed')
  await svc.setLabel(node, 'c', '3')
  await svc.stop()
  const again = service(host, dir)
  await again.start()
  t.teardown(async () => await again.stop().catch(() => {}))
  t.deepEqual(again.labelsOf(node), { a: '1', c: '3' })
  t.deepEqual(again.view().persistence.recovered, [])
  // the snapshot on disk is the previous run's: its time, not "never"
  const at = again.view().persistence.lastSnapshotAt
  t.truthy(at, 'a snapshot on disk has a time')
  t.true(Date.now() - Date.parse(at!) < 120_000, String(at))
})

test('a damaged log\'s intact records survive a failure (or crash) before the start\'s snapshot holds them', async t => {
  const dir = await fresh(t)
  const host = await memoryHost(t)
  const o = { clusterId: opts.clusterId, nodeId: host.peerId.toString() }
  // on disk: a snapshot, two acknowledged records after it, then a torn record
  const store = new StateStore(dir)
  await store.read()
  await store.openLog()
  const doc = Replica.create(o)
  doc.migrate()
  await store.writeSnapshot(doc.save())
  for (const [k, v] of [['a', '1'], ['b', '2']] as const) {
    const heads = doc.heads()
    doc.change(w => w.setLabel(o.nodeId, k, v))
    await store.append(doc.saveSince(heads))
  }
  await store.close()
  await appendFile(store.path('log'), Buffer.from([0, 0, 0, 99, 1, 2]))

  // the start's snapshot fails (as a crash at that point would end it)
  const obstacle = join(dir, 'state', 'snapshot.tmp')
  await mkdir(obstacle)
  const first = service(host, dir)
  await t.throwsAsync(first.start())
  await first.stop()
  t.true((await readdir(join(dir, 'state'))).some(f => f.startsWith('log.corrupt-')), 'a copy of the damaged log is kept')

  await rmdir(obstacle)
  const second = service(host, dir)
  await second.start()
  t.teardown(async () => await second.stop().catch(() => {}))
  t.deepEqual(second.labelsOf(o.nodeId), { a: '1', b: '2' }, 'the intact records were found again')
  t.is(second.view().persistence.recovered[0]?.file, 'log')
  await second.setLabel(o.nodeId, 'c', '3')
  await second.stop()
  const back = await new StateStore(dir).read()
  t.deepEqual(back.problems, [], 'the damaged log was replaced by a new one')
  const replica = Replica.load(o, back.snapshot!)
  for (const rec of back.records) replica.loadIncremental(rec)
  t.deepEqual(replica.read().labelsOf(o.nodeId), { a: '1', b: '2', c: '3' })
})
