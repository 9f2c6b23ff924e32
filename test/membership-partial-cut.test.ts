// A partial partition in one process: three membership services over the in-memory
// transport, and the network between a and c cut (their hosts refuse each other and
// hang up), while b reaches both. a and c lose each other's heartbeats, but b vouches
// for each (indirect-probe.ts), so nobody is suspected, let alone declared dead:
// before, the suspicions' refutations came back late through b, and a and c were
// declared dead for seconds at a time, on b too. A real death (c stops) is still
// found and agreed, since no helper reaches c then.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { createHost, type VgridHost } from '../protocol/host.ts'
import { generateClusterKey } from '../protocol/cluster-key.ts'
import { MembershipService } from '../protocol/membership-service.ts'
import { IndirectProbe, indirectProbeProtocol, probeHelpers } from '../protocol/indirect-probe.ts'
import type { Member, MemberTable, Transition } from '../protocol/membership.ts'
import type { AdvertBody } from '../protocol/own-advert.ts'
import { waitFor } from './helpers/agent-process.ts'
import { outOfReachProblems } from '../node/membership/views.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const body = (name: string) => (): AdvertBody => ({
  name, addrs: [], capacity: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, load: [0, 0, 0], version: '9.0.0', labels: {}, wireguard: null
})

test('probeHelpers: alive connected members only, never self or the target, at most k, distinct', t => {
  const m = (state: Member['state']): Member => ({ state } as unknown as Member)
  const table: MemberTable = new Map([['a', m('alive')], ['b', m('alive')], ['c', m('alive')], ['d', m('suspect')], ['e', m('alive')], ['f', m('dead')]])
  const all = probeHelpers(table, ['a', 'b', 'c', 'd', 'e', 'f', 'x', 'b'], 'a', 'c', 10, () => 0)
  t.deepEqual(all.sort(), ['b', 'e'], 'not self, not the target, not doubted or unknown members, no duplicates')
  t.is(probeHelpers(table, ['b', 'e'], 'a', 'c', 1, () => 0.99).length, 1)
  t.deepEqual(probeHelpers(table, ['c'], 'a', 'c', 3, Math.random), [], 'connected to the target alone: nobody to ask')
})

test.serial('a cut between two members that a third reaches suspects nobody; a real death is still found', async t => {
  const clusterKey = generateClusterKey()
  const names = ['a', 'b', 'c']
  const cut = new Set<string>()
  const hosts: VgridHost[] = []
  const services: MembershipService[] = []
  t.teardown(async () => {
    await Promise.all(services.map(async s => { await s.stop({ graceful: false }) }))
    await Promise.all(hosts.map(async h => { await h.stop() }))
  })
  const keys = await Promise.all(names.map(async () => await generateKeyPair('Ed25519')))
  const ids = keys.map(k => peerIdFromPrivateKey(k).toString())
  const pair = (x: string, y: string): string => [x, y].sort().join(' ')
  for (const [i, name] of names.entries()) {
    const self = ids[i]!
    const host = await createHost({ privateKey: keys[i]!, clusterKey, listen: [`/memory/pcut-${process.pid}-${name}`], mdns: false, transport: 'memory', refuse: peer => cut.has(pair(self, peer)) })
    hosts.push(host)
    const svc = new MembershipService({ host, privateKey: keys[i]!, clusterId: clusterKey.clusterId, body: body(name) })
    services.push(svc)
    await svc.start()
  }
  const [a, b, c] = services as [MembershipService, MembershipService, MembershipService]
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await hosts[2]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await hosts[0]!.dial(hosts[2]!.getMultiaddrs()[0]!)
  const allAlive = (): boolean => services.every(s => services.every(o => o === s || s.members.get(o.nodeId)?.state === 'alive'))
  await waitFor(allAlive, 15_000, 'every member alive on every node')
  // past the first heartbeats, so that every watch runs
  await sleep(1500)

  // the protocol itself: a member asked about itself answers at once; about another,
  // it reaches that one; about something that is no member (or no peer id), no
  const asker = new IndirectProbe({ host: hosts[0]!, protocol: indirectProbeProtocol(clusterKey.clusterId), timeoutMs: 1000, isMember: () => true })
  t.deepEqual(await asker.ask([b.nodeId], b.nodeId), { reachedBy: b.nodeId, answered: 1 })
  t.deepEqual(await asker.ask([b.nodeId], c.nodeId), { reachedBy: b.nodeId, answered: 1 })
  t.deepEqual(await asker.ask([b.nodeId], ids[0]!.slice(0, -3) + 'xyz'), { reachedBy: null, answered: 1 }, 'not a member: b does not dial it')
  t.deepEqual(await asker.ask([b.nodeId], 'garbage \u0000'), { reachedBy: null, answered: 1 })
  t.deepEqual(await asker.ask([], c.nodeId), { reachedBy: null, answered: 0 })

  const doubts: string[] = []
  const vouched: string[] = []
  const nameOf = (id: string): string => names[ids.indexOf(id)] ?? id
  for (const [i, s] of services.entries()) {
    s.on('transition', (tr: Transition) => { if (tr.nodeId !== s.nodeId && tr.to !== 'alive') doubts.push(`${names[i]!}: ${nameOf(tr.nodeId)} ${tr.from} -> ${tr.to}`) })
    s.on('vouched', (target, by, why) => { vouched.push(`${names[i]!}: ${nameOf(target)} (${why}) through ${nameOf(by)}`) })
  }
  // the cut: a and c refuse each other from now on and hang up
  cut.add(pair(a.nodeId, c.nodeId))
  await hosts[0]!.hangUp(peerIdFromString(c.nodeId))
  await hosts[2]!.hangUp(peerIdFromString(a.nodeId)).catch(() => {})
  // several times the dead timeout (1.5 s silence + 2.5 s suspicion)
  await sleep(9000)
  t.is(hosts[0]!.getConnections(peerIdFromString(c.nodeId)).length, 0, 'a and c stay cut from each other')
  t.deepEqual(doubts, [], 'nobody suspected or declared dead while b reaches everyone')
  t.true(allAlive(), 'every member alive on every node')
  t.true(vouched.length > 0, 'a or c found the other silent and had b vouch for it')
  t.log(`vouched: ${vouched.join('; ')}`)
  // each side holds the other out of reach, as health says (members-out-of-reach)
  t.is(a.outOfReach().get(c.nodeId)?.by, b.nodeId)
  t.is(c.outOfReach().get(a.nodeId)?.by, b.nodeId)
  t.is(b.outOfReach().size, 0, 'b reaches everyone')
  const [problem] = outOfReachProblems(a.outOfReach(), a.members)
  t.regex(problem?.message ?? '', /^this server cannot reach c \(for \d+ s; b reaches it\) on the network, though the grid can: a partial partition/)
  t.is(problem?.cause, 'members-out-of-reach')

  // healed: each asks the other directly now and then, and finds it in reach (no
  // heartbeat or new connection need come by itself: here nothing dials them)
  cut.clear()
  await waitFor(() => a.outOfReach().size === 0 && c.outOfReach().size === 0, 15_000, 'a and c reach each other again')
  t.deepEqual(outOfReachProblems(a.outOfReach(), a.members), [])

  // c really goes away: b and a find it dead (nobody reaches it to vouch)
  const stopped = Date.now()
  await services[2]!.stop({ graceful: false })
  await hosts[2]!.stop()
  await waitFor(() => a.members.get(c.nodeId)?.state === 'dead' && b.members.get(c.nodeId)?.state === 'dead', 20_000, 'a and b hold c dead')
  t.log(`c dead on a and b ${Date.now() - stopped} ms after it stopped`)
  t.is(a.members.get(b.nodeId)?.state, 'alive')
})
