// A snapshot cloned on one side of a cut in the document's replication while the other
// side deletes it: the deleting side must not fold the snapshot's layer away (nor free
// it) while a member announced changes it lacks, for the clone made there reads that
// layer. Three in-process agents with their own documents, state sync and gossip (the
// memory transport); the cut is the state service's blocked peers (membership and
// gossip stay up, as in test/state-partition.test.ts), so the grid looks whole.
import test from 'ava'
import { until } from '../dvmm/grid.ts'
import { gvsOf, socketOf, threeAgentsWithVolume } from './agent-grid.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'

const OBJECTS = 6

test('a snapshot cloned across a cut is not folded away by the side that deleted it; the clone reads its data after the heal', async t => {
  const { agents: [a0, a1, a2], ids, api, id } = await threeAgentsWithVolume(t, '/p/vol', OBJECTS)
  const fill = async (byte: number): Promise<void> => {
    const c = await NbdClient.open(socketOf(a0), 'p/vol')
    for (let i = 0; i < OBJECTS; i++) await c.write(i * OBJECT_SIZE, Buffer.alloc(4096, byte), true)
    await c.close()
  }
  await fill(0x61)
  t.is((await api[0]!.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })).statusCode, 201)
  await fill(0x62)
  t.is((await api[0]!.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's2' } })).statusCode, 201)
  await until(() => [a1, a2].every(a => a.state.read().get('volumes', id)?.value.snapshots.s2 != null), 20_000, 'the snapshots on every agent')

  // the cut: {a0, a1} | {a2}
  a0.state.setBlocked([ids[2]!])
  a1.state.setBlocked([ids[2]!])
  a2.state.setBlocked([ids[0]!, ids[1]!])
  // a2 clones s1; a0 deletes it
  const cloned = await api[2]!.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/p/clone', from: '/p/vol@s1' } })
  t.is(cloned.statusCode, 201, cloned.body)
  t.is((await api[0]!.inject({ method: 'DELETE', url: `/v1/volumes/${id}/snapshots/s1` })).statusCode, 200)
  // a2 announces its heads (gossip); the other side lacks them and says so
  await until(() => a0.state.lacksHeadsOf([ids[2]!]).length === 1 && a1.state.lacksHeadsOf([ids[2]!]).length === 1, 20_000, 'the cut side\'s announced changes to be known missing')
  let folds = 0
  for (const a of [a0, a1]) folds += await gvsOf(a).fold()
  t.is(folds, 0, 'no fold while a member announced changes not here')
  for (const a of [a0, a1]) await gvsOf(a).reconcile()

  // the heal: the clone arrives, reads s1's layer under its own top, and keeps it
  for (const a of [a0, a1, a2]) a.state.setBlocked([])
  await until(() => a0.state.read().list('volumes').some(v => v.path === '/p/clone') && [a0, a1].every(a => a.state.lacksHeadsOf([ids[2]!]).length === 0), 30_000, 'the heal')
  for (const a of [a0, a1, a2]) { await gvsOf(a).fold(); await gvsOf(a).reconcile() }
  for (const a of [a0, a1, a2]) {
    const c = await NbdClient.open(socketOf(a), 'p/clone')
    const marks: number[] = []
    for (let i = 0; i < OBJECTS; i++) marks.push((await c.read(i * OBJECT_SIZE, 1))[0]!)
    await c.close()
    t.deepEqual(marks, new Array(OBJECTS).fill(0x61), `the clone reads s1's data through ${a.config.name}`)
  }
})
