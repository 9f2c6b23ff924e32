// Surplus copies (on nodes that are no longer an object's holders) are freed by repair
// (repair.ts freeSurplus), on in-process hosts: a node joins and takes some objects
// over; the copies left on their former holders go only once every member agrees on
// the placement and each copy went unused for the quiet spell; afterwards every object
// sits on exactly its holders and every byte reads back.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { replicaNodes } from './hosts.ts'

const OBJ = 256 * 1024
const OBJECTS = 16

test('a joining node takes objects over; the former holders\' copies are freed only when every member agrees and they were quiet', async t => {
  const nodes = await replicaNodes(t, 4, { objectSize: OBJ })

  // three nodes place the volume; the fourth joins after it was written
  const placed = new Set(nodes.slice(0, 3).map(n => n.id))
  const holders = (key: string, r: number): string[] => new Placement(nodes.filter(n => placed.has(n.id)).map(n => ({ id: n.id, weight: 1 }))).holders(key, r)
  const all = (): string[] => nodes.map(n => n.id)
  const vol = (): ReplicatedVolume => new ReplicatedVolume({ transport: nodes[0]!.svc, holders, nodes: all }, { volume: 'db', size: OBJECTS * OBJ, replicas: 2, epoch: 1, objectSize: OBJ })
  const data = randomBytes(OBJECTS * OBJ)
  await vol().write(0, data, true)
  const before = Array.from({ length: OBJECTS }, (_, i) => holders(objectKey('db', i), 2))
  placed.add(nodes[3]!.id)
  const left = before.flatMap((hs, i) => hs.filter(h => !holders(objectKey('db', i), 2).includes(h)).map(node => ({ index: i, node })))
  t.true(left.length > 0, 'the joining node takes some objects over')
  const copiesOf = async (i: number): Promise<string[]> => {
    const out: string[] = []
    for (const n of nodes) if ((await n.store.list('db')).includes(i)) out.push(n.id)
    return out.sort()
  }

  let agree = false
  const repairer = (quietMs: number): Repairer => new Repairer({ transport: nodes[0]!.svc, holders, nodes: all, agreed: async () => agree }, { volume: 'db', replicas: 2, objects: OBJECTS, bytesPerSecond: 0, retireQuietMs: quietMs })
  // a member places otherwise: the objects are copied to the new holder, nothing is freed
  const first = await repairer(0).run()
  t.is(first.failed, 0, first.errors.join('; '))
  t.is(first.total, left.length)
  t.is(first.freed, 0)
  for (const { index, node } of left) t.true((await copiesOf(index)).includes(node), `object ${index} still on its former holder`)
  // every member agrees, but the copies were used within the quiet spell (the writes, a moment ago): kept
  agree = true
  t.is((await repairer(60_000).run()).freed, 0)
  // quiet: freed, and only those
  const freed = await repairer(0).run()
  t.is(freed.freed, left.length, freed.errors.join('; '))
  for (let i = 0; i < OBJECTS; i++) t.deepEqual(await copiesOf(i), holders(objectKey('db', i), 2).sort(), `object ${i} on exactly its holders`)
  t.true(Buffer.from(await vol().read(0, OBJECTS * OBJ)).equals(data), 'every byte reads back')
  t.is((await repairer(0).run()).freed, 0, 'nothing left to free')
  // a writer whose placement still lacks the newcomer (it lagged the agreement) and that
  // settled the object before its copy was freed writes to the freed copy's node: told to
  // settle again, it brings the newest copy back there first, so the copy is whole, not
  // the write on zeros
  const lagging = (key: string, r: number): string[] => new Placement(nodes.slice(0, 3).map(n => ({ id: n.id, weight: 1 }))).holders(key, r)
  const { index, node } = left[0]!
  const stale = new ReplicatedVolume({ transport: nodes[0]!.svc, holders: lagging, nodes: all }, { volume: 'db', size: OBJECTS * OBJ, replicas: 2, epoch: 1, objectSize: OBJ, retryMs: 10_000 })
  await stale.write(index * OBJ, Buffer.alloc(4096, 0xdd), true)
  Buffer.alloc(4096, 0xdd).copy(data, index * OBJ)
  t.true((await repairer(0).run()).freed >= 1, 'its copy there freed again (the settle had brought it back)')
  await stale.write(index * OBJ, Buffer.alloc(4096, 0xee), true)
  const there = Buffer.from(await nodes.find(n => n.id === node)!.store.read('db', index, 0, OBJ))
  t.is(there[0], 0xee, 'the write landed there')
  t.true(there.subarray(4096).equals(data.subarray(index * OBJ + 4096, (index + 1) * OBJ)), 'on the whole newest copy, not on zeros')
})
