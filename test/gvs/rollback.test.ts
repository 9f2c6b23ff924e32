// `vgrid vol rollback VOL@SNAP` (bb50: restoring a volume meant a clone, vm rm and vm
// create): the volume reads its snapshot's data again, at its size, in place; its
// snapshots, the later ones too, and a clone of one keep theirs; refused while written.
import test from 'ava'
import Fastify from 'fastify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import type { Member } from '../../protocol/membership.ts'
import { Replica } from '../../crdt/replica.ts'
import { GvsService, vol } from '../../node/gvs/index.ts'
import type { VolumeView } from '../../node/gvs/routes.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { toApiError } from '../../node/api/errors.ts'
import { silentLogger } from '../../node/log.ts'

const MiB = 1024 * 1024
const WRITER_IDLE_MS = 300

test('a volume rolled back to a snapshot reads its data at its size; every snapshot and clone keeps its own; refused while written', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-rollback-'))
  const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: generateClusterKey(), listen: [`/memory/gvsrollback${process.pid}`], mdns: false, transport: 'memory' })
  const replica = Replica.create({ clusterId: 'c1', nodeId: host.peerId.toString() })
  const state = { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T }
  const members = new Map([[host.peerId.toString(), { nodeId: host.peerId.toString(), state: 'alive', advert: { capacity: { diskBytes: 2 ** 40 }, free: { diskBytes: 2 ** 39 } } } as unknown as Member]])
  const svc = new GvsService({ peerId: host.peerId.toString(), log: silentLogger, config: { dataDir: dir }, host, state, membership: { members } }, { writerIdleMs: WRITER_IDLE_MS, env: false })
  await svc.start()
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  svc.routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  const api = `127.0.0.1:${typeof addr === 'object' && addr != null ? addr.port : 0}`
  t.teardown(async () => { await app.close(); await svc.stop(); await host.stop(); await rm(dir, { recursive: true, force: true }) })
  const cli = async (...args: string[]): Promise<string> => {
    let text = ''
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((s: string) => { text += String(s); return true }) as typeof process.stdout.write
    try { await vol([...args, '--api', api]) } finally { process.stdout.write = write }
    return text
  }
  const sock = join(dir, 'nbd.sock')
  /** writes through a session of its own, which then ends and goes quiet */
  const put = async (name: string, offset: number, data: Buffer): Promise<void> => {
    const c = await NbdClient.open(sock, name)
    await c.write(offset, data, true)
    await c.close()
    await new Promise(resolve => setTimeout(resolve, WRITER_IDLE_MS + 200))
  }
  const get = async (name: string, offset: number, length: number): Promise<Buffer> => {
    const c = await NbdClient.open(sock, name)
    try { return await c.read(offset, length) } finally { await c.close() }
  }
  const A = randomBytes(4096); const A2 = randomBytes(4096); const B = randomBytes(4096); const C = randomBytes(4096); const D = randomBytes(4096)

  await cli('create', '/r/v', '--size', '8M', '--replicas', '1')
  await put('r/v', 0, A)
  await put('r/v', 5 * MiB, A2)
  await cli('snapshot', '/r/v', 's1')
  await cli('clone', '/r/v@s1', '/r/c')
  await put('r/v', 0, B)
  await cli('snapshot', '/r/v', 's2')
  await put('r/v', 0, C)
  await cli('resize', '/r/v', '16M')
  await put('r/v', 12 * MiB, D)

  // refused while a session writes it (its writes would land where nothing reads)
  const writer = await NbdClient.open(sock, 'r/v')
  await writer.write(4096, Buffer.alloc(512, 1))
  await t.throwsAsync(cli('rollback', '/r/v@s1'), { message: /volume "\/r\/v" is being written over NBD \(1 session on .+\); disconnect its writers first/ })
  await writer.close()
  await new Promise(resolve => setTimeout(resolve, WRITER_IDLE_MS + 200))

  const back = await cli('rollback', '/r/v@s1')
  t.regex(back, /^\/r\/v: back to snapshot s1 \(taken \S+\), 8M; what it wrote since is dropped; its snapshots stay \(s1, s2\)$/m)
  t.true((await get('r/v', 0, 4096)).equals(A), 'the snapshot\'s data at 0')
  t.true((await get('r/v', 5 * MiB, 4096)).equals(A2))
  t.true((await get('r/v', 4096, 512)).equals(Buffer.alloc(512)), 'the write made after it is gone')
  const info = JSON.parse(await cli('info', '/r/v', '--json')) as VolumeView
  t.is(info.sizeBytes, 8 * MiB, 'the snapshot\'s size: grown since, it is back at 8M')
  t.deepEqual(info.snapshots.map(s => s.name), ['s1', 's2'])
  t.true((await get('r/v@s2', 0, 4096)).equals(B), 'a later snapshot keeps its data')
  t.true((await get('r/v@s1', 0, 4096)).equals(A))
  t.true((await get('r/c', 0, 4096)).equals(A), 'a clone of the snapshot keeps its data')

  // written on from there, and rolled forward to the later snapshot: each reads its own
  await put('r/v', 0, C)
  t.true((await get('r/v@s1', 0, 4096)).equals(A), 'a write after the rollback does not reach the snapshot')
  const json = JSON.parse(await cli('rollback', '/r/v@s2', '--json')) as VolumeView & { rolledBack: { snapshot: string, droppedLayers: number } }
  t.like(json, { path: '/r/v', sizeBytes: 8 * MiB, rolledBack: { snapshot: 's2' } })
  t.true(json.rolledBack.droppedLayers >= 1, 'the layer written since the rollback is read by nothing now')
  t.true((await get('r/v', 0, 4096)).equals(B))
  t.true((await get('r/v', 5 * MiB, 4096)).equals(A2))

  // what is wrong is named
  await t.throwsAsync(cli('rollback', '/r/v@nope'), { message: /volume "\/r\/v" has no snapshot "nope" \(it has s1, s2\)/ })
  await t.throwsAsync(cli('rollback', '/r/v'), { message: /vgrid vol rollback takes VOL@SNAPSHOT: "\/r\/v" names no snapshot/ })
  await t.throwsAsync(cli('rollback', '/r/nope@s1'), { message: /no volume with id or path "\/r\/nope"/ })
  await t.throwsAsync(cli('rollback', '/r/c@s1'), { message: /volume "\/r\/c" has no snapshot "s1" \(it has none\)/ })
})
