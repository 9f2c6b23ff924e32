// In-process libp2p hosts for the GVS service tests: one cluster key, memory transport,
// every pair dialled; the services the test adds to `svcs` are stopped, then the hosts,
// then the temp dir is removed, when the test ends.
import type { ExecutionContext } from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { GvsService, type GvsComponents, type GvsInit } from '../../node/gvs/service.ts'
import { silentLogger } from '../../node/log.ts'
import type { Member } from '../../protocol/membership.ts'
import type { Reader } from '../../crdt/index.ts'
import { Replica } from '../../crdt/replica.ts'
import Fastify, { type FastifyInstance } from 'fastify'
import { toApiError } from '../../node/api/errors.ts'
import { OBJECT_SIZE } from '../../node/gvs/placement.ts'
import { winner } from '../../crdt/placement/index.ts'
import { ObjectStore } from '../../node/gvs/object-store.ts'
import { ReplicaService } from '../../node/gvs/replication.ts'
import { refuseUnknownQueries } from '../../node/api/server.ts'

const G = 2 ** 30

export async function memoryHosts (t: ExecutionContext, n: number, tag: string): Promise<{ dir: string, hosts: VgridHost[], svcs: GvsService[] }> {
  const dir = await mkdtemp(join(tmpdir(), `${tag}-`))
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const svcs: GvsService[] = []
  t.teardown(async () => {
    for (const s of svcs) await s.stop()
    for (const h of hosts) await h.stop()
    await rm(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < n; i++) {
    hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}${process.pid}-${i}`], mdns: false, transport: 'memory' }))
  }
  for (const a of hosts) for (const b of hosts) if (a !== b) await a.dial(b.getMultiaddrs()[0]!)
  return { dir, hosts, svcs }
}

/**
 * One converged cluster document and one members table standing in for state sync and
 * membership: every host alive with 100 GiB of disk, 50 free.
 */
export function sharedDocument (hosts: VgridHost[]): { replica: Replica, state: GvsComponents['state'], members: Map<string, Member> } {
  const replica = Replica.create({ clusterId: 'c1', nodeId: hosts[0]!.peerId.toString() })
  // methods that read their own object, as the agent's state service does: a caller that
  // hands one over unbound (read = state.read) fails here as it would in an agent
  const state = {
    replica,
    read (): Reader { return this.replica.read() },
    async write<T> (fn: Parameters<Replica['change']>[0], message?: string): Promise<T> { return this.replica.change(fn, message).result as T }
  } satisfies GvsComponents['state'] & { replica: Replica }
  const members = new Map<string, Member>(hosts.map(h => [h.peerId.toString(), {
    nodeId: h.peerId.toString(), state: 'alive', advert: { name: `a${hosts.indexOf(h)}`, capacity: { diskBytes: 100 * G }, free: { diskBytes: 50 * G } }
  } as unknown as Member]))
  return { replica, state, members }
}

/** an HTTP app with one service's routes, its errors in the API's shape (inject requests into it) */
export function apiOf (svc: GvsService): FastifyInstance {
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  refuseUnknownQueries(app)
  svc.routes(app)
  return app
}

/** a GvsService on each host, started over the shared document (`forgotten`: the members taken off the roll), stopped when the test ends (`svcs`) */
export async function startServices (grid: { dir: string, hosts: VgridHost[], svcs: GvsService[] }, doc: { state: GvsComponents['state'], members: Map<string, Member>, forgotten?: GvsComponents['forgotten'] }, init: GvsInit = {}): Promise<GvsService[]> {
  for (const [i, host] of grid.hosts.entries()) {
    const s = new GvsService({ peerId: host.peerId.toString(), log: silentLogger, config: { dataDir: join(grid.dir, `a${i}`) }, host, state: doc.state, membership: { members: doc.members }, forgotten: doc.forgotten }, { reconcileMs: 0, env: false, ...init })
    await s.start()
    grid.svcs.push(s)
  }
  return grid.svcs
}

/**
 * Three services sharing one document, a volume /app/disk of four objects, and the
 * two nodes (1 and 2) that both claimed one VM's lease at epoch 1: `w` the winner by
 * the lease rule, `l` the loser (crdt/placement/volume-epoch.ts gives each its own writer epoch).
 */
export async function contestedDisk (t: ExecutionContext, tag: string): Promise<{ dir: string, hosts: VgridHost[], svcs: GvsService[], state: GvsComponents['state'], members: Map<string, Member>, id: string, ids: string[], w: number, l: number }> {
  const { dir, hosts, svcs } = await memoryHosts(t, 3, tag)
  const { state, members } = sharedDocument(hosts)
  await startServices({ dir, hosts, svcs }, { state, members })
  const created = await apiOf(svcs[0]!).inject({ method: 'POST', url: '/v1/volumes', payload: { path: '/app/disk', size: 4 * OBJECT_SIZE } })
  if (created.statusCode !== 201) throw new Error(`volume create: ${created.body}`)
  const ids = hosts.map(h => h.peerId.toString())
  const w = ids.indexOf(winner([1, 2].map(i => ({ vm: 'vm', holder: ids[i]!, epoch: 1, cpu: 1, memoryBytes: 1, at: 1, by: ids[i]! })))!.holder)
  return { dir, hosts, svcs, state, members, id: created.json<{ id: string }>().id, ids, w, l: w === 1 ? 2 : 1 }
}

export interface ReplicaNode { id: string, host: VgridHost, store: ObjectStore, svc: ReplicaService }

let replicaGrids = 0
/**
 * `n` in-process nodes below the service: each an object store and a replica service on
 * a memory-transport host, every pair dialled; all stopped (a service a test stopped
 * itself too) and their temp dir removed when the test ends.
 */
export async function replicaNodes (t: ExecutionContext, n: number, opts: { objectSize?: number, timeoutMs?: number } = {}): Promise<ReplicaNode[]> {
  const dir = await mkdtemp(join(tmpdir(), 'gvs-nodes-'))
  const clusterKey = generateClusterKey()
  const nodes: ReplicaNode[] = []
  t.teardown(async () => {
    for (const x of nodes) { await x.svc.stop().catch(() => {}); try { await x.host.stop() } catch {}; await x.store.stop() }
    await rm(dir, { recursive: true, force: true })
  })
  const tag = `gvsn${process.pid}-${replicaGrids++}`
  for (let i = 0; i < n; i++) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/${tag}-${i}`], mdns: false, transport: 'memory' })
    const store = new ObjectStore({ log: silentLogger }, { dir: join(dir, `n${i}`), ...(opts.objectSize != null ? { objectSize: opts.objectSize } : {}) })
    await store.start()
    const svc = new ReplicaService({ host, store, log: silentLogger }, { timeoutMs: opts.timeoutMs ?? 60_000 })
    await svc.start()
    nodes.push({ id: host.peerId.toString(), host, store, svc })
  }
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.host.dial(b.host.getMultiaddrs()[0]!)
  return nodes
}
