// Forward compatibility of adverts (issue 12, item 4): a member whose adverts carry
// fields this release does not know, as a newer release's would, is a member like any
// other; one that speaks no protocol version of ours is reported, once.
import test from 'ava'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { AgentGroup, AgentProcess, waitFor } from './helpers/agent-process.ts'
import type { StatusView, NodeView } from '../node/api/types.ts'
import { DEFAULT_MEMBERSHIP, deadTimeoutMs } from '../protocol/membership.ts'
import { DEFAULT_TIMING, MembershipService } from '../protocol/membership-service.ts'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import type { Compat } from '../protocol/compat.ts'
import type { AdvertBody } from '../protocol/own-advert.ts'

/** what a newer release might add: new top-level fields of every JSON kind */
const EXTRA = { zone: 'eu-west-1', gpus: [{ model: 'x', memoryBytes: 1 }], drain: false, weight: 0.5, note: null }

/** the sum of a metric's samples whose labels include `labels` */
const counter = (metrics: string, name: string, labels: string): number =>
  metrics.split('\n').filter(l => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)

test.serial('a grid where one agent publishes adverts with unknown fields stays whole, and everyone counts it alive', async t => {
  const group = new AgentGroup()
  t.teardown(async () => {
    if (!t.passed) console.error(group.logs())
    await group.cleanup()
  })
  const seed = await group.add({ name: 'n0' })
  const keyFile = join(seed.opts.dataDir, 'cluster.key')
  const newer = await group.add({
    name: 'newer',
    args: ['--key', keyFile, '--join', seed.listen],
    env: { VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: JSON.stringify(EXTRA) }
  })
  await waitFor(async () => (await seed.get<StatusView>('/v1/status')).members.alive === 2, 10_000, 'the seed counts the newer agent')
  // n2 joins through the seed only: it learns the newer agent's advert relayed by the
  // seed (member sync), so the seed must have kept the unknown fields for it to verify
  const late = await group.add({ name: 'n2', args: ['--key', keyFile, '--join', seed.listen] })
  const agents: AgentProcess[] = [seed, newer, late]
  const newerId = (await newer.get<StatusView>('/v1/status')).node.id
  const allAlive = async (): Promise<boolean> => (await Promise.all(agents.map(async a => await a.get<StatusView>('/v1/status')))).every(s => s.members.alive === 3)
  await waitFor(allAlive, 15_000, 'every agent counts 3 alive')

  // whole and staying whole: past the dead timeout and a member-sync round
  await new Promise(resolve => setTimeout(resolve, deadTimeoutMs(DEFAULT_MEMBERSHIP, DEFAULT_TIMING.heartbeatIntervalMs) + 1000))
  for (const a of agents) {
    const s = await a.get<StatusView>('/v1/status')
    t.deepEqual(s.members, { alive: 3, suspect: 0, dead: 0, left: 0 }, `${a.opts.name}'s view`)
    const { nodes } = await a.get<{ nodes: NodeView[] }>('/v1/nodes')
    t.is(nodes.find(n => n.id === newerId)?.state, 'alive', `${a.opts.name} counts the newer agent alive`)
    const metrics = await a.metrics()
    t.is(counter(metrics, 'vgrid_gossip_rejected_total', 'topic="adverts"'), 0, `${a.opts.name} rejected no advert`)
    t.is(counter(metrics, 'vgrid_gossip_rejected_total', 'reason="bad-signature"'), 0, `${a.opts.name}: every relayed advert verified`)
    t.is(counter(metrics, 'vgrid_gossip_rejected_total', 'reason="schema"'), 0, `${a.opts.name}: no schema rejection`)
  }
  t.is(newer.proc?.exitCode, null)
})

test.serial('an agent shows a member of another protocol range in /v1/nodes and logs it once', async t => {
  const group = new AgentGroup()
  t.teardown(async () => {
    if (!t.passed) console.error(group.logs())
    await group.cleanup()
  })
  // adverts every 2 s or so, so that several arrive while we watch
  const seed = await group.add({ name: 'n0', args: ['--advert-interval', '1s'] })
  const future = await group.add({
    name: 'future',
    args: ['--key', join(seed.opts.dataDir, 'cluster.key'), '--join', seed.listen, '--advert-interval', '1s'],
    env: { VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: JSON.stringify({ proto: 7, protoMin: 5, hologram: true }) }
  })
  const futureId = (await future.get<StatusView>('/v1/status')).node.id
  const view = async (): Promise<NodeView | undefined> => (await seed.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.find(n => n.id === futureId)
  await waitFor(async () => (await view())?.state === 'alive', 15_000, 'the seed holds the future agent alive')
  // adverts the seed took in (all from the future agent: it is the only other member)
  const received = async (): Promise<number> => counter(await seed.metrics(), 'vgrid_adverts_received_total', '')
  const first = await received()
  await waitFor(async () => await received() >= first + 3, 20_000, 'three more adverts from the future agent')
  const v = (await view())!
  t.is(v.state, 'alive', 'still a member')
  t.deepEqual(v.protocol.speaks, { min: 5, max: 7 })
  t.false(v.protocol.ok)
  t.regex(v.protocol.reason ?? '', /speaks protocol 5-7, this agent speaks 1-3: the member runs a newer release; update this agent/)
  const warned = seed.log.split('\n').filter(l => l.includes('WARN') && l.includes(futureId))
  t.is(warned.length, 1, `one log line for the member, not one per advert:\n${warned.join('\n')}`)
  t.regex(warned[0] ?? '', /protocol/)
  const self = (await seed.get<{ nodes: NodeView[] }>('/v1/nodes')).nodes.find(n => n.self)!
  t.true(self.protocol.ok)
  t.deepEqual(self.protocol.speaks, { min: 1, max: 3 })
})

const body = (name: string) => (): AdvertBody => ({
  name, addrs: [], capacity: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, load: [0, 0, 0], version: '9.0.0', labels: {}, wireguard: null
})

test.serial('a member that speaks no protocol version of ours stays a member and is reported once', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const services: MembershipService[] = []
  t.teardown(async () => {
    await Promise.all(services.map(async s => { await s.stop({ graceful: false }) }))
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  const events: Array<{ id: string, compat: Compat }> = []
  const start = async (name: string, env: Record<string, string>): Promise<MembershipService> => {
    const privateKey = await generateKeyPair('Ed25519')
    const host = await createHost({ privateKey, clusterKey, listen: [`/memory/compat-${process.pid}-${name}`], mdns: false, transport: 'memory' })
    hosts.push(host)
    // the hook is read when the service is made: set for this one only
    Object.assign(process.env, env)
    let svc: MembershipService
    try {
      svc = new MembershipService({ host, privateKey, clusterId: clusterKey.clusterId, body: body(name) })
    } finally {
      for (const k of Object.keys(env)) Reflect.deleteProperty(process.env, k)
    }
    services.push(svc)
    await svc.start()
    return svc
  }
  const old = await start('old', {})
  old.on('incompatible', (id, compat) => { events.push({ id, compat }) })
  const future = await start('future', { VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: JSON.stringify({ proto: 7, protoMin: 5, hologram: true }) })
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await waitFor(() => old.members.get(future.nodeId)?.state === 'alive', 10_000, 'the old node holds the future one alive')
  // more adverts from the same member: nothing more to report
  for (let i = 0; i < 3; i++) {
    const seq = old.members.get(future.nodeId)!.advert.seq
    future.advertiseNow()
    await waitFor(() => (old.members.get(future.nodeId)?.advert.seq ?? 0) > seq, 10_000, 'a newer advert arrives')
  }
  t.is(events.length, 1, 'reported once')
  t.is(events[0]!.id, future.nodeId)
  t.deepEqual(events[0]!.compat.proto, { min: 5, max: 7 })
  t.false(events[0]!.compat.ok)
  t.regex(events[0]!.compat.reason ?? '', /speaks protocol 5-7, this agent speaks 1-3: the member runs a newer release; update this agent/)
  t.is(old.compatOf(future.nodeId)?.ok, false)
  t.is(old.compatOf(old.nodeId)?.ok, true)
  t.is(old.members.get(future.nodeId)?.state, 'alive', 'still a member')
})
