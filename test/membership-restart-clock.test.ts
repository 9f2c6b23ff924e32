// An agent restarted with its clock behind its previous run's (a wrong clock,
// `faketime -f -2h`, an NTP step back after a fast clock) is seen as back by its
// peers: its new adverts must be newer than the previous run's, whatever the wall
// clock says (node/incarnation.ts). Two in-process agents on the memory transport; the
// step is faked for the whole process by replacing Date.now, so both agents see it
// (what matters is that the new run's clock is behind the old run's).
import test from 'ava'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent } from '../node/agent.ts'
import { resolveConfig } from '../node/config.ts'
import { silentLogger } from '../node/log.ts'
import { writeClusterKey } from '../node/cluster-key-store.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { waitFor } from './helpers/agent-process.ts'

const realNow = Date.now
const stepWallClock = (ms: number): void => { Date.now = () => realNow.call(Date) + ms }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

test.serial('an agent restarted with its clock 2 h behind its previous run is seen alive again', async t => {
  const root = await mkdtemp(join(tmpdir(), 'vgrid-restart-clock-'))
  const keyFile = join(root, 'cluster.key')
  await writeClusterKey(keyFile, generateClusterKey())
  const tag = `rc${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const agents: Agent[] = []
  t.teardown(async () => {
    Date.now = realNow
    await Promise.all(agents.map(async a => { await a.stop({ graceful: false }).catch(() => {}) }))
    await rm(root, { recursive: true, force: true })
  })
  const start = async (k: number): Promise<Agent> => {
    const cfg = await resolveConfig({
      name: `a${k}`, dataDir: join(root, `a${k}`), listen: `/memory/${tag}-${k}`, join: k === 0 ? [] : [`/memory/${tag}-0`],
      key: keyFile, mdns: false, capacity: 'cpu=1,mem=1G,disk=1G', transport: 'memory'
    })
    const agent = new Agent(cfg, { logger: silentLogger, without: ['dvmm', 'gvs', 'lcm'] })
    agents.push(agent)
    await agent.start({ api: false })
    return agent
  }
  const a = await start(0)
  const b = await start(1)
  const bId = b.id
  await waitFor(() => a.membership.members.get(bId)?.state === 'alive' && b.membership.members.get(a.id)?.state === 'alive', 20_000, 'a and b hold each other alive')
  // past the first gossip heartbeats, so that b's last advert ("leaving") reaches a over the mesh
  await sleep(2000)
  const before = a.membership.members.get(bId)!.version

  await b.stop()
  // left (its last advert); dead should that advert be lost: either way, held at the old run's version
  await waitFor(() => ['left', 'dead'].includes(a.membership.members.get(bId)?.state ?? ''), 30_000, 'a holds b left or dead')

  stepWallClock(-2 * 3_600_000)
  const b2 = await start(1)
  t.is(b2.id, bId, 'the same identity')
  t.true(b2.membership.version.incarnation > before.incarnation, `the new run's incarnation ${b2.membership.version.incarnation} is after the previous run's ${before.incarnation}`)
  await waitFor(() => a.membership.members.get(bId)?.state === 'alive', 20_000, 'a holds the restarted b alive')
  t.is(a.membership.members.get(bId)?.version.incarnation, b2.membership.version.incarnation)
})
