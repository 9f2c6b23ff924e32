// A snapshot taken while the writer's node is cut off from the document's sync: the
// writer does not know of the snapshot, and wrote on into the layer the snapshot froze,
// so the snapshot showed writes made after it. The snapshot's node now freezes the layer
// at every live node's replicas before it answers: the writer's next write is refused
// there, waits for its document, and lands on the new top. Three in-process agents
// with their own documents and state sync (the memory transport); the cut is the state
// service's blocked peers (membership, gossip and the replica streams stay up).
import test from 'ava'
import { gvsOf, socketOf, threeAgentsWithVolume } from './agent-grid.ts'
import { until } from '../dvmm/grid.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'

const OBJECTS = 6

test('a snapshot taken while the writer\'s node is cut off from the document does not take its later writes; they land on the new top once it catches up', async t => {
  const { agents: [a0, a1, a2], ids, api, id } = await threeAgentsWithVolume(t, '/f/vol', OBJECTS)

  // the writer on a0 keeps one session open throughout, as a VM does
  const writer = await NbdClient.open(socketOf(a0), 'f/vol')
  t.teardown(async () => { await writer.close().catch(() => {}) })
  for (let i = 0; i < OBJECTS; i++) await writer.write(i * OBJECT_SIZE, Buffer.alloc(4096, 0x61), true)

  // the cut: a0 | {a1, a2}; a1 takes the snapshot, which a0's document does not see
  a0.state.setBlocked([ids[1]!, ids[2]!])
  a1.state.setBlocked([ids[0]!])
  a2.state.setBlocked([ids[0]!])
  const snap = await api[1]!.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name: 's1' } })
  t.is(snap.statusCode, 201, snap.body)
  t.is(a0.state.read().get('volumes', id)?.value.snapshots.s1, undefined, 'the writer\'s node does not know of the snapshot')

  // written after the snapshot answered: refused at the replicas, waiting for a0's document
  const later = Promise.all(Array.from({ length: OBJECTS }, async (_, i) => { await writer.write(i * OBJECT_SIZE, Buffer.alloc(4096, 0x62), true) }))
  let landed = false
  void later.then(() => { landed = true }, () => {})
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.false(landed, 'a write to the frozen layer waits while the writer\'s document lacks the snapshot')
  const s1 = await NbdClient.open(socketOf(a1), 'f/vol@s1')
  for (let i = 0; i < OBJECTS; i++) t.is((await s1.read(i * OBJECT_SIZE, 1))[0], 0x61, `the snapshot reads what was there when it was taken (object ${i}, during the cut)`)
  await s1.close()

  // the heal: a0's document brings the snapshot, and the waiting writes land on the new top
  for (const a of [a0, a1, a2]) a.state.setBlocked([])
  await later
  await writer.flush()
  for (const a of [a0, a1, a2]) {
    const s = await NbdClient.open(socketOf(a), 'f/vol@s1')
    const v = await NbdClient.open(socketOf(a), 'f/vol')
    for (let i = 0; i < OBJECTS; i++) {
      t.is((await s.read(i * OBJECT_SIZE, 1))[0], 0x61, `the snapshot keeps its data through ${a.config.name} (object ${i})`)
      t.is((await v.read(i * OBJECT_SIZE, 1))[0], 0x62, `the volume reads the later write through ${a.config.name} (object ${i})`)
    }
    await s.close()
    await v.close()
  }
  // the freeze is kept on disk by every node (a restart before the document catches up still refuses)
  const frozen = a1.state.read().get('volumes', id)!.value.snapshots.s1!.layers![0]!
  for (const a of [a0, a1, a2]) t.true(gvsOf(a).store.frozen.list().includes(frozen), `${a.config.name} recorded the freeze of ${frozen}`)
})

test('snapshots on both sides of a cut in the document\'s sync: after the heal the volume reads the writer\'s side\'s top, with every write made there', async t => {
  const { agents: [a0, a1, a2], ids, api, id } = await threeAgentsWithVolume(t, '/f/two', OBJECTS)
  const writer = await NbdClient.open(socketOf(a0), 'f/two')
  t.teardown(async () => { await writer.close().catch(() => {}) })
  const writeAll = async (byte: number): Promise<void> => { for (let i = 0; i < OBJECTS; i++) await writer.write(i * OBJECT_SIZE, Buffer.alloc(4096, byte), true) }
  await writeAll(0x61)

  a0.state.setBlocked([ids[1]!, ids[2]!])
  a1.state.setBlocked([ids[0]!])
  a2.state.setBlocked([ids[0]!])
  // the writer's side snapshots twice, writing after each; the other side once, and
  // writes more of other things to its document (which Automerge's own pick favours)
  const snapshot = async (i: number, name: string): Promise<void> => {
    const r = await api[i]!.inject({ method: 'POST', url: `/v1/volumes/${id}/snapshots`, payload: { name } })
    t.is(r.statusCode, 201, r.body)
  }
  await snapshot(0, 'a1')
  await writeAll(0x62)
  await snapshot(0, 'a2')
  await writeAll(0x63)
  await writer.flush()
  for (let i = 0; i < 30; i++) await a1.state.write(w => { w.setLabel(ids[1]!, `k${i}`, 'x') })
  await snapshot(1, 'b1')

  for (const a of [a0, a1, a2]) a.state.setBlocked([])
  await until(() => [a0, a1, a2].every(a => Object.keys(a.state.read().get('volumes', id)?.value.snapshots ?? {}).length === 3), 20_000, 'every snapshot on every agent')
  const tops = [a0, a1, a2].map(a => a.state.read().get('volumes', id)!.value.layers![0])
  t.deepEqual(tops, [tops[0], tops[0], tops[0]])
  // the volume still takes writes (its top is frozen by neither side), and reads them back
  await writer.write(0, Buffer.alloc(4096, 0x64), true)
  for (const a of [a0, a1, a2]) {
    const v = await NbdClient.open(socketOf(a), 'f/two')
    t.is((await v.read(0, 1))[0], 0x64, `${a.config.name}: the write after the heal`)
    for (let i = 1; i < OBJECTS; i++) t.is((await v.read(i * OBJECT_SIZE, 1))[0], 0x63, `${a.config.name}: the write after the writer's side's second snapshot (object ${i})`)
    await v.close()
    const s = await NbdClient.open(socketOf(a), 'f/two@a2')
    t.is((await s.read(OBJECT_SIZE, 1))[0], 0x62, `${a.config.name}: snapshot a2 holds what was written before it`)
    await s.close()
  }
})
