// The on-disk format (snapshot + checksummed log) and group commit, on real files.
import test from 'ava'
import { readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { StateStore } from '../node/state/store.ts'
import { Persister } from '../node/state/persister.ts'
import { Replica } from '../crdt/index.ts'
import { tempDir } from './helpers/agent-process.ts'

const opts = { clusterId: 'c1', nodeId: '12D3KooWStore' }

async function fresh (t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await tempDir('vgrid-store-')
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  return dir
}

test('snapshot and log records read back as written', async t => {
  const dir = await fresh(t)
  const s = new StateStore(dir)
  t.deepEqual(await s.read(), { records: [], problems: [] })
  await s.openLog()
  await s.writeSnapshot(Uint8Array.from([1, 2, 3]))
  await s.append(Uint8Array.from([4]))
  await s.append(Uint8Array.from([5, 6]))
  await s.close()
  const back = await new StateStore(dir).read()
  t.deepEqual([...back.snapshot!], [1, 2, 3])
  t.deepEqual(back.records.map(r => [...r]), [[4], [5, 6]])
  t.deepEqual(back.problems, [])
})

test('a torn tail, a bad checksum and a foreign file are reported with what is still good', async t => {
  const dir = await fresh(t)
  const s = new StateStore(dir)
  await s.openLog()
  for (let i = 0; i < 3; i++) await s.append(new Uint8Array(100).fill(i))
  await s.close()
  const log = join(dir, 'state', 'log')
  await truncate(log, (await stat(log)).size - 10)
  let r = await s.read()
  t.is(r.records.length, 2)
  t.regex(r.problems[0]?.detail ?? '', /record at byte \d+ is truncated .* 2 records before it are intact/)

  const bytes = await readFile(log)
  bytes[8 + 8 + 50] = bytes[8 + 8 + 50]! ^ 1 // inside the first record's payload
  await writeFile(log, bytes)
  r = await s.read()
  t.is(r.records.length, 0)
  t.regex(r.problems[0]?.detail ?? '', /fails its checksum/)

  // this release's own format cut short inside its header: a bad header, not another format (rv43)
  await writeFile(join(dir, 'state', 'snapshot'), 'VGSNAP1\n\0\0')
  r = await s.read()
  t.regex(r.problems.find(p => p.file === 'snapshot')?.detail ?? '', /^not a vgrid state snapshot \(10 bytes, bad header\)$/)
  await writeFile(join(dir, 'state', 'snapshot'), 'VGSNAP2\nwhatever of a newer release')
  r = await s.read()
  t.regex(r.problems.find(p => p.file === 'snapshot')?.detail ?? '', /^a vgrid state snapshot of format 2, which this release does not read/)
  await writeFile(join(dir, 'state', 'snapshot'), 'not a snapshot at all')
  r = await s.read()
  t.is(r.snapshot, undefined)
  t.regex(r.problems.find(p => p.file === 'snapshot')?.detail ?? '', /bad header/)
  const kept = await s.setAside('snapshot', new Date('2030-01-02T03:04:05Z'))
  t.true(kept.endsWith('snapshot.corrupt-2030-01-02T03-04-05-000Z'))
  t.true((await readdir(join(dir, 'state'))).includes('snapshot.corrupt-2030-01-02T03-04-05-000Z'))
})

test('group commit: a burst of writers shares a few fsyncs; compaction keeps everything', async t => {
  const dir = await fresh(t)
  const store = new StateStore(dir)
  await store.read()
  await store.openLog()
  const replica = Replica.create(opts)
  const flushes: string[] = []
  const p = new Persister({ store, replica, compactLogBytes: 4096, onFlush: kind => flushes.push(kind) })
  const waits: Array<Promise<void>> = []
  for (let i = 0; i < 100; i++) {
    replica.change(w => w.setLabel(opts.nodeId, `k${i}`, 'v'.repeat(50)))
    waits.push(p.flush())
  }
  await Promise.all(waits)
  t.true(flushes.length < 10, `${flushes.length} flushes for 100 writes`)
  for (let i = 100; i < 300; i++) {
    replica.change(w => w.setLabel(opts.nodeId, `k${i}`, 'v'.repeat(50)))
    await p.flush()
  }
  t.true(flushes.includes('snapshot'), 'the log outgrew its limit and was compacted')
  t.false(p.dirty)
  await store.close()

  const disk = await new StateStore(dir).read()
  t.deepEqual(disk.problems, [])
  const back = Replica.load(opts, disk.snapshot!)
  for (const rec of disk.records) back.loadIncremental(rec)
  t.deepEqual(back.heads(), replica.heads())
  t.is(back.read().counts().nodeLabels, 300)
})
