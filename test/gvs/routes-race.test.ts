// The volume API's checks run inside the document write, on the volumes as the write
// finds them: a write waits for the one before it (its fsync), and what was decided
// on the route's own read may no longer hold. Here every write waits at a gate the
// test opens, so two requests read the same document and write one after the other.
import test, { type ExecutionContext } from 'ava'
import Fastify, { type FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { join } from 'node:path'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import type { Volume } from '../../crdt/index.ts'
import { GvsService } from '../../node/gvs/service.ts'
import { memoryHosts } from './hosts.ts'
import { toApiError } from '../../node/api/errors.ts'
import { silentLogger } from '../../node/log.ts'
import { MAX_LAYERS } from '../../node/gvs/volumes.ts'
import { MAX_HEADER, encode } from '../../node/gvs/replica-protocol.ts'

const G = 2 ** 30
const MiB = 2 ** 20

interface Api {
  replica: Replica
  svc: GvsService
  call: (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) => Promise<{ status: number, body: { id?: string, error?: { code: string, message: string } } }>
  /** from now on, writes wait until open() */
  hold: () => void
  open: () => void
  /** writes waiting at the gate */
  waiting: () => number
}

async function api (t: ExecutionContext, tag: string): Promise<Api> {
  const { dir, hosts, svcs } = await memoryHosts(t, 2, tag)
  const replica = Replica.create({ clusterId: 'c1', nodeId: hosts[0]!.peerId.toString() })
  let gate: Promise<void> | null = null
  let release = (): void => {}
  let waiting = 0
  const state = {
    read: () => replica.read(),
    write: async <T>(fn: Parameters<Replica['change']>[0], message?: string): Promise<T> => {
      if (gate != null) { waiting++; await gate; waiting-- }
      return replica.change(fn, message).result as T
    }
  }
  const members = new Map<string, Member>(hosts.map(h => [h.peerId.toString(), {
    nodeId: h.peerId.toString(), state: 'alive', advert: { capacity: { diskBytes: 100 * G }, free: { diskBytes: 50 * G } }
  } as unknown as Member]))
  for (let i = 0; i < 2; i++) {
    const s = new GvsService({ peerId: hosts[i]!.peerId.toString(), log: silentLogger, config: { dataDir: join(dir, `a${i}`) }, host: hosts[i]!, state, membership: { members }, registry: new Registry() }, { reconcileMs: 0, env: false })
    await s.start()
    svcs.push(s)
  }
  const app: FastifyInstance = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svcs[0]!.routes(app)
  t.teardown(async () => { await app.close() })
  return {
    replica,
    svc: svcs[0]!,
    call: async (method, url, payload) => { const r = await app.inject({ method, url, payload }); return { status: r.statusCode, body: r.json() } },
    hold: () => { gate = new Promise(resolve => { release = resolve }) },
    open: () => { gate = null; release() },
    waiting: () => waiting
  }
}

async function until (check: () => boolean, what: string): Promise<void> {
  const t0 = Date.now()
  while (!check()) {
    if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

test('requests that read the same document and write one after the other: nothing taken meanwhile is overwritten', async t => {
  const a = await api(t, 'gvsrace')
  const vol = (await a.call('POST', '/v1/volumes', { path: '/r/disk', size: '16M' })).body as { id: string }
  const volume = (): Volume => a.replica.read().get('volumes', vol.id)!.value

  // two snapshots at once: both kept, and the layer each froze stays under the volume
  a.hold()
  const snaps = [a.call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's1' }), a.call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's2' })]
  await until(() => a.waiting() === 2, 'both snapshot writes to wait')
  a.open()
  t.deepEqual((await Promise.all(snaps)).map(r => r.status), [201, 201])
  t.deepEqual(Object.keys(volume().snapshots).sort(), ['s1', 's2'])
  t.is(volume().layers?.length, 3, 'each snapshot froze its own layer: the volume reads through both')

  // removing one snapshot while another is taken: the new one stays
  a.hold()
  const rm = a.call('DELETE', `/v1/volumes/${vol.id}/snapshots/s1`)
  const add = a.call('POST', `/v1/volumes/${vol.id}/snapshots`, { name: 's3' })
  await until(() => a.waiting() === 2, 'both writes to wait')
  a.open()
  t.deepEqual([(await rm).status, (await add).status], [200, 201])
  t.deepEqual(Object.keys(volume().snapshots).sort(), ['s2', 's3'])

  // two resizes from one size: the smaller, written second, would shrink: refused
  a.hold()
  const grow = [a.call('PATCH', `/v1/volumes/${vol.id}`, { size: '64M' }), a.call('PATCH', `/v1/volumes/${vol.id}`, { size: '32M' })]
  await until(() => a.waiting() === 2, 'both resizes to wait')
  a.open()
  const [big, small] = await Promise.all(grow)
  t.is(big!.status, 200)
  t.is(small!.status, 400)
  t.regex(small!.body.error?.message ?? '', /shrinking/)
  t.is(volume().sizeBytes, 64 * MiB)

  // two creates of one path: one volume
  a.hold()
  const creates = [a.call('POST', '/v1/volumes', { path: '/r/twin', size: '1M' }), a.call('POST', '/v1/volumes', { path: '/r/twin', size: '1M' })]
  await until(() => a.waiting() === 2, 'both creates to wait')
  a.open()
  t.deepEqual((await Promise.all(creates)).map(r => r.status).sort(), [201, 409])
  t.is(a.replica.read().list('volumes').filter(v => v.path === '/r/twin').length, 1)

  // a destroy that waits while a VM takes the volume: refused, the volume stays
  a.hold()
  const destroy = a.call('DELETE', `/v1/volumes/${vol.id}?snapshots=true`)
  await until(() => a.waiting() === 1, 'the destroy to wait')
  a.replica.change(w => w.put('vms', { id: 'db', name: 'db', app: null, desired: 'running', spec: { driver: 'qemu', cpu: 1, memoryBytes: 128 * MiB, volumes: [vol.id], constraints: {}, kernel: '/k' } }))
  a.open()
  const d = await destroy
  t.is(d.status, 409, JSON.stringify(d.body))
  t.regex(d.body.error?.message ?? '', /in use by VM "db"/)
  t.truthy(a.replica.read().get('volumes', vol.id))
  // a resize under a running VM is made, and says that VM sees it after its next start
  const grown = await a.call('PATCH', `/v1/volumes/${vol.id}`, { size: '96M' })
  t.is(grown.status, 200, JSON.stringify(grown.body))
  t.deepEqual((grown.body as { seenAfterRestartBy?: string[] }).seenAfterRestartBy, ['db'])
  // to the size it has: unchanged, said so, and no VM told of a new size (bb53)
  const same = await a.call('PATCH', `/v1/volumes/${vol.id}`, { size: '96M' })
  t.is(same.status, 200, JSON.stringify(same.body))
  t.like(same.body, { sizeBytes: 96 * MiB, unchanged: true })
  t.is((same.body as { seenAfterRestartBy?: string[] }).seenAfterRestartBy, undefined)
})

test('destroying a volume keeps the layers a clone of its snapshot reads; snapshot names are the volume\'s own entries only', async t => {
  const a = await api(t, 'gvslayers')
  const src = (await a.call('POST', '/v1/volumes', { path: '/a', size: '16M', replicas: 1 })).body as { id: string }
  await a.svc.store.write(src.id, 0, 0, new Uint8Array([0x61]), { epoch: 1 })
  // names every plain object answers to are no snapshots
  for (const name of ['constructor', '__proto__', 'toString']) {
    t.is((await a.call('POST', '/v1/volumes', { path: `/bad-${name.replaceAll('_', 'u')}`, from: `/a@${name}` })).status, name === '__proto__' ? 400 : 404, name)
    t.is((await a.call('DELETE', `/v1/volumes/${src.id}/snapshots/${name}`)).status, 404, name)
  }
  t.is((await a.call('POST', `/v1/volumes/${src.id}/snapshots`, { name: 'constructor' })).status, 201, 'and may be a snapshot\'s name')
  t.is((await a.call('POST', `/v1/volumes/${src.id}/snapshots`, { name: 's1' })).status, 201)
  t.is((await a.call('POST', '/v1/volumes', { path: '/c', from: '/a@s1' })).status, 201)
  t.is((await a.call('DELETE', `/v1/volumes/${src.id}?snapshots=true`)).status, 200)
  t.true((await a.svc.store.volumes()).includes(src.id), 'the clone reads on through the source\'s first layer')
  t.deepEqual([...await a.svc.store.read(src.id, 0, 0, 1)], [0x61])
})

test('a volume reads through at most MAX_LAYERS layers: a snapshot or clone past them is refused, and the remote writes of the last one allowed fit their header', async t => {
  const a = await api(t, 'gvsmaxl')
  const v = (await a.call('POST', '/v1/volumes', { path: '/deep', size: '16M' })).body as { id: string }
  // layers as snapshots leave them, written straight into the document (a hundred API calls would only be slower)
  const layers = [v.id, ...Array.from({ length: MAX_LAYERS - 1 }, (_, i) => `${v.id}@${i + 1}`)].reverse()
  a.replica.change(w => w.update('volumes', v.id, { layers }))
  const refused = await a.call('POST', `/v1/volumes/${v.id}/snapshots`, { name: 'one-more' })
  t.is(refused.status, 409)
  t.regex(refused.body.error?.message ?? '', /reads through 128 layers, the most/)
  // the deepest write a replica is asked for still fits a request header
  const header = encode({ op: 'write', volume: layers[0]!, index: 2 ** 32 - 1, offset: 4 * MiB - 4096, epoch: Number.MAX_SAFE_INTEGER, seq: Number.MAX_SAFE_INTEGER, fua: true, under: layers.slice(1) })
  t.true(header.length <= MAX_HEADER, `${header.length} bytes`)
  // a list's prefix given twice: a 400 naming it, not a 500
  const twice = await a.call('GET', '/v1/volumes?prefix=/a&prefix=/b')
  t.is(twice.status, 400)
  t.regex(twice.body.error?.message ?? '', /prefix/)
})
