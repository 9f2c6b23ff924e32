// The GVS service on three in-process agents sharing one cluster document: the
// /v1/volumes API (create, list, info, resize, rename, destroy, repair, bad input) and
// the NBD export of a created volume, written on one agent and read on another.
import test from 'ava'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { memoryHosts } from './hosts.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { toApiError } from '../../node/api/errors.ts'
import { silentLogger } from '../../node/log.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const G = 2 ** 30
const WRITER_IDLE_MS = 3000

test('volumes API and NBD exports across agents', async t => {
  const { dir, hosts, svcs } = await memoryHosts(t, 3, 'gvssvc')
  // one converged document and one members table stand in for state sync and membership
  const replica = Replica.create({ clusterId: 'c1', nodeId: hosts[0]!.peerId.toString() })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map<string, Member>(hosts.map(h => [h.peerId.toString(), {
    nodeId: h.peerId.toString(), state: 'alive', advert: { capacity: { diskBytes: 100 * G }, free: { diskBytes: 50 * G } }
  } as unknown as Member]))
  const registries = [new Registry(), new Registry(), new Registry()]
  for (let i = 0; i < 3; i++) {
    const s = new GvsService({ peerId: hosts[i]!.peerId.toString(), log: silentLogger, config: { dataDir: join(dir, `a${i}`) }, host: hosts[i]!, state, membership: { members }, registry: registries[i] }, { reconcileMs: 0, writerIdleMs: WRITER_IDLE_MS, env: false, freeAfterMs: 0 })
    await s.start()
    svcs.push(s)
  }
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svcs[0]!.routes(app)
  interface Body { volumes?: Array<{ path: string }>, error?: { code: string, message: string }, [k: string]: unknown }
  const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object): Promise<{ status: number, body: Body }> => {
    const r = await app.inject({ method, url, payload })
    return { status: r.statusCode, body: r.json() }
  }

  const created = await call('POST', '/v1/volumes', { path: '/shop/db/data', size: '16M' })
  t.is(created.status, 201, JSON.stringify(created.body))
  t.like(created.body, { path: '/shop/db/data', sizeBytes: 16 * MiB, replicas: 2, minReplicas: 2, thin: true, health: { state: 'healthy', reasons: [] } })
  await call('POST', '/v1/volumes', { path: '/shop/web/root', size: 1048576, replicas: 3 })
  t.deepEqual((await call('GET', '/v1/volumes?prefix=/shop/db')).body.volumes?.map(v => v.path), ['/shop/db/data'])
  t.is((await call('GET', '/v1/volumes')).body.volumes?.length, 2)

  // bad input: clear 4xx
  const bad = async (payload: object): Promise<[number, string]> => { const r = await call('POST', '/v1/volumes', payload); return [r.status, r.body.error?.message ?? ''] }
  t.like(await bad({ path: 'nope', size: '1G' }), [400])
  t.regex((await bad({ path: '/x', size: 0 }))[1], /positive/)
  t.regex((await bad({ path: '/x', size: '1G', replicas: 4 }))[1], /more than the 3 live node/)
  t.regex((await bad({ path: '/x', size: '1000G' }))[1], /more than the pool's/)
  t.is((await bad({ path: '/shop/db/data', size: '1G' }))[0], 409)

  // NBD: written through agent 0, read back through agent 2
  const vol = created.body as unknown as { id: string, nbd: string }
  const src = randomBytes(16 * MiB)
  await writeFile(join(dir, 'src.raw'), src)
  const have = await run('sh', ['-c', 'command -v nbdcopy']).then(() => true, () => false)
  if (have) {
    await run('nbdcopy', [join(dir, 'src.raw'), svcs[0]!.uriOf(replica.read().get('volumes', vol.id)!.value)])
    // a session writing through agent 0: agent 1's API refuses to destroy it (it asks every node)
    const writer = await NbdClient.open(join(dir, 'a0', 'nbd.sock'), 'shop/db/data')
    await writer.write(0, Buffer.from(src.subarray(0, 4096)))
    const app1 = Fastify()
    app1.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
    svcs[1]!.routes(app1)
    const busy = await app1.inject({ method: 'DELETE', url: `/v1/volumes/${vol.id}` })
    t.is(busy.statusCode, 409, busy.body)
    t.is(busy.json<Body>().error?.code, 'in_use', 'in the API\'s snake_case')
    t.regex(busy.json<Body>().error?.message ?? '', /being written over NBD \(1 session on (node )?\S+\)/)
    // nor renamed under it (its client opened it by its path), and the users say who writes
    const mv = await app1.inject({ method: 'PATCH', url: `/v1/volumes/${vol.id}`, payload: { path: '/shop/db/moved' } })
    t.is(mv.statusCode, 409, mv.body)
    t.like((await call('GET', `/v1/volumes/${vol.id}/users`)).body, { path: '/shop/db/data', vms: [], writers: [{ node: hosts[0]!.peerId.toString(), writers: 1 }] })
    // its session ends: no longer a writer (the finished nbdcopy never counted after it ended)
    await writer.close()
    await run('nbdcopy', [svcs[2]!.uriOf(replica.read().get('volumes', vol.id)!.value), join(dir, 'back.raw')])
    t.true(Buffer.from(await readFile(join(dir, 'back.raw'))).equals(src))
    // every node names the same repair coordinator and shows the same state
    const h1 = (await app1.inject({ method: 'GET', url: `/v1/volumes/${vol.id}` })).json<{ health: { state: string, coordinator: string } }>().health
    t.like((await call('GET', `/v1/volumes/${vol.id}`)).body, { health: { state: 'healthy', coordinator: h1.coordinator } })
    t.is(h1.state, 'healthy')
    // snapshot, then overwrite: the snapshot keeps the old data, a clone of it starts there
    const snap = await call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's1' })
    t.is(snap.status, 201, JSON.stringify(snap.body))
    const after = randomBytes(16 * MiB)
    await writeFile(join(dir, 'after.raw'), after)
    await run('nbdcopy', [join(dir, 'after.raw'), `nbd+unix:///shop/db/data?socket=${join(dir, 'a0', 'nbd.sock')}`])
    await run('nbdcopy', [`nbd+unix:///shop/db/data@s1?socket=${join(dir, 'a1', 'nbd.sock')}`, join(dir, 'snap.raw')])
    t.true(Buffer.from(await readFile(join(dir, 'snap.raw'))).equals(src), 'the snapshot does not see later writes')
    const clone = await call('POST', '/v1/volumes', { path: '/shop/db/clone', from: '/shop/db/data@s1' })
    t.is(clone.status, 201, JSON.stringify(clone.body))
    await run('nbdcopy', [`nbd+unix:///shop/db/clone?socket=${join(dir, 'a2', 'nbd.sock')}`, join(dir, 'clone.raw')])
    t.true(Buffer.from(await readFile(join(dir, 'clone.raw'))).equals(src), 'a clone reads its snapshot')
    await run('nbdcopy', [`nbd+unix:///shop/db/data?socket=${join(dir, 'a2', 'nbd.sock')}`, join(dir, 'live.raw')])
    t.true(Buffer.from(await readFile(join(dir, 'live.raw'))).equals(after), 'the volume reads its new data')
    // an entry that is no path or id: 400 naming it (it was looked up as "[object Object]": 404)
    for (const bad of [{ a: 1 }, null, 7, '']) {
      const r = await call('POST', '/v1/snapshots', { name: 'sx', volumes: ['/shop/db/data', bad] })
      t.is(r.status, 400, JSON.stringify(r.body))
      t.regex(JSON.stringify(r.body), /volumes\[1\] is .*: each must be a volume path or id/)
    }
    const twice = await call('POST', '/v1/snapshots', { name: 's2', volumes: ['/shop/db/data', vol.id] })
    t.is(twice.status, 400)
    t.regex(JSON.stringify(twice.body), /volume \/shop\/db\/data is listed twice \(by path or id\)/)
    const set = await call('POST', '/v1/snapshots', { name: 's2', volumes: ['/shop/db/data', '/shop/web/root'] })
    t.is(set.status, 201, JSON.stringify(set.body))
    t.is((await call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's1' })).status, 409)
    t.is((await call('DELETE', `/v1/volumes/${vol.id}/snapshots/s2`)).status, 200)
    t.is((await call('DELETE', '/v1/volumes/%2Fshop%2Fdb%2Fclone')).status, 200)
  } else t.log('NBD part skipped: nbdcopy (libnbd-bin) not installed')

  // resize grows only; rename; repair; destroy
  t.is((await call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 'pre' })).status, 201)
  t.is((await call('PATCH', `/v1/volumes/${vol.id}`, { size: '32M' })).body.sizeBytes, 32 * MiB)
  // a snapshot keeps the size it froze: the volume grew, its export and its clones did not
  const pre = (await call('GET', `/v1/volumes/${vol.id}`)).body as unknown as { snapshots: Array<{ name: string, sizeBytes: number }> }
  t.is(pre.snapshots.find(x => x.name === 'pre')?.sizeBytes, 16 * MiB)
  const preDev = await NbdClient.open(join(dir, 'a1', 'nbd.sock'), 'shop/db/data@pre')
  t.is(preDev.size, 16 * MiB)
  await preDev.close()
  t.is((await call('POST', '/v1/volumes', { path: '/shop/db/pre', from: '/shop/db/data@pre' })).body.sizeBytes, 16 * MiB)
  t.is((await call('DELETE', `/v1/volumes/${encodeURIComponent('/shop/db/pre')}`)).status, 200)
  t.is((await call('DELETE', `/v1/volumes/${vol.id}/snapshots/pre`)).status, 200)
  const shrink = await call('PATCH', `/v1/volumes/${vol.id}`, { size: '8M' })
  t.is(shrink.status, 400)
  t.regex(shrink.body.error?.message ?? '', /shrinking .* is refused/)
  const both = await call('PATCH', `/v1/volumes/${vol.id}`, { size: '64M', path: '/shop/db/main' })
  t.is(both.status, 400)
  t.regex(both.body.error?.message ?? '', /not both/)
  // a field a request does not take is named, never dropped (the caller would take it for done)
  for (const [method, url, b, field] of [
    ['PATCH', `/v1/volumes/${vol.id}`, { size: '64M', replicas: 5 }, 'replicas'],
    ['POST', '/v1/volumes', { path: '/shop/typo', size: '8M', replica: 3 }, 'replica'],
    ['POST', '/v1/volumes', { path: '/shop/c1', from: '/shop/db/data@nosuch', size: '5G' }, 'size'],
    ['POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's9', bogus: 1 }, 'bogus'],
    ['POST', `/v1/volumes/${vol.id}/repair`, { wait: true, scurb: true }, 'scurb']
  ] as const) {
    const r = await call(method, url, b)
    t.is(r.status, 400, `${method} ${url} ${JSON.stringify(b)}`)
    t.regex(r.body.error?.message ?? '', new RegExp(`unknown field "${field}"`))
  }
  t.is((await call('GET', `/v1/volumes/${vol.id}`)).body.sizeBytes, 32 * MiB, 'nothing of a refused change is made')
  t.is((await call('PATCH', `/v1/volumes/${encodeURIComponent('/shop/db/data')}`, { path: '/shop/db/main' })).body.path, '/shop/db/main')
  const rep = await call('POST', `/v1/volumes/${vol.id}/repair`)
  t.like(rep.body, { total: 0, failed: 0, health: 'healthy' })
  // the background pass sees the volume (and has nothing to repair)...
  for (const s of svcs) await s.reconcile()
  const holding = (await Promise.all(svcs.map(async s => (await s.store.volumes()).includes(vol.id)))).filter(Boolean).length
  if (have) t.true(holding >= 2, 'R=2 nodes hold the written volume')
  // no waiting for its writers to go quiet: their NBD sessions ended, which released them
  // its snapshots are its backups: it goes with them only when asked
  if (!have) t.is((await call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's1' })).status, 201)
  const kept = await call('DELETE', `/v1/volumes/${vol.id}`)
  t.is(kept.status, 409, JSON.stringify(kept.body))
  t.regex(JSON.stringify(kept.body), /has 1 snapshot \(s1\), which would go with it: remove it first \(vgrid vol snapshot rm\), or remove the volume with it \(vgrid vol rm \/shop\/db\/main --snapshots/)
  t.is((await call('DELETE', `/v1/volumes/${vol.id}?snapshots=maybe`)).status, 400)
  const gone = await call('DELETE', `/v1/volumes/${vol.id}?snapshots=true`)
  t.is(gone.status, 200)
  t.like(gone.body, { snapshots: ['s1'] })
  t.is((await call('GET', `/v1/volumes/${vol.id}`)).status, 404)
  // ...and once it is destroyed, every node frees its objects
  for (const s of svcs) await s.reconcile()
  for (const s of svcs) t.false((await s.store.volumes()).includes(vol.id))
  if (have) t.regex(await registries[0]!.metrics(), /vgrid_gvs_nbd_requests_total\{kind="write"\} [1-9]/)
})
