// Surplus copies freed on real agents (processes on loopback): a volume R=2 written on
// two agents; a third joins and takes about two thirds of the objects over, so each of
// those leaves a copy on a node that is no longer its holder. Repair copies them to the
// newcomer, then frees the copies left behind once they went unused for the quiet spell
// (VGRID_GVS_RETIRE_QUIET): every object ends on exactly 2 agents' disks, the volume
// reads back whole through the newcomer, and the metrics count what repair freed. Then
// a deleted snapshot's layer is folded away and freed by the agents' background passes.
import test from 'ava'
import { readdir } from 'node:fs/promises'
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
const OBJECTS = 8
const SIZE = OBJECTS * 4 * MiB

test('a joining agent takes objects over; repair frees the copies left on their former holders, and every byte reads back', async t => {
  const group = new AgentGroup()
  t.teardown(async () => {
    if (!t.passed) t.log(group.logs().split('\n').filter(l => /repair|gvs|retire/i.test(l)).slice(-40).join('\n'))
    await group.cleanup()
  })
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  const QUIET_MS = 10_000
  const env = { VGRID_GVS_REPAIR_DELAY: '1s', VGRID_GVS_RETIRE_QUIET: `${QUIET_MS}ms` }
  const add = async (i: number): Promise<AgentProcess> => await group.add({ name: `s${i}`, p2pPort: i === 0 ? port : undefined, env, args: ['--key', keyFile, '--capacity', 'cpu=2,mem=2G,disk=20G', ...(i === 0 ? [] : ['--join', `/ip4/127.0.0.1/tcp/${port}`])] })
  const first = [await add(0), await add(1)]
  await waitMembers(first, 2, 45_000)
  const [a] = first as [AgentProcess, AgentProcess]
  const created = await a.request('POST', '/v1/volumes', { path: '/sur/data', size: SIZE, replicas: 2 })
  t.is(created.status, 201, JSON.stringify(created.body))
  const id = (created.body as { id: string }).id
  const nbd = await NbdClient.open(join(a.opts.dataDir, 'nbd.sock'), 'sur/data')
  const data = randomBytes(SIZE)
  for (let off = 0; off < SIZE; off += MiB) await nbd.write(off, data.subarray(off, off + MiB))
  await nbd.flush()
  await nbd.close()

  /** the objects whose files sit in an agent's data dir */
  const held = async (x: AgentProcess): Promise<number[]> =>
    (await readdir(join(x.opts.dataDir, 'gvs', 'objects', id)).catch(() => [] as string[])).filter(n => /^[0-9a-f]{8}$/.test(n)).map(n => parseInt(n, 16))
  const copies = async (agents: AgentProcess[]): Promise<number[]> => {
    const n = new Array<number>(OBJECTS).fill(0)
    for (const x of agents) for (const i of await held(x)) n[i]!++
    return n
  }
  t.deepEqual(await copies(first), new Array(OBJECTS).fill(2), 'both agents hold every object')

  const c = await add(2)
  const all = [...first, c]
  await waitMembers(all, 3, 45_000)
  // repair (the CLI's, as the background pass may not have seen the join yet) until
  // nothing is left to copy: the newcomer then holds its share
  const repair = async (): Promise<string> => (await run(VGRID, ['vol', 'repair', '/sur/data', '--api', a.api], { timeout: 60_000 })).stdout
  let out = ''
  await waitFor(async () => /nothing to copy/.test(out = await repair()), 60_000, 'a repair with nothing left to copy')
  const moved = (await held(c)).length
  t.log(`the newcomer holds ${moved} of ${OBJECTS} objects`)
  // each object is on 2 of 3 nodes now: the newcomer holds some, all 8 now and then (4 %)
  t.true(moved > 0)
  // each object it took leaves one copy on a former holder; once unused for the quiet
  // spell, a repair frees it (the CLI's, or a background pass that came first)
  await sleep(QUIET_MS + 500)
  out = await repair()
  t.log(out.trim())
  t.regex(out, /\/sur\/data: nothing to copy, every object has its copies/)
  t.deepEqual(await copies(all), new Array(OBJECTS).fill(2), 'every object on exactly 2 agents')
  const freed = (await Promise.all(all.map(async x => Number(/^vgrid_gvs_surplus_freed_total (\S+)$/m.exec(await x.metrics())?.[1] ?? 0)))).reduce((p, q) => p + q, 0)
  t.is(freed, moved, 'one copy freed per object the newcomer took over (metrics)')
  // read back through the newcomer, which holds only its share
  const r = await NbdClient.open(join(c.opts.dataDir, 'nbd.sock'), 'sur/data')
  t.teardown(async () => { await r.close().catch(() => {}) })
  const parts: Buffer[] = []
  for (let off = 0; off < SIZE; off += MiB) parts.push(await r.read(off, MiB))
  t.true(Buffer.concat(parts).equals(data), 'every byte reads back')
  await r.close()

  // snapshots through the CLI; the oldest deleted: a background pass folds its layer (the
  // base) into the one above and, a pass later, the agents free it; s2 reads as it was
  const vol = async (...args: string[]): Promise<string> => (await run(VGRID, ['vol', ...args, '--api', a.api], { timeout: 60_000 })).stdout
  const w = await NbdClient.open(join(a.opts.dataDir, 'nbd.sock'), 'sur/data')
  await vol('snapshot', '/sur/data', 's1')
  await w.write(0, Buffer.alloc(MiB, 0x11), true)
  await vol('snapshot', '/sur/data', 's2')
  await w.write(0, Buffer.alloc(MiB, 0x22), true)
  await vol('snapshot', '/sur/data', 's3')
  await w.close()
  await vol('snapshot', 'rm', '/sur/data', 's1')
  const layers = async (): Promise<{ count: number, folding: number }> => ((await a.request('GET', `/v1/volumes/${id}`)).body as { layers: { count: number, folding: number } }).layers
  t.like(await layers(), { count: 4, folding: 1 })
  await waitFor(async () => (await layers()).count === 3, 120_000, 'the deleted snapshot\'s layer folded by a background pass')
  t.regex(await vol('info', '/sur/data'), /layers {4}3 of 128 \(2 for snapshots\)\n/)
  await waitFor(async () => (await Promise.all(all.map(held))).every(l => l.length === 0), 120_000, 'the folded layer freed on every agent')
  const s2 = await NbdClient.open(join(c.opts.dataDir, 'nbd.sock'), 'sur/data@s2')
  t.teardown(async () => { await s2.close().catch(() => {}) })
  const want = Buffer.from(data)
  want.fill(0x11, 0, MiB)
  const got: Buffer[] = []
  for (let off = 0; off < SIZE; off += MiB) got.push(await s2.read(off, MiB))
  t.true(Buffer.concat(got).equals(want), 's2 reads as it was taken')
})
