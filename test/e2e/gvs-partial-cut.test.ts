// A volume through a host cut from just one other (a partial partition: h1 and h2 cannot
// reach each other, both still reach h3, so gossip keeps each alive in the other's
// view). Reads through h1 must come from the copies it can reach, without waiting out
// a replica timeout per request, and the API stays quick on every host.
import { join } from 'node:path'
import { randomBytes, createHash } from 'node:crypto'
import { e2e, Grid } from '../harness/index.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { until } from '../harness/vm-runs.ts'

const MiB = 1024 * 1024
const SIZE = 8 * 4 * MiB
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

e2e('a host cut from one other: reads through it come from the copies it reaches, promptly; the API stays quick', async t => {
  const grid = await Grid.start(t, { hosts: 3 })
  await grid.waitAllAlive(30_000)
  const [h1, , h3] = grid.list as [typeof grid.list[0], typeof grid.list[0], typeof grid.list[0]]
  const vol = await h3.api<{ id: string }>('/v1/volumes', 'POST', { path: '/cut/data', size: SIZE, replicas: 2 })
  // 32 objects, for writes during the cut: a third of them avoid h2 (1 - (2/3)^32 that one does)
  const many = await h3.api<{ id: string }>('/v1/volumes', 'POST', { path: '/cut/many', size: 32 * 4 * MiB, replicas: 2 })
  // written through h3, so h1 holds no cache of it: its reads go to the replicas
  const data = randomBytes(SIZE)
  const w = await NbdClient.open(join(h3.dataDir, 'nbd.sock'), 'cut/data')
  for (let off = 0; off < SIZE; off += MiB) await w.write(off, data.subarray(off, off + MiB))
  await w.flush()
  await w.close()
  await waitVolume(h1, vol.id)
  await waitVolume(h1, many.id)

  const cutAt = Date.now()
  await grid.cut('h1', { from: ['h2'] })
  // each still sees the other alive (h3 vouches for each: protocol/indirect-probe.ts):
  // only the data path is cut. Membership's word that h2 is out of reach has h1's volume
  // store probe h2 at once, with no I/O waiting on it: a writer's claim then goes on
  // without h2 from the first write (the first writes failed after 10 s each while only
  // a stalled call found h2 out of reach)
  const found = await until('h1\'s volume store to find h2 out of reach with no I/O', 20_000, async () =>
    (await h1.status()).health.problems.find(p => p.cause === 'replica-out-of-reach'))
  t.log(`h1 found h2 out of reach ${Date.now() - cutAt} ms after the cut, with no I/O: ${found.message}`)
  t.false(Object.values(await grid.views(['h1', 'h2', 'h3'])).some(v => typeof v === 'string' || Object.values(v).some(st => st !== 'alive')), 'every host holds every other alive')
  const timed = async <T>(f: () => Promise<T>): Promise<{ ms: number, v: T }> => { const t0 = Date.now(); const v = await f(); return { ms: Date.now() - t0, v } }

  const r = await NbdClient.open(join(h1.dataDir, 'nbd.sock'), 'cut/data')
  t.teardown(async () => { await r.close().catch(() => {}) })
  const reads: number[] = []
  const got: Buffer[] = []
  for (let round = 0; round < 2; round++) {
    got.length = 0
    const t0 = Date.now()
    for (let off = 0; off < SIZE; off += MiB) got.push(await r.read(off, MiB))
    reads.push(Date.now() - t0)
    t.log(`read ${round + 1}: ${reads.at(-1)} ms`)
  }
  t.is(sha(Buffer.concat(got)), sha(data), 'what h1 reads is what h3 wrote')
  const api = []
  for (const h of grid.list) {
    for (const path of ['/v1/status', '/v1/volumes', `/v1/volumes/${vol.id}`]) api.push({ at: `${h.name} ${path}`, ms: (await timed(async () => await h.api(path).catch((err: Error) => err.message))).ms })
  }
  t.log(`reads of ${SIZE / MiB} MiB through h1: ${reads.map(ms => `${ms} ms`).join(', ')}; API: ${api.map(a => `${a.at} ${a.ms} ms`).join(', ')}`)
  // the first read waits until h1 finds h2 out of reach (its calls stall 2 s, then a ping of 4 s); the second not even that
  t.true(reads[0]! < 15_000, `the first read of ${SIZE / MiB} MiB through h1 took ${reads[0]} ms`)
  t.true(reads[1]! < 5000, `the second read of ${SIZE / MiB} MiB through h1 took ${reads[1]} ms`)
  for (const a of api) t.true(a.ms < 2000, `${a.at} took ${a.ms} ms`)
  // h1 says which node it cannot reach, though membership holds it alive
  const outOfReach = async (): Promise<string | undefined> => (await h1.status()).health.problems.find(p => p.cause === 'replica-out-of-reach')?.message
  t.regex(await outOfReach() ?? '', /cannot reach h2's volume store/)

  // writes through h1 during the cut: the claim does not wait for h2 (out of reach, R = 2:
  // the fence at the other holders refuses any writer there), so objects h2 does not hold
  // are written; those it holds fail (every holder must take a write)
  const block = Buffer.alloc(4096, 7)
  const m = await NbdClient.open(join(h1.dataDir, 'nbd.sock'), 'cut/many')
  t.teardown(async () => { await m.close().catch(() => {}) })
  // never written: zeros through h1, also where h2 holds the object (an acknowledged
  // write would be on both holders, and h1 reaches the other); it failed as unavailable
  for (let i = 0; i < 32; i++) t.deepEqual(await m.read(i * 4 * MiB, 4096), Buffer.alloc(4096), `object ${i}, never written`)
  const results = await Promise.allSettled(Array.from({ length: 32 }, async (_, i) => { await m.write(i * 4 * MiB, block) }))
  const wrote = results.flatMap((x, i) => x.status === 'fulfilled' ? [i] : [])
  t.log(`writes through h1 during the cut: objects ${wrote.join(', ')} written, ${results.length - wrote.length} failed`)
  t.true(wrote.length > 0, 'objects not held by h2 were written through h1 during the cut')
  // and flushed: the session's first flush passes h2 (it failed after 20 s, for any volume)
  const flushAt = Date.now()
  await m.flush()
  t.log(`a flush through h1 during the cut took ${Date.now() - flushAt} ms`)
  for (const i of wrote) t.deepEqual(await m.read(i * 4 * MiB, 4096), block)
  // h1 says in its advert that it does not reach h2 (placement's reach scorer): h3 sees it
  await until('h3 to see h1 say it does not reach h2', 20_000, async () => (await h3.nodes()).find(n => n.name === 'h1')?.unreaches?.includes('h2') === true ? true : undefined)
  // a repair asked of h1 during the cut is refused, naming h2 (bb19: it counted every copy on h2 failed and called a healthy volume degraded)
  const refused = await h1.api('/v1/volumes/' + vol.id + '/repair', 'POST', { wait: true }).then(() => null, (err: Error) => err.message)
  t.regex(refused ?? '', /409 .*does not reach h2 though it is alive \(a partial cut/, 'refused through h1')

  // healed: h1 finds h2 again by itself (a probe every few seconds), and writes through it succeed
  await grid.heal('h1')
  const healed = Date.now()
  while (await outOfReach() != null) {
    if (Date.now() - healed > 20_000) t.fail('h1 still finds h2 out of reach 20 s after the heal')
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  t.log(`h1 found h2 in reach again ${Date.now() - healed} ms after the heal`)
  const again = randomBytes(SIZE)
  for (let off = 0; off < SIZE; off += MiB) await r.write(off, again.subarray(off, off + MiB))
  await r.flush()
  const back = await NbdClient.open(join(grid.list[1]!.dataDir, 'nbd.sock'), 'cut/data')
  const all: Buffer[] = []
  for (let off = 0; off < SIZE; off += MiB) all.push(await back.read(off, MiB))
  await back.close()
  t.is(sha(Buffer.concat(all)), sha(again), 'what h1 wrote after the heal reads back through h2')
})

async function waitVolume (h: { api: <T>(p: string) => Promise<T> }, id: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try { await h.api(`/v1/volumes/${id}`); return } catch {}
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`volume ${id} never reached the host`)
}
