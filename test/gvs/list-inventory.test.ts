// The inventory of a node holding many objects of one volume (review finding 4): its
// `list` answer outgrew a frame header (16-bit length, 64 KiB), arrived cut and was
// rejected, so repair and health could not see that node's copies. Lists now come in
// pages with the entries in the frame's data; a list asked the old way (no `from`)
// gets the whole list when it fits, else a clear error, never a broken frame.
import test, { type ExecutionContext } from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { silentLogger } from '../../node/log.ts'

/** small objects: 64 KiB, so a page holds 3276 entries and 7000 objects take three */
const OBJ = 64 * 1024
const COUNT = 7000
const VOL = 'many'

interface Node { id: string, host: VgridHost, store: ObjectStore, svc: ReplicaService }

let seq = 0
async function pair (t: ExecutionContext): Promise<[Node, Node]> {
  const tag = `gvsl${process.pid}-${seq++}`
  const dir = await mkdtemp(join(tmpdir(), 'gvs-list-'))
  const clusterKey = generateClusterKey()
  const nodes: Node[] = []
  t.teardown(async () => {
    for (const x of nodes) { await x.svc.stop(); await x.host.stop(); await x.store.stop() }
    await rm(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < 2; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-${i}`], mdns: false, transport: 'memory' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`), objectSize: OBJ })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 60_000 })
    await svc.start()
    nodes.push({ id: host.peerId.toString(), host, store, svc })
  }
  await nodes[0]!.host.dial(nodes[1]!.host.getMultiaddrs()[0]!)
  return [nodes[0]!, nodes[1]!]
}

/** one byte in each of `count` objects (sparse: little disk), object i at version 3.(100+i) */
async function fill (store: ObjectStore, count: number): Promise<void> {
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, async (_, k) =>
      await store.write(VOL, i + k, 0, new Uint8Array([1]), { epoch: 3, version: { epoch: 3, seq: 100 + i + k } })))
  }
  await store.flush()
}

test('a node holding 7000 objects of a volume is listed whole: repair\'s inventory sees every copy, with its version', async t => {
  const [a, b] = await pair(t)
  await fill(b.store, COUNT)
  const repairer = new Repairer({ transport: a.svc, holders: () => [b.id], nodes: () => [a.id, b.id] }, { volume: VOL, replicas: 1 })
  const { inventory, stale, errors } = await repairer.inventory()
  t.deepEqual(errors, [])
  t.is(inventory.size, COUNT)
  t.true([...inventory.values()].every(ns => ns.length === 1 && ns[0] === b.id), 'every object on b')
  t.is(stale.size, 0)
  // the versions come through as written
  const { listObjects } = await import('../../node/gvs/replication.ts')
  const held = await listObjects(a.svc, b.id, VOL)
  t.is(held.length, COUNT)
  t.true(held.every((o, i) => o.index === i && o.version.epoch === 3 && o.version.seq === 100 + i))
  const plan = await repairer.run()
  t.is(plan.plan.copies.length, 0, 'nothing to copy: b holds them all')
  t.deepEqual(plan.plan.lost, [])
})

test('a list asked the old way (no pages) gets the whole list when it fits, else a clear error; the stream goes on', async t => {
  const [a, b] = await pair(t)
  await fill(b.store, 100)
  const small = await a.svc.call(b.id, { op: 'list', volume: VOL })
  t.deepEqual(small.reply.indexes, Array.from({ length: 100 }, (_, i) => i))
  t.deepEqual(small.reply.versions?.[7], [3, 107])
  await fill(b.store, COUNT)
  await t.throwsAsync(a.svc.call(b.id, { op: 'list', volume: VOL }), { message: /has 7000 objects here: a list of them without pages .* does not fit in a frame's 65535; ask with \{from, limit\}/ })
  const st = await a.svc.call(b.id, { op: 'stat', volume: VOL, index: 6999 })
  t.deepEqual(st.reply.version, { epoch: 3, seq: 7099 }, 'the replica still answers on the same channels')
})
