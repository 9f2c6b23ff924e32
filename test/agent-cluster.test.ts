// Five real agent processes on loopback, joined through one --join address.
import test from 'ava'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentGroup, AgentProcess, waitFor, tempDir } from './helpers/agent-process.ts'
import { startRawPeer, dialAgent } from './helpers/raw-peer.ts'
import { parseClusterKey } from '../protocol/cluster-key.ts'
import { advertTopic, suspicionTopic } from '../protocol/topics.ts'
import { encodeSuspicion } from '../protocol/suspicion.ts'
import { encodeAdvert, type Advert } from '../protocol/advert.ts'
import type { StatusView, NodeView } from '../node/api/types.ts'
import { DEFAULT_MEMBERSHIP, deadTimeoutMs } from '../protocol/membership.ts'
import { DEFAULT_TIMING } from '../protocol/membership-service.ts'

const group = new AgentGroup()
let agents: AgentProcess[] = []
let keyFile = ''

test.before(async () => {
  const seed = await group.add({ name: 'n0', args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  keyFile = join(seed.opts.dataDir, 'cluster.key')
  agents = [seed]
  const rest = await Promise.all([1, 2, 3, 4].map(async i => await group.add({
    name: `n${i}`,
    args: ['--key', keyFile, '--join', seed.listen, '--capacity', `cpu=${2 + i},mem=${2 + i}G,disk=${10 * (i + 1)}G`]
  })))
  agents.push(...rest)
})

let failed = false
test.afterEach.always(t => { if (!t.passed) failed = true })
test.after.always(async () => {
  if (failed) console.error(group.logs())
  await group.cleanup()
})

const statusOf = async (a: AgentProcess): Promise<StatusView> => await a.get<StatusView>('/v1/status')
const stateOf = async (a: AgentProcess, id: string): Promise<string | undefined> =>
  (await a.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.find(n => n.id === id)?.state
const counter = (metrics: string, name: string, labels: string): number => {
  const line = metrics.split('\n').find(l => l.startsWith(`${name}{${labels}}`))
  return line == null ? 0 : Number(line.split(' ').pop())
}

test.serial('5 agents joined through one address all see 5 alive and the same pool within 10 s', async t => {
  const ms = await waitFor(async () => {
    const all = await Promise.all(agents.map(statusOf))
    return all.every(s => s.members.alive === 5)
  }, 10_000, 'every agent reports 5 alive')
  const all = await Promise.all(agents.map(statusOf))
  const pools = all.map(s => JSON.stringify({ cpu: s.pool.cpu.total, mem: s.pool.memoryBytes.total, disk: s.pool.diskBytes.total }))
  t.true(pools.every(p => p === pools[0]), pools.join(' / '))
  t.is(all[0]!.pool.cpu.total, 2 + 3 + 4 + 5 + 6)
  t.is(all[0]!.pool.memoryBytes.total, (2 + 3 + 4 + 5 + 6) * 1024 ** 3)
  t.log(`converged in ${ms} ms`)
})

test.serial('GET /v1/nodes lists every member with state, addresses and resources', async t => {
  const { nodes } = await agents[0]!.get<{ nodes: NodeView[] }>('/v1/nodes')
  t.is(nodes.length, 5)
  const n3 = nodes.find(n => n.name === 'n3')!
  t.is(n3.state, 'alive')
  t.is(n3.capacity.cpu, 5)
  t.true(n3.addrs.some(a => a.includes('/tcp/')))
  const byName = await agents[1]!.get<NodeView>('/v1/nodes/n3')
  t.is(byName.id, n3.id)
  const missing = await agents[1]!.request('GET', '/v1/nodes/nope')
  t.is(missing.status, 404)
  t.deepEqual(Object.keys((missing.body as { error: object }).error).sort(), ['code', 'message'])
})

test.serial('an agent with another cluster key never becomes a member and its connections are rejected', async t => {
  const stranger = await group.add({ name: 'stranger', args: ['--join', agents[0]!.listen] })
  await waitFor(async () => counter(await agents[0]!.metrics(), 'vgrid_connections_rejected_total', 'reason="bad-key"') > 0,
    10_000, 'bad-key rejection counted')
  await new Promise(resolve => setTimeout(resolve, 2000))
  for (const a of agents) {
    const s = await statusOf(a)
    t.is(s.members.alive, 5)
    t.false((await a.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.some(n => n.name === 'stranger'))
  }
  const own = await stranger.get<StatusView>('/v1/status')
  t.is(own.members.alive, 1, 'the stranger sees only itself')
  await stranger.kill('SIGKILL')
})

test.serial('forged, malformed, oversized and foreign-cluster adverts are rejected and counted', async t => {
  const key = parseClusterKey(await readFile(keyFile, 'utf8'))
  const peer = await startRawPeer(key)
  t.teardown(async () => await peer.stop())
  const target = agents[1]!
  const targetStatus = await statusOf(target)
  await dialAgent(peer, target.listen + '/p2p/' + targetStatus.node.id)
  const topic = advertTopic(key.clusterId)
  peer.services.pubsub.subscribe(topic)
  await waitFor(() => peer.services.pubsub.getSubscribers(topic).length > 0, 5000, 'agent subscribed')
  const victim = (await target.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.find(n => n.name === 'n2')!
  const r = { cpu: 999, memoryBytes: 1, diskBytes: 1 }
  const forged: Advert = {
    v: 1, cluster: key.clusterId, nodeId: victim.id, name: 'evil', incarnation: Date.now() * 2, seq: 1, status: 'leaving',
    addrs: [], capacity: r, reserved: r, free: r, load: [0, 0, 0], version: 'x', labels: {}, wireguard: null, sig: ''
  }
  const pub = async (data: Uint8Array): Promise<void> => { await peer.services.pubsub.publish(topic, data) }
  await pub(encodeAdvert(forged))
  await pub(new TextEncoder().encode('{not json'))
  await pub(encodeAdvert({ ...forged, nodeId: peer.peerId.toString(), cluster: 'another-cluster' }))
  await pub(new Uint8Array(20_000).fill(65))
  await pub(encodeAdvert({ ...forged, nodeId: peer.peerId.toString(), capacity: { cpu: -1 } as never }))
  await pub(encodeAdvert({ ...forged, nodeId: peer.peerId.toString(), sig: 'AAAA' }))
  // a suspicion signed by the raw peer but claiming to come from n2
  await peer.services.pubsub.publish(suspicionTopic(key.clusterId), encodeSuspicion({
    v: 1, cluster: key.clusterId, from: victim.id, target: agents[0]!.opts.name, incarnation: 0, seq: 0
  }))
  await waitFor(async () => {
    const m = await target.metrics()
    return ['forged', 'malformed', 'wrong-cluster', 'oversized', 'schema', 'bad-signature'].every(reason =>
      counter(m, 'vgrid_gossip_rejected_total', `topic="adverts",reason="${reason}"`) >= 1) &&
      counter(m, 'vgrid_gossip_rejected_total', 'topic="suspicions",reason="forged"') >= 1
  }, 5000, 'every rejection reason counted')
  const after = await target.get<NodeView>(`/v1/nodes/${victim.id}`)
  t.is(after.name, 'n2', 'the forged advert did not replace the real one')
  t.is(after.state, 'alive')
  t.is((await statusOf(target)).members.alive, 5, 'the raw peer never became a member')
})

test.serial('a restarted agent keeps its peer id and rejoins', async t => {
  const a = agents[4]!
  const before = (await statusOf(a)).node.id
  await a.restart()
  const after = (await statusOf(a)).node.id
  t.is(after, before)
  await waitFor(async () => (await Promise.all(agents.map(statusOf))).every(s => s.members.alive === 5), 10_000, 'all see 5 alive after restart')
  t.pass()
})

test.serial('SIGKILL is seen as dead by all within the dead timeout + 1 s; SIGTERM as left within 1 s', async t => {
  const killed = agents[3]!
  const stopped = agents[2]!
  const killedId = (await statusOf(killed)).node.id
  const stoppedId = (await statusOf(stopped)).node.id
  const others = agents.filter(a => a !== killed && a !== stopped)

  const t0 = Date.now()
  await stopped.kill('SIGTERM')
  const leftMs = await waitFor(async () =>
    (await Promise.all(others.map(async a => await stateOf(a, stoppedId)))).every(s => s === 'left'), 1000, 'left everywhere')
  t.log(`left seen by all in ${Date.now() - t0} ms (${leftMs})`)

  const t1 = Date.now()
  await killed.kill('SIGKILL')
  await waitFor(async () =>
    (await Promise.all(others.map(async a => await stateOf(a, killedId)))).every(s => s === 'dead'),
  deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs) + 1000, 'dead everywhere')
  t.log(`dead seen by all in ${Date.now() - t1} ms`)
  const s = await statusOf(others[0]!)
  t.deepEqual(s.members, { alive: 3, suspect: 0, dead: 1, left: 1 })
})

test('tempDir helper makes unique directories', async t => {
  const [a, b] = await Promise.all([tempDir(), tempDir()])
  t.teardown(async () => { await Promise.all([a, b].map(async d => await rm(d, { recursive: true, force: true }))) })
  t.not(a, b)
})
