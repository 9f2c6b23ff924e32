// A volume that takes writes with fewer than R copies (R=3, --min-replicas 1) on real
// agents (processes on loopback), as a black-box tester found it serving stale data:
// C dies, a write lands on A and B only (recorded in the document, held by a majority
// first); then A and B die and C comes back alone. C must not serve its older copy as
// the volume's data: it sees no majority and says so (no node without one reads or
// writes any volume), and once B is back the newest data reads back through C. A write
// with only one of three nodes live is refused.
import test from 'ava'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { AgentGroup, freePort, waitFor, type AgentProcess } from '../helpers/agent-process.ts'
import { NbdClient } from '../helpers/nbd-client.ts'
import { writeKeyFile, waitMembers } from '../state-grid.ts'

const MiB = 1024 * 1024
const SIZE = 2 * 4 * MiB

const aliveSeen = async (a: AgentProcess): Promise<number> => (await a.get<{ members: { alive: number } }>('/v1/status')).members.alive

test('writes kept on fewer than R nodes: a node back alone does not serve its older copy, and the newest reads back once a holder returns', async t => {
  const group = new AgentGroup()
  t.teardown(async () => {
    if (!t.passed) t.log(group.logs().split('\n').filter(l => /gvs|short|majority|WARN|ERROR/i.test(l)).slice(-60).join('\n'))
    await group.cleanup()
  })
  const keyFile = await writeKeyFile(group)
  const port = await freePort()
  const env = { VGRID_GVS_REPAIR_DELAY: '1s' }
  const add = async (i: number): Promise<AgentProcess> => await group.add({ name: `w${i}`, p2pPort: i === 0 ? port : undefined, env, args: ['--key', keyFile, '--capacity', 'cpu=2,mem=2G,disk=20G', ...(i === 0 ? [] : ['--join', `/ip4/127.0.0.1/tcp/${port}`])] })
  const [a, b, c] = [await add(0), await add(1), await add(2)] as [AgentProcess, AgentProcess, AgentProcess]
  await waitMembers([a, b, c], 3, 60_000)
  await waitFor(async () => (await Promise.all([a, b, c].map(async x => (await x.get<{ counts: { roll: number } }>('/v1/state')).counts.roll))).every(n => n === 3), 30_000, 'every node on the roll')
  const created = await a.request('POST', '/v1/volumes', { path: '/sw/data', size: SIZE, replicas: 3, minReplicas: 1 })
  t.is(created.status, 201, JSON.stringify(created.body))
  const sock = (x: AgentProcess): string => join(x.opts.dataDir, 'nbd.sock')

  const old = randomBytes(SIZE)
  let nbd = await NbdClient.open(sock(a), 'sw/data')
  await nbd.write(0, old, true)
  await nbd.close()

  // C dies: the newer write is kept on A and B only
  await c.kill('SIGKILL')
  await waitFor(async () => await aliveSeen(a) === 2 && await aliveSeen(b) === 2, 30_000, 'A and B see C dead')
  const newer = randomBytes(SIZE)
  nbd = await NbdClient.open(sock(a), 'sw/data')
  await nbd.write(0, newer, true)
  await nbd.flush()
  await nbd.close()
  t.regex(a.log, /a volume takes writes on fewer than R nodes: recorded where they go, held by a majority/)

  // A and B die; C comes back alone: it sees no majority, so it serves nothing of the volume
  await a.kill('SIGKILL')
  await b.kill('SIGKILL')
  await c.start()
  await waitFor(async () => (await c.tryGet('/healthz')) != null, 20_000, 'C up')
  const alone = await NbdClient.open(sock(c), 'sw/data')
  const err = await t.throwsAsync(alone.read(0, 4096))
  t.log('C alone:', err?.message)
  await alone.close().catch(() => {})
  const vol = await c.request('GET', `/v1/volumes/${encodeURIComponent('/sw/data')}`)
  t.regex(JSON.stringify(vol.body), /this node sees 1 of the grid's 3 members \(no majority\): not readable or writable here until it sees one/)

  // B, which took the newer write, is back: C reads the newest data, never the older
  await b.start()
  await waitFor(async () => await aliveSeen(c) === 2, 30_000, 'C sees B')
  let got: Buffer | null = null
  await waitFor(async () => {
    const r = await NbdClient.open(sock(c), 'sw/data')
    try { got = await r.read(0, SIZE); return true } finally { await r.close().catch(() => {}) }
  }, 30_000, 'the volume readable through C')
  t.true(got!.equals(newer), 'the acknowledged newer write, not C\'s older copy')

  // only one node of three live: a write with one copy is refused (no majority to hold the record), not acknowledged
  await b.kill('SIGKILL')
  await waitFor(async () => await aliveSeen(c) === 1, 30_000, 'C sees B dead')
  const lone = await NbdClient.open(sock(c), 'sw/data')
  await t.throwsAsync(lone.write(0, randomBytes(4096), true))
  await lone.close().catch(() => {})
})
