// Freeing a surplus copy on its node (replication.ts `retire`, object-store.ts retire,
// object-uses.ts): it goes only while it is still at the version repair checked the
// holders against and no client used it since a mark it handed out (nor for the quiet
// spell), both judged inside the object's exclusive hold; a repair's probe and list are
// not uses, every layer of a layered request is; a mark of another run is refused.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ObjectUses } from '../../node/gvs/object-uses.ts'
import { execute } from '../../node/gvs/replication.ts'
import { silentLogger } from '../../node/log.ts'
import { GvsError } from '../../node/gvs/errors.ts'

async function store (t: { teardown: (fn: () => Promise<void>) => void }): Promise<ObjectStore> {
  const d = await mkdtemp(join(tmpdir(), 'gvs-retire-'))
  t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  const s = new ObjectStore({ log: silentLogger }, { dir: d })
  await s.start()
  t.teardown(async () => { await s.stop() })
  return s
}

test('retire: only at the checked version and when allowed; an absent copy counts as gone', async t => {
  const s = await store(t)
  await s.write('v1', 0, 0, new Uint8Array(4096).fill(1), { epoch: 3, version: { epoch: 3, seq: 7 } })
  t.is(await s.retire('v1', 0, { epoch: 3, seq: 6 }, () => true), 'kept', 'a copy a write moved on since is kept')
  t.is(await s.retire('v1', 0, { epoch: 3, seq: 7 }, () => false), 'kept', 'not quiet: kept')
  t.true((await s.stat('v1', 0)).present)
  t.is(await s.retire('v1', 0, { epoch: 3, seq: 7 }, () => true), 'removed')
  t.false((await s.stat('v1', 0)).present)
  t.is(await s.retire('v1', 0, { epoch: 3, seq: 7 }, () => true), 'absent', 'gone already: not freed twice')
  const again = await execute(s, { op: 'retire', volume: 'v1', index: 0, version: { epoch: 3, seq: 7 }, since: 'x:1', quietMs: 0 }, null)
  t.like(again.reply, { present: false, count: 0 })
})

const v1 = { epoch: 1, seq: 1 }
const markOf = async (s: ObjectStore): Promise<string> => (await execute(s, { op: 'mark' }, null)).reply.mark!
const retire = async (s: ObjectStore, volume: string, index: number, since: string, quietMs = 0): Promise<boolean | undefined> =>
  (await execute(s, { op: 'retire', volume, index, version: v1, since, quietMs }, null)).reply.present

test('retire: judged after the requests that came first; a use after the mark keeps the copy, however late the retire comes', async t => {
  const s = await store(t)
  await s.write('v1', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: v1 })
  const mark = await markOf(s)
  // a writer's settle looks at the copy after the mark, then the retire arrives: kept
  const [st, kept] = await Promise.all([execute(s, { op: 'stat', volume: 'v1', index: 0 }, null), retire(s, 'v1', 0, mark)])
  t.true(st.reply.present)
  t.true(kept, 'kept: used after the mark')
  t.true(await retire(s, 'v1', 0, mark), 'and later too')
  // a new mark after that use: freed
  await new Promise(resolve => setTimeout(resolve, 5))
  t.false(await retire(s, 'v1', 0, await markOf(s)), 'freed (present: false)')
})

test('uses: a mark of another run, a future or a garbled one is refused; quietMs is a margin; the start counts as a use', t => {
  let now = 1000
  const u = new ObjectUses(() => now)
  const early = u.mark()
  t.false(u.unusedSince('a', 1, early, 0), 'a mark at the start itself: nothing is known before it')
  now += 10
  const m = u.mark()
  now += 10
  t.true(u.unusedSince('a', 1, m, 0))
  t.false(u.unusedSince('a', 1, m, 100), 'not quiet for 100 ms (the start)')
  u.used('a', 1)
  t.false(u.unusedSince('a', 1, m, 0), 'used after the mark')
  t.true(u.unusedSince('a', 2, m, 0), 'another object')
  const other = new ObjectUses(() => now)
  t.false(other.unusedSince('a', 2, m, 0), 'another run of the service')
  for (const bad of ['x', `${m.split(':')[0]!}:abc`, `${m.split(':')[0]!}:${now + 1000}`, '']) t.false(u.unusedSince('a', 2, bad, 0), bad)
  now += 11 * 60_000
  t.false(u.unusedSince('a', 2, m, 0), 'older than the uses kept')
})

test('execute records uses at arrival: reads of a layered volume mark the layers under it; probes and lists do not', async t => {
  const s = await store(t)
  for (const [vol, i] of [['base', 0], ['base', 2], ['top', 1]] as const) await s.write(vol, i, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: v1 })
  // the uses' record starts with the replica service (here: the first request); a mark after that
  await execute(s, { op: 'list', volume: 'top' }, null)
  await new Promise(resolve => setTimeout(resolve, 5))
  const mark = await markOf(s)
  await new Promise(resolve => setTimeout(resolve, 5))
  // a read of top's object 0 (absent there) through the layer under it: base's object 0 is used
  await execute(s, { op: 'read', volume: 'top', index: 0, offset: 0, length: 16, under: ['base'] }, null)
  await execute(s, { op: 'stat', volume: 'top', index: 1, probe: true }, null)
  await execute(s, { op: 'list', volume: 'top' }, null)
  t.true(await retire(s, 'base', 0, mark), 'kept: the layer under the read was used')
  t.false(await retire(s, 'top', 1, mark), 'freed: a probe and a list are no use')
  t.false(await retire(s, 'base', 2, mark), 'freed: unused since the mark')
})

test('a copy a retire removed refuses writes and reads (settle again) until a put brings it back', async t => {
  const s = await store(t)
  await s.write('v1', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: v1 })
  await execute(s, { op: 'list', volume: 'v1' }, null)
  await new Promise(resolve => setTimeout(resolve, 5))
  t.false(await retire(s, 'v1', 0, await markOf(s)), 'freed')
  // a writer whose placement lagged still takes this node for the holder: told to settle, not written on zeros
  const write = await t.throwsAsync(execute(s, { op: 'write', volume: 'v1', index: 0, offset: 0, epoch: 1, seq: 2, fua: false }, new Uint8Array(512).fill(9)))
  t.true(write instanceof GvsError && write.transient, String(write))
  t.regex(write?.message ?? '', /freed here as a surplus copy: settle it again/)
  await t.throwsAsync(execute(s, { op: 'read', volume: 'v1', index: 0, offset: 0, length: 16 }, null), { message: /settle it again/ })
  t.false((await s.stat('v1', 0)).present, 'nothing written')
  // its settle brings the newest copy here: welcome again
  const copy = new Uint8Array(s.objectSize).fill(1)
  await execute(s, { op: 'put', volume: 'v1', index: 0, epoch: 1, version: v1 }, copy)
  await execute(s, { op: 'write', volume: 'v1', index: 0, offset: 0, epoch: 1, seq: 2, fua: false }, new Uint8Array(512).fill(9))
  t.is((await s.read('v1', 0, 0, 1))[0], 9)
  // other objects were never retired: written as ever
  await execute(s, { op: 'write', volume: 'v1', index: 3, offset: 0, epoch: 1, seq: 1, fua: false }, new Uint8Array(512).fill(7))
})
