// Healing a copy (scrub.ts healCopyDetail, as a scrub or a damaged read does) never puts
// an older copy over this one: a writer that settled the object counts on the writes
// its version says it took, and the next write would hide the gap under a newer
// version (review rv19). A heal whose copy was kept (the one here was newer) is not
// counted as healed. Real object stores in one process, joined by `execute`.
import test, { type ExecutionContext } from 'ava'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { execute, type ReplicaTransport } from '../../node/gvs/replication.ts'
import { healCopyDetail } from '../../node/gvs/scrub.ts'
import { GvsError, isGvsError } from '../../node/gvs/errors.ts'
import { syncPath } from '../../node/gvs/file-io.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const block = (v: number): Uint8Array => new Uint8Array(4096).fill(v)
const v = (seq: number): { epoch: number, seq: number } => ({ epoch: 1, seq })

interface Grid { stores: Record<string, ObjectStore>, dirs: Record<string, string>, failFsync: Set<string>, statFails: Record<string, number> }

/** stores A, B, C; an fsync of a path in `failFsync` fails; `statFails[n]` of n's next stats fail */
async function grid (t: ExecutionContext): Promise<Grid> {
  const root = await mkdtemp(join(tmpdir(), 'gvs-heal-'))
  const g: Grid = { stores: {}, dirs: {}, failFsync: new Set(), statFails: {} }
  t.teardown(async () => { for (const s of Object.values(g.stores)) await s.stop().catch(() => {}); await rm(root, { recursive: true, force: true }) })
  for (const n of ['A', 'B', 'C']) {
    g.dirs[n] = join(root, n)
    const fsync = async (path: string): Promise<void> => {
      if (g.failFsync.has(path)) throw Object.assign(new Error(`EIO: i/o error, fsync '${path}'`), { code: 'EIO' })
      await syncPath(path)
    }
    g.stores[n] = new ObjectStore({ log: silentLogger, fsync }, { dir: g.dirs[n] })
    await g.stores[n].start()
  }
  return g
}

function transport (g: Grid, self: string): ReplicaTransport {
  return {
    self,
    call: async (peer, req, data) => {
      if (req.op === 'stat' && (g.statFails[peer] ?? 0) > 0) { g.statFails[peer]!--; throw new GvsError('unavailable', `replica ${peer} unreachable for stat (test)`) }
      return await execute(g.stores[peer]!, req, data ?? null)
    }
  }
}

const heal = async (g: Grid, self: string): Promise<{ error: string | null, everyCopy: boolean }> =>
  await healCopyDetail({ transport: transport(g, self), sources: () => ['A', 'B', 'C'], objectSize: 4 * MiB }, 'v', 0)

test('a copy an fsync failed on is not healed from an older copy (a node whose version cannot be read is passed over); a copy as new heals it', async t => {
  const g = await grid(t)
  const { A, B, C } = g.stores
  // C: a former holder's copy at 1.1; A and B, the holders, took 1.2 and 1.3
  for (const s of [A!, B!, C!]) await s.write('v', 0, 0, block(1), { epoch: 1, version: v(1) })
  for (const s of [A!, B!]) {
    await s.write('v', 0, 4096, block(2), { epoch: 1, version: v(2) })
    await s.flush('v')
    await s.write('v', 0, 8192, block(3), { epoch: 1, version: v(3) })
  }
  // A's fsync fails: its copy is lost (what is on disk is unknown), its version still 1.3
  g.failFsync.add(join(g.dirs.A!, 'objects', 'v', '00000000'))
  await t.throwsAsync(A!.flush('v'))
  g.failFsync.clear()
  t.true(isGvsError(await t.throwsAsync(A!.read('v', 0, 0, 4096)), 'damaged'), 'not served')
  g.statFails.B = 1
  const first = await heal(g, 'A')
  t.not(first.error, null, 'not healed')
  t.regex(first.error!, /C: its copy \(1\.1\) is older than this one \(1\.3\)/)
  t.regex(first.error!, /B: its copy's version could not be read/)
  t.deepEqual((await A!.stat('v', 0)).version, v(3), 'the version of the copy here stands')
  t.true(isGvsError(await t.throwsAsync(A!.read('v', 0, 0, 4096)), 'damaged'), 'and it is still not served')
  // B answers: its copy (as new) rewrites A's
  t.is((await heal(g, 'A')).error, null)
  t.deepEqual([...(await A!.read('v', 0, 0, 3 * 4096)).filter((_, i) => i % 4096 === 0)], [1, 2, 3], 'every write the version counts is there')
  // a store's put alone: a lost copy is never replaced by an older one
  g.failFsync.add(join(g.dirs.B!, 'objects', 'v', '00000000'))
  await B!.write('v', 0, 12288, block(4), { epoch: 1, version: v(4) })
  await t.throwsAsync(B!.flush('v'))
  g.failFsync.clear()
  const older = await C!.readObject('v', 0)
  t.true(await B!.put('v', 0, older!, { epoch: 1, replace: true }), 'kept: the copy is older than the lost one')
  t.deepEqual((await B!.stat('v', 0)).version, v(4))
})

test('a heal whose copy is kept (the one here is newer) is not counted healed, and a copy damaged on every holder stays reported', async t => {
  const g = await grid(t)
  const { A, B, C } = g.stores
  for (const s of [A!, B!, C!]) await s.write('v', 0, 0, block(1), { epoch: 1, version: v(1) })
  for (const s of [A!, B!]) await s.write('v', 0, 4096, block(2), { epoch: 1, version: v(2) })
  for (const s of [A!, B!, C!]) await s.flush('v')
  // block 1 rots on both holders; C's older copy is clean
  for (const n of ['A', 'B']) {
    const f = await open(join(g.dirs[n]!, 'objects', 'v', '00000000'), 'r+')
    await f.write(block(0xee), 0, 4096, 4096)
    await f.close()
  }
  t.deepEqual(await A!.verify('v', 0), [1])
  const h = await heal(g, 'A')
  t.not(h.error, null, 'not healed: the only clean copy is older')
  t.true(h.everyCopy, 'block 1 is damaged on every copy as new as this one')
  t.deepEqual(await A!.verify('v', 0), [1], 'still damaged (a read of block 1 fails; it is never served from the older copy)')
  t.deepEqual((await A!.stat('v', 0)).version, v(2))
})
