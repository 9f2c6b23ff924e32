// One node writes a volume at a time (node/gvs/writers.ts), through the real status
// protocol between two in-process agents: a client writing on one refuses a client on
// the other (EPERM), and two clients that start at about the same moment on the two
// nodes leave exactly one writing, never both. (Here the two asks rarely overlap; the
// overlapping claims, with random delays, are test/unit/gvs-writers.test.ts's property.)
import test from 'ava'
import { join } from 'node:path'
import { apiOf, memoryHosts, sharedDocument, startServices } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import type { Member } from '../../protocol/membership.ts'

const EPERM = 1

test('a client on one node refuses a client on another; two starting at once leave one writing', async t => {
  const g = await memoryHosts(t, 2, 'gvswriters')
  await startServices(g, sharedDocument(g.hosts), { scrubIntervalMs: 0, writerIdleMs: 300 })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  for (const path of ['/w/one', '/w/two']) t.is((await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path, size: '8M' } })).statusCode, 201)
  const sock = (i: number): string => join(g.dir, `a${i}`, 'nbd.sock')
  const block = Buffer.alloc(4096, 7)
  const open = async (i: number, name: string): Promise<NbdClient> => {
    const c = await NbdClient.open(sock(i), name)
    t.teardown(async () => { await c.close().catch(() => {}) })
    return c
  }

  const a = await open(0, 'w/one')
  await a.write(0, block)
  const b = await open(1, 'w/one')
  const refused = await t.throwsAsync(b.write(0, block))
  t.is((refused as Error & { errno?: number }).errno, EPERM, String(refused))
  // the first client goes quiet (writerIdleMs): the second may write now
  await new Promise(resolve => setTimeout(resolve, 400))
  await b.write(0, block)

  // the same moment on both nodes, ten times over (each round on a quiet volume)
  for (let round = 0; round < 10; round++) {
    await new Promise(resolve => setTimeout(resolve, 400))
    const cs = [await open(0, 'w/two'), await open(1, 'w/two')]
    const results = await Promise.allSettled(cs.map(async c => { await c.write(0, block) }))
    t.is(results.filter(r => r.status === 'fulfilled').length, 1, `round ${round}: ${JSON.stringify(results.map(r => r.status === 'rejected' ? String(r.reason) : 'wrote'))}`)
    for (const c of cs) await c.close()
  }
})

test('a plain client\'s claim fences the volume at an epoch of its own: a write still queued on a node found dead meanwhile is refused, not landed over the new writer\'s', async t => {
  const g = await memoryHosts(t, 3, 'gvsclaimepoch')
  const doc = sharedDocument(g.hosts)
  // the three agents share one event loop here: a stall of it under load would end every claim at once
  await startServices(g, doc, { scrubIntervalMs: 0, writerStallMs: 60_000 })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/w/moved', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<{ id: string }>().id
  const epoch = (): number => doc.state.read().get('volumes', id)!.value.epoch ?? 1
  const before = epoch()
  const a = g.svcs[0]!.device('w/moved')!
  await a.write(0, Buffer.alloc(65536, 1), false)
  const first = epoch()
  t.true(first > before, 'the first claim raised the volume\'s writer epoch')
  // node 0 stalls (or is cut off) with a claim it still takes for its own; the others find it dead
  const id0 = g.hosts[0]!.peerId.toString()
  doc.members.set(id0, { ...doc.members.get(id0)!, state: 'dead' } as Member)
  const b = g.svcs[1]!.device('w/moved')!
  await b.write(0, Buffer.alloc(65536, 2), false)
  await b.flush()
  t.true(epoch() > first, 'the new writer\'s claim raised it again')
  // node 0 comes back: the write it had queued goes out at its old epoch and is refused
  await t.throwsAsync(a.write(0, Buffer.alloc(65536, 3), false), { message: /writer epoch .* is older than/ })
  const read = Buffer.from(await g.svcs[2]!.device('w/moved')!.read(0, 65536))
  t.true(read.equals(Buffer.alloc(65536, 2)), `the new writer's data stays (read ${read[0]})`)
})

test('a session whose claim another writer took over writes no more, also once that writer has gone: what it still sends would land over that writer\'s data', async t => {
  const g = await memoryHosts(t, 3, 'gvstakenover')
  // quiet after 300 ms (the claim ends as after a stall); the loop shared by three agents is not taken for stalled
  await startServices(g, sharedDocument(g.hosts), { scrubIntervalMs: 0, writerIdleMs: 300, writerStallMs: 60_000 })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  t.is((await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/w/over', size: '8M' } })).statusCode, 201)
  const open = async (i: number): Promise<NbdClient> => {
    const c = await NbdClient.open(join(g.dir, `a${i}`, 'nbd.sock'), 'w/over')
    t.teardown(async () => { await c.close().catch(() => {}) })
    return c
  }
  const a = await open(0)
  await a.write(0, Buffer.alloc(4096, 0xa1))
  await a.flush()
  // a's node goes quiet (stalled, or its client paused); b's client on another node takes the volume, writes, flushes and goes
  await new Promise(resolve => setTimeout(resolve, 400))
  const b = await open(1)
  await b.write(0, Buffer.alloc(4096, 0xb1))
  await b.flush()
  await b.close()
  await new Promise(resolve => setTimeout(resolve, 400))
  // a's client sends what it had queued: refused, for good, naming why
  const refused = await t.throwsAsync(a.write(0, Buffer.alloc(4096, 0xa2)))
  t.is((refused as Error & { errno?: number }).errno, EPERM, String(refused))
  await t.throwsAsync(a.write(4096, Buffer.alloc(4096, 0xa2)))
  const c = await open(2)
  t.true(Buffer.from(await c.read(0, 4096)).equals(Buffer.alloc(4096, 0xb1)), 'the data b flushed stays')
  // a client that connects again writes (it opens the disk as it is now)
  const again = await open(0)
  await again.write(8192, Buffer.alloc(4096, 0xa3))
  await again.flush()
})

test('a new writer\'s claim waits for a node whose volume store is restarting (its fence is asked again), instead of failing the client\'s first write', async t => {
  const g = await memoryHosts(t, 3, 'gvsfencewait')
  const doc = sharedDocument(g.hosts)
  await startServices(g, doc, { scrubIntervalMs: 0, writerStallMs: 60_000 })
  const app = apiOf(g.svcs[0]!)
  t.teardown(async () => { await app.close() })
  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/w/fence', size: '8M' } })
  t.is(created.statusCode, 201, created.body)
  // node 2's agent restarts: membership still holds it alive, its replica protocol is not up yet
  const replicas = (g.svcs[2] as unknown as { replicas: { stop: () => Promise<void>, start: () => Promise<void> } }).replicas
  await replicas.stop()
  setTimeout(() => { void replicas.start() }, 1000)
  const started = Date.now()
  await g.svcs[0]!.device('w/fence')!.write(0, Buffer.alloc(65536, 5), false)
  t.true(Date.now() - started >= 800, 'it waited for the node to be told the writer\'s epoch')
  t.true(Buffer.from(await g.svcs[1]!.device('w/fence')!.read(0, 65536)).equals(Buffer.alloc(65536, 5)))
})
