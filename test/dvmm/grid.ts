// Many agents in one process on the memory transport, each with a DVMM service and a
// fake driver (one FakeNode per agent, standing for its server): for the placement
// property tests and the benchmark. Everything started is stopped by the returned
// `stop`, which tests call from t.teardown.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { Agent } from '../../node/agent.ts'
import { resolveConfig } from '../../node/config.ts'
import { createLogger, silentLogger, type Level } from '../../node/log.ts'
import { writeClusterKey } from '../../node/cluster-key-store.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { systemClock } from '../../node/service.ts'
import { FakeDriver, FakeNode } from '../../node/dvmm/drivers/fake.ts'
import type { DriverVmSpec } from '../../node/dvmm/drivers/types.ts'
import { DvmmService, type DvmmComponents, type DvmmInit } from '../../node/dvmm/index.ts'
import type { Draft, Volume } from '../../crdt/index.ts'
import type { GvsService } from '../../node/gvs/index.ts'
import Fastify, { type FastifyInstance } from 'fastify'
import { toApiError, errorBody } from '../../node/api/errors.ts'
import { refuseUnknownQueries } from '../../node/api/server.ts'

export interface DvmmNode {
  agent: Agent
  dvmm: DvmmService
  fake: FakeNode
  driver: FakeDriver
}

export interface DvmmGrid {
  nodes: DvmmNode[]
  stop: () => Promise<void>
}

export interface GridOptions {
  n: number
  capacity: string
  dvmm?: DvmmInit
  membership?: Record<string, string>
  /** agents started at once (the memory transport copes with batches) */
  batch?: number
  /** where the agents' data dirs go (a folder made in it), default the system's temp dir: a small tmpfs for a full disk */
  dataRoot?: string
  /** a node's stop for a restart got its grace confirmed (DvmmComponents.onRestartGrace) */
  onRestartGrace?: (node: string, t: { watchdogMs: number, fenceMs: number }) => void
  /** the VM managers ask the agents' volume stores who writes a volume (DvmmComponents.volumes.writers) */
  volumeWriters?: boolean
  /** the VM managers use the agents' volume stores in full: fence, URIs and health too (the fake driver opens no disk) */
  volumeStore?: boolean
}

export async function startDvmmGrid (o: GridOptions): Promise<DvmmGrid> {
  const root = await mkdtemp(join(o.dataRoot ?? tmpdir(), 'vgrid-dvmm-'))
  const keyFile = join(root, 'cluster.key')
  await writeClusterKey(keyFile, generateClusterKey())
  const tag = `d${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const nodes: DvmmNode[] = []
  const stop = async (): Promise<void> => {
    for (const n of nodes) await n.dvmm.stop({ graceful: false }).catch(() => {})
    await Promise.all(nodes.map(async n => await n.agent.stop({ graceful: false }).catch(() => {})))
    for (const n of nodes) for (const [id, vm] of n.fake.vms) if (vm.state === 'running') await n.driver.kill(id).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
  try {
    const batch = o.batch ?? 10
    for (let i = 0; i < o.n; i += batch) {
      nodes.push(...await Promise.all(Array.from({ length: Math.min(batch, o.n - i) }, async (_, j) => {
        const k = i + j
        const cfg = await resolveConfig({
          name: `a${k}`, dataDir: join(root, `a${k}`), listen: `/memory/${tag}-${k}`, join: k === 0 ? [] : [`/memory/${tag}-0`],
          key: keyFile, mdns: false, capacity: o.capacity, transport: 'memory', ...o.membership
        })
        // this test brings its own VM manager, on the fake driver
        const agent = new Agent(cfg, { logger: silentLogger, without: ['dvmm'] })
        await agent.start({ api: false })
        const fake = new FakeNode()
        const driver = new FakeDriver({ clock: systemClock }, { node: fake })
        const dvmm = new DvmmService({
          peerId: agent.id,
          log: dvmmLog(cfg.name),
          clock: systemClock,
          registry: new Registry(),
          config: { name: cfg.name },
          state: agent.state,
          membership: agent.membership,
          drivers: { process: driver, qemu: driver },
          host: agent.host,
          onReserved: r => { agent.setReserved(r) },
          onRestartGrace: t => { o.onRestartGrace?.(cfg.name, t) },
          ...(o.volumeWriters === true || o.volumeStore === true ? { volumes: volumeAccessOf(agent, o.volumeStore === true) } : {})
        }, o.dvmm)
        return { agent, dvmm, fake, driver }
      })))
    }
    await until(() => nodes.every(n => [...n.agent.membership.members.values()].filter(m => m.state === 'alive').length === o.n), Math.max(120_000, o.n * 6000), 'the grid to form')
    for (const n of nodes) await n.dvmm.start()
    await until(() => nodes.every(n => n.agent.state.read().list('roll').length === o.n), Math.max(60_000, o.n * 6000), 'every node on the roll')
  } catch (err) {
    await stop()
    throw err
  }
  return { nodes, stop }
}

/** VGRID_GRID_LOG=warn (or info, debug): the DVMM services' log lines on stderr, to see why a run stalls */
function dvmmLog (name: string): ReturnType<typeof createLogger> {
  const level = process.env.VGRID_GRID_LOG as Level | undefined
  return level == null ? silentLogger : createLogger({ component: name, level, write: line => { process.stderr.write(line + '\n') } })
}

/** every start the grid's drivers are asked for, in order (the fake driver records none of its own) */
export function recordStarts (g: DvmmGrid): DriverVmSpec[] {
  const started: DriverVmSpec[] = []
  for (const n of g.nodes) {
    const start = n.driver.start.bind(n.driver)
    n.driver.start = async spec => { started.push(spec); return await start(spec) }
  }
  return started
}

export const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** waits for `check`; `what` names it in the timeout's error (a function: also what was there instead, read at the timeout) */
export async function until (check: () => boolean, limitMs: number, what: string | (() => string), everyMs = 20): Promise<void> {
  const t0 = Date.now()
  while (!check()) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${typeof what === 'string' ? what : what()}`)
    await sleep(everyMs)
  }
}

/** a fake VM: runs until stopped */
export const fakeVm = (id: string, cpu: number, memoryBytes: number, extra: Partial<Draft<'vms'>['spec']> = {}): Draft<'vms'> => ({
  id, name: id, app: null, desired: 'running',
  spec: { driver: 'process', cpu, memoryBytes, volumes: [], constraints: {}, command: ['fake:run'], ...extra }
})

/** an HTTP app with one node's VM routes, answering errors in the API's shape; closed when the test ends */
export function vmApi (t: { teardown: (f: () => Promise<void>) => void }, n: DvmmNode): FastifyInstance {
  const app = Fastify()
  app.setErrorHandler(async (err, _req, reply) => {
    const e = toApiError(err)
    return await reply.code(e.status).send(errorBody(e.code, e.message))
  })
  refuseUnknownQueries(app)
  n.dvmm.routes(app)
  t.teardown(async () => { await app.close() })
  return app
}

/** the agent's own volume store to the VM manager: who writes a volume only, or (`full`) all it gives the agent's */
function volumeAccessOf (agent: Agent, full: boolean): NonNullable<DvmmComponents['volumes']> {
  const gvs = (agent as unknown as { services: GvsService[] }).services.find(x => x.name === 'gvs')!
  const writers = async (id: string): Promise<Array<{ node: string, name?: string, writers: number, vmDisks?: number }>> => await gvs.writersOf(id)
  if (!full) return { uriOf: () => null, fence: async () => { throw new Error('no VM disks in this test') }, writers }
  const volume = (id: string): Volume | undefined => agent.state.read().get('volumes', id)?.value
  return {
    uriOf: (id, epoch) => { const v = volume(id); return v == null ? null : gvs.uriOf(v, epoch) },
    fence: async (id, epoch) => { await gvs.fence(id, epoch) },
    readDisk: async (id, epoch, offset, length) => await gvs.readDisk(volume(id)!, epoch, offset, length),
    writers,
    health: async ids => await gvs.health(ids.flatMap(id => volume(id) ?? []))
  }
}
