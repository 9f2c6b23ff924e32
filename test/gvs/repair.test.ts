// Repair and scrub on in-process hosts: a holder is killed during writes, repair
// brings every object back to R copies on its new holders (also when another node
// dies while repair runs), and scrub finds a corrupted copy and rewrites it.
import test, { type ExecutionContext } from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { ReplicatedVolume } from '../../node/gvs/replicated-volume.ts'
import { Repairer } from '../../node/gvs/repair.ts'
import { Placement, objectKey } from '../../node/gvs/placement.ts'
import { silentLogger } from '../../node/log.ts'

const OBJ = 256 * 1024 // small objects: many of them in little data
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

interface Node { id: string, host: VgridHost, store: ObjectStore, svc: ReplicaService, alive: boolean }

let seq = 0
async function grid (t: ExecutionContext, n: number): Promise<Node[]> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-repair-'))
  const clusterKey = generateClusterKey()
  const nodes: Node[] = []
  t.teardown(async () => {
    for (const x of nodes) { if (x.alive) { await x.svc.stop(); await x.host.stop() } await x.store.stop() }
    await rm(dir, { recursive: true, force: true })
  })
  const tag = `gvsr${process.pid}-${seq++}`
  for (let i = 0; i < n; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-${i}`], mdns: false, transport: 'memory' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`), objectSize: OBJ })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: 60_000 })
    await svc.start()
    nodes.push({ id: host.peerId.toString(), host, store, svc, alive: true })
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.host.dial(b.host.getMultiaddrs()[0]!)
  return nodes
}

async function kill (n: Node): Promise<void> {
  n.alive = false
  await n.svc.stop()
  await n.host.stop()
}

/** placement over the nodes alive now, as membership would give it */
const liveHolders = (nodes: Node[]) => (key: string, r: number): string[] =>
  new Placement(nodes.filter(n => n.alive).map(n => ({ id: n.id, weight: 1 }))).holders(key, r)

async function holdersOf (nodes: Node[], volume: string, index: number): Promise<string[]> {
  const out: string[] = []
  for (const n of nodes) if (n.alive && (await n.store.list(volume)).includes(index)) out.push(n.id)
  return out.sort()
}

test('a holder killed during writes: acknowledged writes read back, repair restores R copies, also when a node dies during repair', async t => {
  const nodes = await grid(t, 5)
  const R = 3
  const objects = 24
  const size = objects * OBJ
  const holders = liveHolders(nodes)
  const writer = nodes[0]!
  const live = (): string[] => nodes.filter(n => n.alive).map(n => n.id)
  const vol = (): ReplicatedVolume => new ReplicatedVolume({ transport: writer.svc, holders, nodes: live }, { volume: 'db', size, replicas: R, minReplicas: 2, epoch: 1, objectSize: OBJ })
  const expect = Buffer.alloc(size)
  // a write workload; a holder dies in the middle; only acknowledged writes are expected
  const victim = nodes[2]!
  let acked = 0
  let failed = 0
  for (let i = 0; i < objects * 2; i++) {
    if (i === objects) await kill(victim)
    // after the kill only the first half is rewritten: the rest is left to repair
    const obj = i < objects ? i : i % (objects / 2)
    const off = obj * OBJ + (i % 7) * 4096
    const chunk = randomBytes(8192)
    try {
      await vol().write(off, chunk, true)
      chunk.copy(expect, off)
      acked++
    } catch { failed++ }
  }
  t.log(`writes acknowledged ${acked}, failed ${failed}`)
  t.true(acked >= objects, 'placement without the dead node took the later writes')

  // repair; a second node dies while it runs
  const second = nodes[3]!
  const rep = new Repairer({ transport: writer.svc, holders, nodes: () => nodes.filter(n => n.alive).map(n => n.id) }, { volume: 'db', replicas: R, objects, bytesPerSecond: 4 * OBJ * 10 })
  let killed = false
  rep.on('progress', p => { if (!killed && p.done >= 3) { killed = true; void kill(second) } })
  const first = await rep.run()
  t.log(`first repair: ${first.done}/${first.total} copies, ${first.failed} failed, ${first.bytes} bytes`)
  t.true(killed, 'a node died while repair ran')
  // the next run (as the background loop does) finishes the job over the survivors
  const again = await new Repairer({ transport: writer.svc, holders, nodes: () => nodes.filter(n => n.alive).map(n => n.id) }, { volume: 'db', replicas: R, objects }).run()
  t.is(again.failed, 0, again.errors.join('; '))
  t.is(again.health, 'healthy')
  for (let i = 0; i < objects; i++) {
    t.deepEqual(await holdersOf(nodes, 'db', i), holders(objectKey('db', i), R).sort(), `object ${i} on its ${R} holders`)
  }
  t.true(same(await vol().read(0, size), expect), 'every acknowledged write reads back after two node losses')
  const final = await new Repairer({ transport: writer.svc, holders, nodes: () => nodes.filter(n => n.alive).map(n => n.id) }, { volume: 'db', replicas: R, objects }).run()
  t.is(final.total, 0, 'nothing left to copy')
})

test('scrub detects a corrupted copy and rewrites it from another replica', async t => {
  const nodes = await grid(t, 3)
  const holders = liveHolders(nodes)
  const vol = new ReplicatedVolume({ transport: nodes[0]!.svc, holders }, { volume: 'web', size: 8 * OBJ, replicas: 2, epoch: 1, objectSize: OBJ })
  const data = randomBytes(8 * OBJ)
  await vol.write(0, data, true)
  const victim = nodes.find(n => n.id === holders(objectKey('web', 5), 2)[0])!
  const fh = await open(join(victim.store.dir, 'objects', 'web', '00000005'), 'r+')
  await fh.write(Buffer.from('garbage'), 0, 7, 100_000)
  await fh.close()
  const rep = new Repairer({ transport: nodes[0]!.svc, holders, nodes: () => nodes.map(n => n.id) }, { volume: 'web', replicas: 2 })
  const found = await rep.scrub()
  t.deepEqual(found.map(f => [f.index, f.node, f.blocks, f.healed]), [[5, victim.id, [24], true]])
  t.deepEqual(await victim.store.verify('web', 5), [])
  t.true(same(await victim.store.read('web', 5, 0, OBJ), data.subarray(5 * OBJ, 6 * OBJ)))
  t.deepEqual(await rep.scrub(), [], 'a second scrub finds nothing')
})
