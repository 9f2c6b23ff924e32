// The pins file (node/gvs/pins-file.ts) under the exports (exports.ts): a new
// VolumeExports over the same file opens NAME~EPOCH at the epochs the last one pinned,
// keeps the bound, drops volumes gone from the file only when the set changes, and
// reads a missing or damaged file as empty.
import test from 'ava'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Volume } from '../../crdt/index.ts'
import { VolumeExports } from '../../node/gvs/exports.ts'
import { pinnedName } from '../../node/gvs/export-names.ts'
import { PinsFile, parsePins } from '../../node/gvs/pins-file.ts'
import { Writers } from '../../node/gvs/writers.ts'
import { createLogger, silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const volume = (id: string, path: string, epoch: number): Volume =>
  ({ id, path, sizeBytes: 8 * MiB, replicas: 1, state: 'ready', parent: null, snapshots: {}, epoch, at: 1, by: 'n' } as unknown as Volume)

const exportsOver = (file: PinsFile, vols: () => Volume[]): VolumeExports =>
  new VolumeExports({ transport: { self: 'n', call: async () => { throw new Error('no I/O in this test') } }, holders: () => ['n'], nodes: () => ['n'], volumes: vols, pinsFile: file }, new Writers(30_000))

test('pins survive a new VolumeExports over the same file, bounded, and go with the volume', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvspins-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const path = join(dir, 'gvs-pins.json')
  let vols = [volume('vol-aaaaaaaaaaaa', '/app/disk', 500), volume('vol-bbbbbbbbbbbb', '/app/other', 1)]
  const first = exportsOver(new PinsFile(path, silentLogger), () => vols)
  for (let e = 100; e < 110; e++) await first.pin('vol-aaaaaaaaaaaa', e)
  await first.pin('vol-bbbbbbbbbbbb', 3)
  t.is(first.device(pinnedName('app/disk', 108))?.size, 8 * MiB)

  // the restart: the document holds 500, which this node never pinned
  const second = exportsOver(new PinsFile(path, silentLogger), () => vols)
  t.truthy(second.device(pinnedName('app/disk', 108)), 'a pin of the last run')
  t.truthy(second.device(pinnedName('app/disk', 109)))
  t.is(second.device(pinnedName('app/disk', 104)), undefined, 'only the newest 4 were kept')
  t.truthy(second.device(pinnedName('app/other', 3)))
  t.is(second.sizes().pins, 5)

  // the same pin again changes nothing: the file is not written
  const ino = (await stat(path)).ino
  await second.pin('vol-aaaaaaaaaaaa', 109)
  t.is((await stat(path)).ino, ino, 'an unchanged set is not written (a write renames a new file in)')

  // a volume leaves the document: the next pin that drops it writes the file without it
  vols = [vols[1]!]
  await second.pin('vol-bbbbbbbbbbbb', 3)
  t.deepEqual(JSON.parse(await readFile(path, 'utf8')), { format: 1, pins: { 'vol-bbbbbbbbbbbb': [3] } })
})

test('a missing file is empty; a damaged one is reported with its path and read as empty', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvspins-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const path = join(dir, 'gvs-pins.json')
  const lines: string[] = []
  const log = createLogger({ write: l => { lines.push(l) } })
  t.is(new PinsFile(path, log).load().size, 0)
  t.deepEqual(lines, [], 'a missing file is no warning')
  await writeFile(path, '\u0000\u0000garbage')
  const ex = exportsOver(new PinsFile(path, log), () => [volume('vol-aaaaaaaaaaaa', '/app/disk', 2)])
  t.is(ex.sizes().pins, 0)
  t.is(lines.length, 1)
  t.true(lines[0]!.includes(' WARN ') && lines[0]!.includes(path) && lines[0]!.includes('damaged'), lines[0])
})

test('parsePins takes only volume ids with lists of whole epochs', t => {
  t.deepEqual(parsePins('{"format":1,"pins":{"vol-a":[3,7]}}'), { pins: new Map([['vol-a', [3, 7]]]) })
  for (const bad of ['', 'null', '[]', '{"format":1}', '{"format":2,"pins":{}}', '{"format":1,"pins":{"vol-a":7}}', '{"format":1,"pins":{"vol-a":[]}}',
    '{"format":1,"pins":{"vol-a":[-1]}}', '{"format":1,"pins":{"vol-a":[1e300]}}', '{"format":1,"pins":{"vol-a":[null]}}', '{"format":1,"pins":{"a~1":[1]}}']) {
    t.true('error' in parsePins(bad), bad)
  }
})
