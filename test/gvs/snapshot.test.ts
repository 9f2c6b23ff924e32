// Snapshots and clones as copy-on-write layers over replicated objects, on in-process
// hosts: a snapshot does not see later writes, a clone diverges without touching its
// snapshot, and a set snapshot of two volumes taken during writes to both is consistent.
import test, { type ExecutionContext } from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { ReplicatedVolume, type ReplicatedVolumeInit } from '../../node/gvs/replicated-volume.ts'
import { LiveVolume } from '../../node/gvs/live-volume.ts'
import { Placement } from '../../node/gvs/placement.ts'
import { silentLogger } from '../../node/log.ts'

const OBJ = 256 * 1024
const SIZE = 8 * OBJ
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

async function grid (t: ExecutionContext): Promise<{ svc: ReplicaService, stores: ObjectStore[], dev: (init: Partial<ReplicatedVolumeInit> & { volume: string }) => ReplicatedVolume }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-snap-'))
  const clusterKey = generateClusterKey()
  const nodes: Array<{ host: VgridHost, store: ObjectStore, svc: ReplicaService }> = []
  t.teardown(async () => {
    for (const n of nodes) { await n.svc.stop(); await n.host.stop(); await n.store.stop() }
    await rm(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < 3; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/gvssnap${process.pid}-${t.title.length}-${i}`], mdns: false, transport: 'memory' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`), objectSize: OBJ })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 60_000 })
    await svc.start()
    nodes.push({ host, store, svc })
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.host.dial(b.host.getMultiaddrs()[0]!)
  const p = new Placement(nodes.map(n => ({ id: n.host.peerId.toString(), weight: 1 })))
  const holders = (key: string, r: number): string[] => p.holders(key, r)
  const svc = nodes[0]!.svc
  return {
    svc,
    stores: nodes.map(n => n.store),
    dev: init => new ReplicatedVolume({ transport: svc, holders }, { size: SIZE, replicas: 2, epoch: 1, objectSize: OBJ, ...init })
  }
}

test('a snapshot does not see later writes; a clone diverges without touching it', async t => {
  const { dev, stores } = await grid(t)
  const a = randomBytes(SIZE)
  await dev({ volume: 'db' }).write(0, a, true)
  // snapshot s1: "db" is frozen; the volume now writes to "db@1" over it
  const snap = dev({ volume: 'db', readOnly: true })
  const live = dev({ volume: 'db@1', under: ['db'], placementKey: 'db' })
  const b = randomBytes(3000)
  await live.write(OBJ - 1000, b, true) // across an object boundary: two copy-ups
  await live.writeZeroes(5 * OBJ, OBJ, true) // a whole object zeroed over a lower copy
  const want = Buffer.from(a)
  b.copy(want, OBJ - 1000)
  want.fill(0, 5 * OBJ, 6 * OBJ)
  t.true(same(await live.read(0, SIZE), want), 'the volume sees its writes')
  t.true(same(await snap.read(0, SIZE), a), 'the snapshot does not')
  // a clone of the snapshot: its own top layer over the snapshot's
  const clone = dev({ volume: 'vol-clone', under: ['db'], placementKey: 'db' })
  t.true(same(await clone.read(0, SIZE), a), 'a clone starts as its snapshot, at once')
  const c = randomBytes(5000)
  await clone.write(2 * OBJ + 7, c, true)
  const wantClone = Buffer.from(a)
  c.copy(wantClone, 2 * OBJ + 7)
  t.true(same(await clone.read(0, SIZE), wantClone), 'the clone diverges')
  t.true(same(await snap.read(0, SIZE), a), 'without touching the snapshot')
  t.true(same(await live.read(0, SIZE), want), 'or the volume')
  // copy-on-write: the clone holds only the object it wrote (on R=2 nodes)
  const cloneObjects = (await Promise.all(stores.map(async s => await s.list('vol-clone')))).flat()
  t.deepEqual([...new Set(cloneObjects)], [2])
  t.is(cloneObjects.length, 2)
})

test('a set snapshot of two volumes taken during writes to both is consistent', async t => {
  const { dev } = await grid(t)
  // one writer writes sequence numbers to A, then the same to B; the snapshot of the
  // set must never hold a number in B newer than the one in A
  let layer = 0
  const top = (v: string): ReplicatedVolume => dev(layer === 0 ? { volume: v } : { volume: `${v}@1`, under: [v], placementKey: v })
  const cache = new Map<string, ReplicatedVolume>()
  const current = (v: string) => (): ReplicatedVolume => {
    const key = `${v}/${layer}`
    if (!cache.has(key)) cache.set(key, top(v))
    return cache.get(key)!
  }
  const A = new LiveVolume(current('a'), 'a')
  const B = new LiveVolume(current('b'), 'b')
  const num = (n: number): Uint8Array => { const b = Buffer.alloc(512); b.writeUInt32BE(n, 0); return b }
  let written = 0
  let stopAt = Infinity
  const writer = (async () => {
    for (let n = 1; n <= stopAt; n++) {
      await A.write(0, num(n), false)
      await B.write(0, num(n), false)
      written = n
    }
  })()
  const until = async (f: () => boolean): Promise<void> => { while (!f()) await new Promise(resolve => setTimeout(resolve, 5)) }
  await until(() => written >= 5)
  layer = 1 // the set snapshot: both volumes move to new top layers in one step
  const at = written
  stopAt = at + 5 // (a write already issued may still land on either side of the cut)
  await writer
  const snapA = Buffer.from(await dev({ volume: 'a', readOnly: true }).read(0, 512)).readUInt32BE(0)
  const snapB = Buffer.from(await dev({ volume: 'b', readOnly: true }).read(0, 512)).readUInt32BE(0)
  const liveA = Buffer.from(await A.read(0, 512)).readUInt32BE(0)
  t.log(`snapshot a=${snapA} b=${snapB}, live a=${liveA}`)
  t.true(snapA > 0 && snapB > 0, 'writes happened before the snapshot')
  t.true(snapB <= snapA && snapA - snapB <= 1, 'the set snapshot is a consistent cut')
  t.true(liveA > snapA, 'writes went on after it, to the new layers')
})
