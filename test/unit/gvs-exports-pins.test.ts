// A node's NBD exports pinned to writer epochs (node/gvs/exports.ts): NAME~EPOCH opens
// only at an epoch this node fenced or the volume's current one, and what the exports
// cache stays bounded however many times VMs start (each start pins a new epoch), and
// goes with a volume that leaves the document.
import test from 'ava'
import type { Volume } from '../../crdt/index.ts'
import { VolumeExports } from '../../node/gvs/exports.ts'
import { pinnedName } from '../../node/gvs/export-names.ts'
import { Writers } from '../../node/gvs/writers.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'

const MiB = 1024 * 1024
const volume = (id: string, path: string, epoch: number): Volume =>
  ({ id, path, sizeBytes: 8 * MiB, replicas: 1, state: 'ready', parent: null, snapshots: {}, epoch, at: 1, by: 'n' } as unknown as Volume)

test('pinned names open only at a fenced or the current epoch; the caches stay bounded and go with the volume', t => {
  let vols = [volume('vol-aaaaaaaaaaaa', '/app/disk', 1), volume('vol-bbbbbbbbbbbb', '/app/other', 1)]
  const ex = new VolumeExports({ transport: { self: 'n', call: async () => { throw new Error('no I/O in this test') } }, holders: () => ['n'], nodes: () => ['n'], volumes: () => vols }, new Writers(30_000))
  t.truthy(ex.device('app/disk'), 'the current epoch, unpinned')
  t.truthy(ex.device(pinnedName('app/disk', 1)), 'the current epoch, pinned')
  t.is(ex.device(pinnedName('app/disk', 7)), undefined, 'an epoch neither fenced here nor current')
  // 40 VM starts on this node, each fencing a new epoch and opening the disk pinned to it
  for (let e = 100; e < 140; e++) {
    vols = [{ ...vols[0]!, epoch: e }, vols[1]!]
    ex.pin('vol-aaaaaaaaaaaa', e)
    t.truthy(ex.device(pinnedName('app/disk', e)))
    t.truthy(ex.device('app/disk'))
  }
  t.truthy(ex.device(pinnedName('vol-aaaaaaaaaaaa', 138)), 'a recent pin, by id')
  t.is(ex.device(pinnedName('app/disk', 120)), undefined, 'an old pin is no longer kept')
  const s = ex.sizes()
  t.true(s.pins <= 4 && s.devices <= 6 && s.live <= 7, JSON.stringify(s))
  // the volume leaves the document: its caches go at the next pin of any volume
  vols = [vols[1]!]
  ex.pin('vol-bbbbbbbbbbbb', 2)
  t.deepEqual(ex.sizes(), { devices: 0, live: 0, pins: 1 })
})

test('a session stays on the volume it opened: renamed, it follows it; destroyed, it fails, and never reaches a new volume made at its path', async t => {
  let vols = [volume('vol-aaaaaaaaaaaa', '/x/b', 1)]
  const ex = new VolumeExports({ transport: { self: 'n', call: async () => { throw new Error('no I/O in this test') } }, holders: () => ['n'], nodes: () => ['n'], volumes: () => vols }, new Writers(30_000))
  const old = ex.device('x/b')!
  // renamed: the session's requests still go to its volume (here: to its replicas, which this test has none of)
  vols = [{ ...vols[0]!, path: '/x/b2' } as Volume]
  await t.throwsAsync(old.read(0, 4096), { message: /no I\/O in this test/ })
  // destroyed, and a new volume made at the old path: the old session fails, the new name opens the new one
  vols = [volume('vol-bbbbbbbbbbbb', '/x/b', 1)]
  await t.throwsAsync(old.write(4096, new Uint8Array(4096), false), { message: /no longer exists/ })
  await t.throwsAsync(old.read(0, 4096), { message: /no longer exists/ })
  const fresh = ex.device('x/b')!
  await t.throwsAsync(fresh.read(0, 4096), { message: /no I\/O in this test/ }, 'a new session opens the new volume')
  await t.throwsAsync(old.read(0, 4096), { message: /no longer exists/ }, 'and the old one still does not')
})

test('names of a pinned epoch with wrong keys or the epoch spelt with zeros share one cache entry (a reviewer\'s 50,000 such names kept 43 MB)', t => {
  const vols = [volume('vol-aaaaaaaaaaaa', '/app/disk', 5)]
  const ex = new VolumeExports({ transport: { self: 'n', call: async () => { throw new Error('no I/O in this test') } }, holders: () => ['n'], nodes: () => ['n'], volumes: () => vols, pinKey: (id, e) => `key${e}` }, new Writers(30_000))
  ex.pin('vol-aaaaaaaaaaaa', 5)
  t.truthy(ex.device('app/disk~5~key5'), 'the VM\'s own name')
  for (let i = 0; i < 1000; i++) t.truthy(ex.device(`app/disk~${'0'.repeat(i % 3)}5~wrong${i}`))
  t.true(ex.sizes().live <= 2, JSON.stringify(ex.sizes()))
})

test('a VM disk\'s device (its pinned epoch) compares copies by digest; a plain export\'s does not (another node may write at its epoch)', async t => {
  const vols = [volume('vol-aaaaaaaaaaaa', '/app/disk', 1)]
  const stats: Array<{ digest: boolean }> = []
  const transport = {
    self: 'n',
    call: async (_peer: string, req: ReplicaRequest) => {
      if (req.op === 'stat') { stats.push({ digest: req.digest === true }); return { reply: { ok: true as const, present: false }, data: null } }
      if (req.op === 'read') return { reply: { ok: true as const }, data: new Uint8Array(req.length) }
      throw new Error(`no ${req.op} in this test`)
    }
  }
  const ex = new VolumeExports({ transport, holders: () => ['n'], nodes: () => ['n'], volumes: () => vols }, new Writers(30_000))
  await ex.device('app/disk')!.read(0, 4096)
  t.deepEqual(stats, [{ digest: false }])
  ex.pin('vol-aaaaaaaaaaaa', 7)
  stats.length = 0
  await ex.device(pinnedName('app/disk', 7))!.read(0, 4096)
  t.deepEqual(stats, [{ digest: true }])
})
