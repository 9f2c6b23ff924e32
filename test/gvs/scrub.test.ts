// The scrub the service schedules: on two in-process agents (R=2) a copy is damaged
// on disk; the scheduled scrub of that node finds it, rewrites it from the other
// node's sound copy, and reports it in /v1/gvs/scrub, the volume's info and /metrics;
// the report survives a restart, which does not scrub again at once. Destroying a
// volume a VM still runs with (by its lease) is a 409.
import test from 'ava'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { memoryHosts } from './hosts.ts'
import { toApiError } from '../../node/api/errors.ts'
import { silentLogger } from '../../node/log.ts'
import { waitFor } from '../helpers/agent-process.ts'
import type { ScrubStatus } from '../../node/gvs/scrub-schedule.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'

const MiB = 1024 * 1024
const G = 2 ** 30

test('the scheduled scrub finds a damaged copy, rewrites it from the other replica and reports it', async t => {
  const { dir, hosts, svcs } = await memoryHosts(t, 2, 'gvsscrub')
  const replica = Replica.create({ clusterId: 'c1', nodeId: hosts[0]!.peerId.toString() })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map<string, Member>(hosts.map(h => [h.peerId.toString(), {
    nodeId: h.peerId.toString(), state: 'alive', advert: { capacity: { diskBytes: 100 * G }, free: { diskBytes: 50 * G } }
  } as unknown as Member]))
  const registry = new Registry()
  // node 0 scrubs every 3 s (at its phase in that period), node 1 never
  const make = (i: number, reg?: Registry): GvsService => new GvsService({
    peerId: hosts[i]!.peerId.toString(), log: silentLogger, config: { dataDir: join(dir, `a${i}`) }, host: hosts[i]!, state, membership: { members }, registry: reg
  }, { reconcileMs: 0, env: false, scrubIntervalMs: i === 0 ? 3000 : 0 })
  for (let i = 0; i < 2; i++) { const s = make(i, i === 0 ? registry : undefined); await s.start(); svcs.push(s) }
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svcs[0]!.routes(app)

  const created = await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/s/data', size: '16M' } })
  t.is(created.statusCode, 201, created.body)
  const id = created.json<VolumeView>().id
  // written through node 1's export: 4 objects, each on both nodes (R=2 of 2)
  const dev = svcs[1]!.device('s/data')!
  const data = randomBytes(16 * MiB)
  await dev.write(0, data, true)
  const status = async (): Promise<ScrubStatus> => (await app.inject({ method: 'GET', url: '/v1/gvs/scrub' })).json<ScrubStatus>()
  t.is((await status()).intervalMs, 3000)

  // damage object 2 on node 0's disk
  const fh = await open(join(dir, 'a0', 'gvs', 'objects', id, '00000002'), 'r+')
  await fh.write(Buffer.from('bit rot'), 0, 7, 123_456)
  await fh.close()
  t.deepEqual(await svcs[0]!.store.verify(id, 2), [Math.floor(123_456 / 4096)])
  const before = (await status()).last?.finishedAt ?? 0

  await waitFor(async () => ((await status()).last?.finishedAt ?? 0) > before && (await status()).last?.bad === 1, 15_000, 'a scheduled scrub that finds the damage')
  const s = await status()
  t.like(s.last, { objects: 4, bad: 1, repaired: 1, unrepaired: [] })
  t.like(s.last?.layers[id], { objects: 4, bad: 1, repaired: 1 })
  // every 3 s: the next one is planned, or already running (no plan while one runs)
  t.true((s.next != null && s.next > Date.now() - 1000) || s.running != null, 'the next one is scheduled')
  t.deepEqual(await svcs[0]!.store.verify(id, 2), [], 'the copy is sound again')
  t.true(Buffer.from(await svcs[0]!.store.read(id, 2, 0, 4 * MiB)).equals(data.subarray(8 * MiB, 12 * MiB)), 'with the data written')
  const view = (await app.inject({ method: 'GET', url: `/v1/volumes/${id}` })).json<VolumeView>()
  t.like(view.scrub, { objects: 4, bad: 1, repaired: 1 })
  const metrics = await registry.metrics()
  t.regex(metrics, /vgrid_gvs_scrub_bad_total 1\n/)
  t.regex(metrics, /vgrid_gvs_scrub_repaired_total 1\n/)
  t.regex(metrics, /vgrid_gvs_scrub_objects_total [4-9]\d*\n/)
  t.regex(metrics, /vgrid_gvs_scrub_last_timestamp_seconds \d{10}/)

  // a restart keeps the last report and does not scrub again at once
  await svcs[0]!.stop()
  const again = make(0)
  svcs[0] = again
  await again.start()
  const after = again.scrub.status()
  t.is(after.last?.finishedAt, (await status()).last?.finishedAt ?? after.last?.finishedAt)
  t.true(after.next != null && after.next - (after.last?.startedAt ?? 0) >= 1500, 'not before half an interval after the last')
  // asked now: a scrub of node 0 that finds nothing
  const now = await again.scrub.now()
  t.like(now, { objects: 4, bad: 0, repaired: 0 })
})

test('destroying a volume a VM still runs with (by its lease), or keeps as a stopped VM\'s disk, is a 409', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-inuse-'))
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: generateClusterKey(), listen: [`/memory/gvsinuse${process.pid}`], mdns: false, transport: 'memory' })
  const me = host.peerId.toString()
  const replica = Replica.create({ clusterId: 'c1', nodeId: me })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map([[me, { nodeId: me, state: 'alive', advert: { capacity: { diskBytes: 100 * G }, free: { diskBytes: 50 * G } } } as unknown as Member]])
  const svc = new GvsService({ peerId: me, log: silentLogger, config: { dataDir: dir }, host, state, membership: { members } }, { reconcileMs: 0, env: false })
  await svc.start()
  t.teardown(async () => { await svc.stop(); await host.stop(); await rm(dir, { recursive: true, force: true }) })
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svc.routes(app)
  const id = (await app.inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/vm/disk', size: '8M', replicas: 1 } })).json<VolumeView>().id
  // a VM told to stop, whose holder still reports it stopping
  await state.write(w => {
    w.put('vms', { id: 'web', name: 'web', app: null, desired: 'stopped', spec: { driver: 'qemu', cpu: 1, memoryBytes: G, volumes: [id], constraints: {} } })
    w.put('leases', { vm: 'web', holder: me, epoch: 1, cpu: 1, memoryBytes: G, status: 'stopping' })
  })
  const busy = await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}` })
  t.is(busy.statusCode, 409)
  t.regex(busy.json<{ error: { code: string, message: string } }>().error.message, /volume "\/vm\/disk" is in use by VM "web"; stop it and detach the volume \(vgrid vm update web --detach \/vm\/disk\), or remove the VM, first/)
  t.is(busy.json<{ error: { code: string } }>().error.code, 'in_use')
  await state.write(w => { w.update('leases', 'web', { status: 'stopped' }) })
  // stopped, it keeps its disk: it would start from it again
  const kept = await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}` })
  t.is(kept.statusCode, 409)
  t.regex(kept.json<{ error: { message: string } }>().error.message, /is a disk of VM "web" \(stopped\); detach it \(vgrid vm update web --detach \/vm\/disk\), or remove the VM, first/)
  await state.write(w => { w.remove('vms', 'web') })
  t.is((await app.inject({ method: 'DELETE', url: `/v1/volumes/${id}` })).statusCode, 200)
})
