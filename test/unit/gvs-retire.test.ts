// Freeing a surplus copy on its node (replication.ts `retire`, object-store.ts retire,
// object-uses.ts): it goes only while it is still at the version repair checked the
// holders against and no client used it for the quiet spell, both judged inside the
// object's exclusive hold; a repair's probe and list are not uses, every layer of a
// layered request is; the spell counts from the node's start too.
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ObjectUses } from '../../node/gvs/object-uses.ts'
import { execute } from '../../node/gvs/replication.ts'
import type { ReplicaRequest } from '../../node/gvs/replica-protocol.ts'
import { silentLogger } from '../../node/log.ts'

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
  t.false(await s.retire('v1', 0, { epoch: 3, seq: 6 }, () => true), 'a copy a write moved on since is kept')
  t.false(await s.retire('v1', 0, { epoch: 3, seq: 7 }, () => false), 'not quiet: kept')
  t.true((await s.stat('v1', 0)).present)
  t.true(await s.retire('v1', 0, { epoch: 3, seq: 7 }, () => true))
  t.false((await s.stat('v1', 0)).present)
  t.true(await s.retire('v1', 5, { epoch: 1, seq: 1 }, () => true), 'absent')
})

test('retire: the quiet spell is judged after the requests that came first (a stat queued before it stops it)', async t => {
  const s = await store(t)
  await s.write('v1', 0, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: { epoch: 1, seq: 1 } })
  const call = async (req: ReplicaRequest): Promise<boolean | undefined> => (await execute(s, req, null)).reply.present
  const retire: ReplicaRequest = { op: 'retire', volume: 'v1', index: 0, version: { epoch: 1, seq: 1 }, quietMs: 0 }
  // quietMs 0: nothing stops it but the version
  t.false(await call({ ...retire, quietMs: 0 }), 'retired (present: false)')
  await s.write('v1', 0, 0, new Uint8Array(4096).fill(2), { epoch: 1, version: { epoch: 1, seq: 1 } })
  // a stat (a writer's settle) arrives, then the retire with a spell: kept
  const [st, kept] = await Promise.all([call({ op: 'stat', volume: 'v1', index: 0 }), call({ ...retire, quietMs: 60_000 })])
  t.true(st)
  t.true(kept, 'kept: used within the spell')
})

test('uses: a probe and a list are not uses; every layer of a layered read is; the spell counts from the start too', t => {
  let now = 1000
  const u = new ObjectUses(() => now)
  t.false(u.quiet('a', 1, 500), 'started 0 ms ago: not known quiet')
  now += 500
  t.true(u.quiet('a', 1, 500))
  u.used('a', 1)
  t.false(u.quiet('a', 1, 500))
  t.true(u.quiet('a', 2, 500), 'another object')
  now += 500
  t.true(u.quiet('a', 1, 500))
})

test('execute records uses at arrival: reads of a layered volume mark the layers under it; probes and lists do not', async t => {
  const s = await store(t)
  const v1 = { epoch: 1, seq: 1 }
  for (const [vol, i] of [['base', 0], ['base', 2], ['top', 1]] as const) await s.write(vol, i, 0, new Uint8Array(4096).fill(1), { epoch: 1, version: v1 })
  const retire = async (volume: string, index: number): Promise<boolean | undefined> => (await execute(s, { op: 'retire', volume, index, version: v1, quietMs: 150 }, null)).reply.present
  await execute(s, { op: 'list', volume: 'top' }, null)
  await new Promise(resolve => setTimeout(resolve, 200))
  // a read of top's object 0 (absent there) through the layer under it: base's object 0 is used
  await execute(s, { op: 'read', volume: 'top', index: 0, offset: 0, length: 16, under: ['base'] }, null)
  await execute(s, { op: 'stat', volume: 'top', index: 1, probe: true }, null)
  await execute(s, { op: 'list', volume: 'top' }, null)
  t.true(await retire('base', 0), 'kept: the layer under the read was used')
  t.false(await retire('top', 1), 'freed: a probe and a list are no use')
  t.false(await retire('base', 2), 'freed: unused for the spell')
})
