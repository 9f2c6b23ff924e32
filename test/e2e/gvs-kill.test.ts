// The volume store on three real agents (processes on loopback), a volume with R=2:
// a write workload through NBD on one agent; a replica holder's agent gets SIGKILL in
// the middle. Every acknowledged write reads back; the API shows the volume degraded,
// then repairing, and repair brings it back to 2 copies of every object on the two
// agents left. A second agent is killed while that repair runs (and started again,
// with its disk): the repair survives it and the volume ends healthy, every
// acknowledged write still there, read through both agents.
import test from 'ava'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { AgentGroup, VGRID, freePort, waitFor, type AgentProcess } from '../helpers/agent-process.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { writeKeyFile, waitMembers } from '../state-grid.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const OBJECT = 4 * MiB
const OBJECTS = 16
const SIZE = OBJECTS * OBJECT
const CHUNK = 64 * 1024

interface Health { state: 'healthy' | 'degraded' | 'repairing', reasons: string[], repair: { done: number, total: number, node: string } | null }
interface VolView { id: string, health: Health }

test('SIGKILL of a replica holder during NBD writes: acknowledged writes read back; degraded -> repairing -> healthy, also when a node dies during repair', async t => {
  const group = new AgentGroup()
  t.teardown(async () => {
    if (!t.passed) t.log(group.logs().split('\n').filter(l => /nbd request failed|repair|gvs/i.test(l)).slice(-40).join('\n'))
    await group.cleanup()
  })
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  // a slow repair (4 MiB/s, an object a second), soon after a member changes: time to watch it and kill during it
  const env = { VGRID_GVS_REPAIR_RATE: '4M', VGRID_GVS_REPAIR_DELAY: '1500ms' }
  const agents: AgentProcess[] = []
  for (let i = 0; i < 3; i++) {
    agents.push(await group.add({ name: `g${i}`, p2pPort: i === 0 ? port : undefined, env, args: ['--key', keyFile, '--capacity', 'cpu=2,mem=2G,disk=20G', ...(i === 0 ? [] : ['--join', `/ip4/127.0.0.1/tcp/${port}`])] }))
  }
  await waitMembers(agents, 3, 45_000)
  const [w, victim, second] = agents as [AgentProcess, AgentProcess, AgentProcess]

  const created = await w.request('POST', '/v1/volumes', { path: '/kill/data', size: SIZE, replicas: 2 })
  t.is(created.status, 201, JSON.stringify(created.body))
  const id = (created.body as VolView).id
  await waitFor(async () => (await Promise.all(agents.map(async a => (await a.request('GET', `/v1/volumes/${id}`)).status))).every(s => s === 200), 20_000, 'every agent has the volume')
  /** the whole volume, read in 1 MiB requests */
  const readAll = async (c: NbdClient): Promise<Buffer> => {
    const parts: Buffer[] = []
    for (let off = 0; off < SIZE; off += MiB) parts.push(await c.read(off, MiB))
    return Buffer.concat(parts)
  }
  const health = async (a: AgentProcess = w): Promise<Health> => ((await a.request('GET', `/v1/volumes/${id}`)).body as VolView).health

  // the states the writer's API shows, as they change
  const states: string[] = []
  let watching = true
  const watcher = (async () => {
    while (watching) {
      const h = await health().catch(() => null)
      if (h != null && states.at(-1) !== h.state) { states.push(h.state); t.log(`${new Date().toISOString()} ${h.state}: ${h.reasons.join('; ')}`) }
      await sleep(100)
    }
  })()
  t.teardown(async () => { watching = false; await watcher })

  const nbd = await NbdClient.open(join(w.opts.dataDir, 'nbd.sock'), 'kill/data')
  t.teardown(async () => { await nbd.close() })
  t.is(nbd.size, SIZE)
  const expect = Buffer.alloc(SIZE)
  let acked = 0
  let failed = 0
  /** one write, retried until acknowledged: only then is its data expected */
  const write = async (off: number, data: Buffer): Promise<void> => {
    const until = Date.now() + 40_000
    for (;;) {
      try {
        await nbd.write(off, data)
        data.copy(expect, off)
        acked++
        return
      } catch (err) {
        failed++
        if (Date.now() > until) throw new Error(`a write at ${off} was not acknowledged for 40 s: ${(err as Error).message}`)
        await sleep(200)
      }
    }
  }
  // every object written once, then flushed: R=2 copies of each on disk
  for (let off = 0; off < SIZE; off += MiB) await write(off, randomBytes(MiB))
  await nbd.flush()
  await waitFor(async () => (await health()).state === 'healthy', 20_000, 'the volume healthy after the first writes')
  const heldByVictim = (): boolean => existsSync(join(victim.opts.dataDir, 'gvs', 'objects', id))
  t.true(heldByVictim(), `${victim.opts.name} holds replicas of the volume`)

  // the workload: 4 writers, each in its own quarter; the victim dies 1 s in. After the
  // kill only the first 2 objects are written (the rest is left to repair)
  let stop = false
  let killedAt = 0
  const worker = async (k: number): Promise<void> => {
    while (!stop) {
      const span = killedAt === 0 ? SIZE / 4 : 2 * OBJECT / 4
      const off = k * span + Math.floor(Math.random() * (span / CHUNK)) * CHUNK
      await write(off, randomBytes(CHUNK))
    }
  }
  const workers = [0, 1, 2, 3].map(worker)
  await sleep(1000)
  killedAt = Date.now()
  await victim.kill('SIGKILL')
  t.log(`${new Date(killedAt).toISOString()} killed ${victim.opts.name} after ${acked} acknowledged writes`)
  // the workload goes on until the repair (4 MiB/s: about an object a second) is under
  // way; then the second agent is killed in the middle of it
  let during: Health | null = null
  await waitFor(async () => {
    const h = await health()
    if (h.state === 'repairing' && h.repair != null && h.repair.done >= 1 && h.repair.done < h.repair.total) during = h
    return during != null
  }, 40_000, 'the repair under way')
  stop = true
  await Promise.all(workers)
  await second.kill('SIGKILL')
  const r = (during as Health | null)?.repair
  t.log(`${new Date().toISOString()} repair under way on ${r?.node ?? '?'}: ${r?.done ?? 0}/${r?.total ?? 0}; killed ${second.opts.name}`)
  t.log(`workload: ${acked} writes acknowledged, ${failed} attempts failed (while the dead holder was still in placement)`)
  t.true(acked > 50)
  await waitFor(async () => (await health()).state === 'degraded', 20_000, 'the volume degraded with one agent left')
  t.regex((await health()).reasons.join('\n'), /only 1 live node can hold replicas of R=2/)
  await second.start()
  await waitFor(async () => (await health()).state === 'healthy', 60_000, 'the volume healthy again')
  await waitFor(() => states.at(-1) === 'healthy', 10_000, 'the watcher to see it healthy too')
  watching = false
  await watcher

  // every object on both agents left, and every acknowledged write in it, through either
  for (const a of [w, second]) {
    for (let i = 0; i < OBJECTS; i++) t.true(existsSync(join(a.opts.dataDir, 'gvs', 'objects', id, i.toString(16).padStart(8, '0'))), `object ${i} on ${a.opts.name}`)
  }
  // the dead holders are out of membership by now: the flush brings what they had unflushed to the live holders
  await nbd.flush()
  t.true((await readAll(nbd)).equals(expect), 'every acknowledged write reads back after repair')
  const other = await NbdClient.open(join(second.opts.dataDir, 'nbd.sock'), 'kill/data')
  t.teardown(async () => { await other.close() })
  t.true((await readAll(other)).equals(expect), 'and through the restarted agent')

  // degraded (holder dead) -> repairing -> ... -> healthy, as the API showed it
  t.log(`states: ${states.join(' -> ')}`)
  const d = states.indexOf('degraded')
  t.true(d > 0 && states[0] === 'healthy', 'healthy, then degraded when the holder died')
  t.true(states.indexOf('repairing', d) > d, 'then repairing')
  t.is(states.at(-1), 'healthy')
  // the CLI against the real agents: the state in vol ls and vol info, a repair with
  // nothing left to do (plain progress lines: not a terminal)
  const vgrid = async (a: AgentProcess, ...args: string[]): Promise<string> => (await run(VGRID, ['vol', ...args, '--api', a.api], { timeout: 30_000 })).stdout
  t.regex(await vgrid(second, 'ls'), /\/kill\/data\s+64M\s+2\s+healthy\s/)
  t.regex(await vgrid(w, 'info', '/kill/data'), /state\s+healthy\n[^]*repair\s+\S+ on \S+: \d+ copied/)
  t.regex(await vgrid(w, 'repair', '/kill/data'), /\/kill\/data: nothing to copy, every object has its copies/)
  // a client writing through one agent keeps the volume from being destroyed through another
  await nbd.write(0, expect.subarray(0, CHUNK))
  const rm = await second.request('DELETE', `/v1/volumes/${id}`)
  t.is(rm.status, 409, JSON.stringify(rm.body))
  t.regex(JSON.stringify(rm.body), /being written over NBD/)

  const copied = (await Promise.all([w, second].map(async a => Number(/^vgrid_gvs_repair_bytes_total (\S+)$/m.exec(await a.metrics())?.[1] ?? 0)))).reduce((x, y) => x + y, 0)
  t.true(copied >= OBJECT, `repair copied ${copied} bytes (metrics)`)
})
