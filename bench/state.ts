// Benchmark of the replicated cluster document (issue 3). Run:
//   node_modules/node/bin/node bench/state.ts [--agents 50] [--seconds 10]
// Every number is printed next to a baseline measured in the same run, and the ratio:
//   size        on disk vs the same objects as JSON; in memory vs the same objects as JS
//   fresh agent receiving 1,000 VMs + 1,000 volumes + 100 apps over libp2p (memory
//               transport, sync + validation + fsync) vs two replicas syncing in memory
//   one change reaching all N agents (p50/p99) vs a gossipsub message reaching all N
//   sustained acknowledged writes/s on one agent while N sync vs bare Automerge changes/s
// All N agents share this process and its event loop, so their membership heartbeats
// are slowed (2 s, adverts 120 s) unless --default-membership: with the defaults 50
// agents' heartbeats alone keep one core busy and the loop seconds behind.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Agent } from '../node/agent.ts'
import { resolveConfig } from '../node/config.ts'
import { silentLogger } from '../node/log.ts'
import { writeClusterKey } from '../node/cluster-key-store.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { StateStore } from '../node/state/store.ts'
import { Replica, syncPair, type Draft } from '../crdt/index.ts'
import { printTable } from './cluster.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const { values: args } = parseArgs({ options: { agents: { type: 'string', default: '50' }, seconds: { type: 'string', default: '10' }, 'default-membership': { type: 'boolean', default: false } } })
const MEMBERSHIP = args['default-membership'] === true ? {} : { heartbeatInterval: '2s', suspectAfter: '6s', deadAfter: '10s', advertInterval: '120s', silenceAfter: '300s' }
const N = Number(args.agents)
const SECONDS = Number(args.seconds)
const NODE = '12D3KooWBenchNodeBenchNodeBenchNodeBenchNode'

const rows: string[][] = []
function row (what: string, value: string, baseline: string, ratio: number, note = ''): void {
  rows.push([what, value, baseline, Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : 'n/a', note])
  console.error(`  ${what}: ${value} (baseline ${baseline})`)
}
const ms = (v: number): string => `${v.toFixed(0)} ms`
const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(2)} MiB`
const kib = (b: number): string => `${(b / 1024).toFixed(1)} KiB`
const pct = (s: number[], p: number): number => [...s].sort((a, b) => a - b)[Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1)]!
const sleep = async (t: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, t))
async function until (check: () => boolean, limitMs: number, what: string): Promise<void> {
  const t0 = performance.now()
  while (!check()) {
    if (performance.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

// ---- the document: 100 apps, each with 10 VMs and 10 volumes, one change per object
function appObjects (i: number): { app: Draft<'apps'>, vms: Array<Draft<'vms'>>, vols: Array<Draft<'volumes'>> } {
  const app = `app-${i}`
  return {
    app: { id: app, name: `Application ${i}`, desired: 'running', properties: { owner: `team-${i % 7}`, tier: 'prod' } },
    vms: Array.from({ length: 10 }, (_, j) => ({
      id: `${app}-vm-${j}`, name: `vm-${j}`, app, desired: 'running',
      spec: { driver: 'qemu', cpu: 2, memoryBytes: 4 * 2 ** 30, image: 'debian-12', volumes: [`${app}-vol-${j}`], constraints: { zone: `z${j % 3}` } }
    })),
    vols: Array.from({ length: 10 }, (_, j) => ({
      id: `${app}-vol-${j}`, path: `/apps/${app}/vol-${j}`, sizeBytes: 20 * 2 ** 30, replicas: 3, state: 'ready', parent: null, snapshots: {}
    }))
  }
}

function buildDoc (clusterId: string): Replica {
  const r = Replica.create({ clusterId, nodeId: NODE })
  for (let i = 0; i < 100; i++) {
    const { app, vms, vols } = appObjects(i)
    r.change(w => w.put('apps', app))
    for (const v of vols) r.change(w => w.put('volumes', v))
    for (const v of vms) r.change(w => w.put('vms', v))
  }
  return r
}

function heapNow (): number {
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external + m.arrayBuffers
}

// ---- agents in this process, on the memory transport
let run = 0
/** n agents joining the first (or `seed`); `prep` runs on the first one's data dir before it starts */
async function agents (n: number, root: string, keyFile: string, opts: { prep?: (dataDir: string) => Promise<void>, seed?: string } = {}): Promise<Agent[]> {
  const tag = `s${process.pid}-${run++}`
  const out: Agent[] = []
  for (let i = 0; i < n; i += 10) {
    out.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, async (_, j) => {
      const k = i + j
      const dataDir = join(root, `${tag}-${k}`)
      if (opts.prep != null && k === 0) await opts.prep(dataDir)
      const cfg = await resolveConfig({
        name: `a${k}`, dataDir, listen: `/memory/${tag}-${k}`, join: k === 0 ? (opts.seed == null ? [] : [opts.seed]) : [`/memory/${tag}-0`],
        key: keyFile, mdns: false, capacity: 'cpu=4,mem=8G,disk=100G', transport: 'memory', ...MEMBERSHIP
      })
      const a = new Agent(cfg, { logger: silentLogger, without: ['dvmm', 'gvs'] })
      await a.start({ api: false })
      return a
    })))
  }
  return out
}

async function main (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'vgrid-bench-state-'))
  const keyFile = join(root, 'cluster.key')
  const key = generateClusterKey()
  await writeClusterKey(keyFile, key)
  const started: Agent[] = []
  try {
    // 1. size of the document
    console.error('building the document (1,000 VMs, 1,000 volumes, 100 apps)...')
    const t0 = performance.now()
    const doc = buildDoc(key.clusterId)
    const buildMs = performance.now() - t0
    const saved = doc.save()
    const content = JSON.stringify({ apps: doc.read().list('apps'), vms: doc.read().list('vms'), volumes: doc.read().list('volumes') })
    row('document on disk (snapshot)', kib(saved.byteLength), `${kib(content.length)} as JSON`, saved.byteLength / content.length, `${doc.stats().changes} changes, ${doc.stats().ops} ops`)
    const m0 = heapNow()
    const loaded = Replica.load({ clusterId: key.clusterId, nodeId: NODE }, saved)
    loaded.read().counts()
    const docMem = heapNow() - m0
    const m1 = heapNow()
    const plainCopy = JSON.parse(content) as unknown
    const plainMem = heapNow() - m1
    row('document in memory (loaded + read)', mib(docMem), `${mib(plainMem)} as JS objects`, docMem / plainMem, 'process heap+external growth')
    void plainCopy

    // 2. a fresh agent receives all of it
    const t1 = performance.now()
    syncPair(loaded, Replica.create({ clusterId: key.clusterId, nodeId: 'x' }))
    const memSyncMs = performance.now() - t1
    console.error('starting a source agent holding the document, then a fresh one...')
    const [source] = await agents(1, root, keyFile, {
      prep: async dataDir => {
        const store = new StateStore(dataDir)
        await store.read()
        await store.writeSnapshot(saved)
        await store.close()
      }
    })
    started.push(source!)
    const t2 = performance.now()
    const [freshAgent] = await agents(1, root, keyFile, { seed: source!.addrs()[0] })
    started.push(freshAgent!)
    const readyMs = performance.now() - t2
    const want = source!.state.heads()
    await until(() => freshAgent!.state.replica.hasHeads(want), 60_000, 'the fresh agent to receive the document')
    const recvMs = performance.now() - t2
    row('fresh agent receives the whole document', ms(recvMs), `${ms(memSyncMs)} in-memory sync`, recvMs / memSyncMs, `incl. ${ms(readyMs)} agent start; target < 2000 ms`)
    await Promise.all(started.splice(0).map(async a => await a.stop()))

    // 3. one change reaching all N agents
    console.error(`starting ${N} agents...`)
    const grid = await agents(N, root, keyFile)
    started.push(...grid)
    await until(() => grid.every(a => a.state.sessionCount >= 1 && a.membership.members.size >= N), 180_000, 'the grid to form')
    // let the session overlay settle: no change in any agent's session count for 3 s
    let shape = ''
    for (let stable = 0; stable < 3;) {
      await sleep(1000)
      const now = grid.map(a => a.state.sessionCount).join()
      stable = now === shape ? stable + 1 : 0
      shape = now
    }
    const reach = async (i: number): Promise<number> => {
      const writer = grid[i % N]!
      const tw = performance.now()
      await writer.state.write(w => w.setLabel(writer.id, `probe-${i}`, String(i)))
      const h = writer.state.heads()
      await until(() => grid.every(a => a.state.replica.hasHeads(h)), 30_000, 'a change to reach every agent')
      return performance.now() - tw
    }
    console.error(`grid formed; measuring propagation...`)
    const lat: number[] = []
    for (let i = 0; i < 40; i++) lat.push(await reach(i))
    console.error(`propagation done; gossip baseline...`)
    // baseline: a gossip message from one agent to all others on a bench topic
    const topic = `/vgrid/bench/${process.pid}`
    for (const a of grid) a.host.services.pubsub.subscribe(topic)
    await sleep(2000)
    const gossip: number[] = []
    for (let i = 0; i < 40; i++) {
      let got = 0
      const from = grid[i % N]!
      const tg = performance.now()
      const done = new Promise<void>(resolve => {
        for (const a of grid.filter(x => x !== from)) {
          const on = (e: CustomEvent<{ topic: string }>): void => {
            if (e.detail.topic !== topic) return
            a.host.services.pubsub.removeEventListener('message', on as never)
            if (++got === N - 1) resolve()
          }
          a.host.services.pubsub.addEventListener('message', on as never)
        }
      })
      await from.host.services.pubsub.publish(topic, new TextEncoder().encode(String(i)))
      await Promise.race([done, sleep(10_000)])
      gossip.push(performance.now() - tg)
    }
    console.error(`  propagation (ms, sorted): ${[...lat].sort((a, b) => a - b).map(v => v.toFixed(0)).join(' ')}`)
    console.error(`  gossip (ms, sorted): ${[...gossip].sort((a, b) => a - b).map(v => v.toFixed(0)).join(' ')}`)
    row(`one change reaches all ${N} agents, p50`, ms(pct(lat, 50)), `${ms(pct(gossip, 50))} gossip`, pct(lat, 50) / pct(gossip, 50))
    row(`one change reaches all ${N} agents, p99`, ms(pct(lat, 99)), `${ms(pct(gossip, 99))} gossip`, pct(lat, 99) / pct(gossip, 99), 'target < 1000 ms')

    // 4. sustained writes on one agent while N sync
    const bare = Replica.create({ clusterId: key.clusterId, nodeId: NODE })
    const tb = performance.now()
    let bareN = 0
    while (performance.now() - tb < 2000) { bare.change(w => w.setLabel(NODE, `k${bareN}`, 'v')); bareN++ }
    const bareRate = bareN / ((performance.now() - tb) / 1000)
    const writer = grid[0]!
    let acked = 0
    let stop = false
    const ts = performance.now()
    await Promise.all(Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        await writer.state.write(x => x.setLabel(writer.id, `load-${w}-${i}`, 'v'))
        acked++
        if (performance.now() - ts > SECONDS * 1000) stop = true
      }
    }))
    const rate = acked / ((performance.now() - ts) / 1000)
    const h = writer.state.heads()
    const tl = performance.now()
    await until(() => grid.every(a => a.state.replica.hasHeads(h)), 120_000, 'the others to catch up')
    row(`sustained writes/s on one agent, ${N} syncing`, `${rate.toFixed(0)}/s`, `${bareRate.toFixed(0)}/s bare Automerge`, rate / bareRate, `${acked} acked (fsync'ed); all ${N} caught up ${ms(performance.now() - tl)} after`)
    console.error(`(document build: ${ms(buildMs)})`)
  } finally {
    await Promise.all(started.map(async a => await a.stop().catch(() => {})))
    await rm(root, { recursive: true, force: true })
  }
  printTable(rows)
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err)
  process.exit(1)
})
