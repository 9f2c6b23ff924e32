// A tunnel this node's links need that has gone without WireGuard handshakes (a partial
// partition: membership still alive through a third node, nothing passes) is a health
// problem naming the peer node and the links, shown on the links' views too, and
// clears once a handshake is seen again (tunnel-health.ts, health.ts, routes.ts, cli.ts).
import test from 'ava'
import Fastify from 'fastify'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import type { Member } from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'
import { KEEPALIVE_S, REJECT_AFTER_TIME, quietAfterS, staleAfterS, tunnelsDown, type PeerHandshake, type PlacedLink } from '../../node/lcm/tunnel-health.ts'
import { lcmProblems } from '../../node/lcm/health.ts'
import { lcmRoutes } from '../../node/lcm/routes.ts'
import { formatNet } from '../../node/lcm/cli.ts'
import { overlayPrefix } from '../../node/lcm/overlay.ts'
import type { LinkView } from '../../node/lcm/links.ts'
import type { LcmState, LcmStatus } from '../../node/lcm/types.ts'
import { idleLcm } from '../helpers/idle-lcm.ts'

const NOW = 1_700_000_000_000
const S = 1000
const link = (id: string, from: [string, string | null], to: [string, string | null]): PlacedLink =>
  ({ id, from: { vm: from[0], terminal: 'out', node: from[1] }, to: { vm: to[0], terminal: 'in', node: to[1] } })
// this node is n3: web2 runs here, guest on n2, api on n1; n4 runs only VMs of n1's links
const links = [
  link('link-b', ['web2', 'n3'], ['guest', 'n2']),
  link('link-a', ['guest', 'n2'], ['web2', 'n3']),
  link('link-c', ['web2', 'n3'], ['api', 'n1']),
  link('link-d', ['api', 'n1'], ['other', 'n4']),
  link('link-e', ['web2', 'n3'], ['nowhere', null])
]
const peer = (node: string, agoS: number | null, addedAgoS: number | null = 1000): PeerHandshake =>
  ({ node, name: `host${node.slice(1)}`, latestHandshake: agoS == null ? 0 : NOW - agoS * S, addedAt: addedAgoS == null ? null : NOW - addedAgoS * S })

test('the bound: no shorter than REJECT_AFTER_TIME, past a healthy idle tunnel\'s rekey with the keepalive; none without a keepalive', t => {
  t.is(staleAfterS(25), REJECT_AFTER_TIME, 'the agents\' keepalive: 180 s')
  t.is(staleAfterS(1), 180)
  t.true(staleAfterS(25)! >= 120 + 25 + 3 * 5, 'a rekey on the next keepalive, with three lost handshakes, stays under it')
  t.is(staleAfterS(60), 120 + 60 + 18, 'a long keepalive moves it out')
  t.is(staleAfterS(0), null)
  t.deepEqual(tunnelsDown('n3', [peer('n2', 1000)], links, NOW, 0), [], 'without a keepalive nothing is judged')
})

test('a needed peer with no handshake past the bound is down, naming the node and its links; an idle healthy one is not', t => {
  // a healthy idle tunnel rekeys every 120 s + keepalive: 150 s old is normal
  t.deepEqual(tunnelsDown('n3', [peer('n2', 150), peer('n1', 10)], links, NOW, 25), [])
  t.deepEqual(tunnelsDown('n3', [peer('n2', 180)], links, NOW, 25), [], 'at the bound: not yet')
  const down = tunnelsDown('n3', [peer('n2', 244), peer('n1', 10)], links, NOW, 25)
  t.is(down.length, 1)
  const d = down[0]!
  t.is(d.node, 'n2')
  t.is(d.name, 'host2')
  t.deepEqual(d.links, ['link-a', 'link-b'], 'both links between here and n2, sorted, and no other')
  t.is(d.silentS, 244)
  t.is(d.latestHandshake, new Date(NOW - 244 * S).toISOString())
  t.is(d.since, new Date(NOW - 244 * S + 180 * S).toISOString(), 'a problem since it crossed the bound')
  t.is(d.reason, 'no WireGuard handshake for 244 s')
  t.regex(d.message, /^tunnel to host2 is down: no WireGuard handshake for 244 s \(a live one renews within 180 s\); nothing passes on 2 links link-a \(guest\.out -> web2\.in\), link-b \(web2\.out -> guest\.in\)/)
  // a handshake again: gone
  t.deepEqual(tunnelsDown('n3', [peer('n2', 2), peer('n1', 10)], links, NOW, 25), [])
})

test('a needed peer from which nothing came for two keepalives and slack is down before its handshake\'s bound (a partial partition shorter than 180 s was never reported)', t => {
  t.is(quietAfterS(25), 62)
  t.is(quietAfterS(KEEPALIVE_S), 32, 'the agents\' keepalive: down after about half a minute')
  t.is(staleAfterS(KEEPALIVE_S), REJECT_AFTER_TIME)
  t.is(quietAfterS(0), null)
  const quiet = (node: string, handshakeAgoS: number, rxAgoS: number): PeerHandshake => ({ ...peer(node, handshakeAgoS), rxChangedAt: NOW - rxAgoS * S })
  t.deepEqual(tunnelsDown('n3', [quiet('n2', 100, 25), quiet('n1', 10, 5)], links, NOW, 25), [], 'keepalives arrive: an idle live tunnel')
  t.deepEqual(tunnelsDown('n3', [quiet('n2', 100, 62)], links, NOW, 25), [], 'at the bound: not yet')
  const [d] = tunnelsDown('n3', [quiet('n2', 100, 70)], links, NOW, 25)
  t.is(d?.node, 'n2')
  t.is(d?.silentS, 70)
  t.is(d?.since, new Date(NOW - 70 * S + 62 * S).toISOString())
  t.is(d?.reason, 'nothing received through the tunnel for 70 s (a live peer sends at least every 25 s)')
  t.regex(d?.message ?? '', /^tunnel to host2 is down: nothing received through the tunnel for 70 s \(a live peer sends at least every 25 s\); nothing passes on 2 links/)
  t.is(tunnelsDown('n3', [quiet('n2', 244, 10)], links, NOW, 25)[0]?.reason, 'no WireGuard handshake for 244 s', 'the handshake rule still holds (keys too old to carry anything)')
  // both rules say down: the reason is the handshake's, the start the quiet one's, which came first (it moved 42 s later)
  const [both] = tunnelsDown('n3', [quiet('n2', 203, 170)], links, NOW, 25)
  t.is(both?.reason, 'no WireGuard handshake for 203 s')
  t.is(both?.since, new Date(NOW - 170 * S + 62 * S).toISOString())
})

test('a peer no link of this node needs is not judged; nor a link between two other nodes', t => {
  t.deepEqual(tunnelsDown('n3', [peer('n4', 5000), peer('n5', null)], links, NOW, 25), [])
  // on n1, n4 is needed (link-d), n2 is not
  const down = tunnelsDown('n1', [peer('n4', 5000), peer('n2', 5000)], links, NOW, 25)
  t.deepEqual(down.map(d => [d.node, d.links]), [['n4', ['link-d']]])
  t.deepEqual(tunnelsDown('n3', [], links, NOW, 25), [], 'no peer at all (WireGuard down: another problem says so)')
})

test('a needed peer that never had a handshake is down once it was added longer ago than the bound', t => {
  t.deepEqual(tunnelsDown('n3', [peer('n2', null, 30)], links, NOW, 25), [], 'just added: the other side may not have added this node yet')
  const [d] = tunnelsDown('n3', [peer('n2', null, 200)], links, NOW, 25)
  t.is(d?.latestHandshake, null)
  t.is(d?.reason, 'no WireGuard handshake since the peer was added 200 s ago')
  t.is(d?.since, new Date(NOW - 200 * S + 180 * S).toISOString())
  t.deepEqual(tunnelsDown('n3', [peer('n2', null, null)], links, NOW, 25), [], 'not added by this run: not judged')
  t.is(tunnelsDown('n3', [{ ...peer('n2', null, 200), name: null }], links, NOW, 25)[0]?.message.startsWith('tunnel to n2 is down'), true, 'the node id when its name is unknown')
})

const status = (over: Partial<LcmStatus> = {}): LcmStatus => ({ ok: true, error: null, errorSince: null, applyError: null, applyErrorSince: null, routeConflict: null, routeConflictSince: null, backend: 'userspace', interface: 'vgx', publicKey: null, endpoint: null, address: null, prefix: overlayPrefix('c'), ...over })

test('health: one tunnel-down problem per down tunnel, with the others as before', t => {
  const down = tunnelsDown('n3', [peer('n2', 244), peer('n1', 500)], links, NOW, 25)
  const problems = lcmProblems(status({ tunnelsDown: down, routeConflict: 'a route', routeConflictSince: 'x' }))
  t.deepEqual(problems.map(p => [p.service, p.cause]), [['lcm', 'overlay-route-conflict'], ['lcm', 'tunnel-down'], ['lcm', 'tunnel-down']])
  t.regex(problems[1]!.message, /tunnel to host1 is down: .*link-c \(web2\.out -> api\.in\)/)
  t.regex(problems[2]!.message, /tunnel to host2 is down: .*link-a .*link-b/)
  t.is(problems[2]!.since, down[1]!.since)
  t.deepEqual(lcmProblems(status()), [], 'none when all is well')
  t.deepEqual(lcmProblems(status({ ok: false, error: 'WireGuard cannot start: x', errorSince: 's' })), [{ service: 'lcm', cause: 'overlay-down', message: 'WireGuard cannot start: x', since: 's' }])
  const text = formatNet({ status: status({ tunnelsDown: down }), peers: [], rules: { table: 't', flows: 0, skipped: [] }, drops: [] })
  t.regex(text, /\ntunnel to host2 is down: no WireGuard handshake for 244 s/, 'vgrid net says so too')
})

test('the links API shows the tunnel of a link as down, with the reason; other links\' tunnels are not', async t => {
  const replica = Replica.create({ clusterId: 'c', nodeId: 'n3', migrations: MIGRATIONS })
  replica.change(w => {
    w.put('connections', { id: 'link-b', app: null, from: { vm: 'web2', terminal: 'g' }, to: { vm: 'guest', terminal: 'http' }, protocol: 'tcp', port: 80 })
    w.put('connections', { id: 'link-c', app: null, from: { vm: 'web3', terminal: 'g' }, to: { vm: 'api', terminal: 'http' }, protocol: 'tcp', port: 80 })
  })
  const state: LcmState = { read: () => replica.read(), write: async fn => replica.change(fn).result, on: () => {}, off: () => {} }
  const down = tunnelsDown('n3', [peer('n2', 244), peer('n1', 5)], [link('link-b', ['web2', 'n3'], ['guest', 'n2']), link('link-c', ['web3', 'n3'], ['api', 'n1'])], NOW, 25)
  const vms = [['web2', 'n3', '100.70.128.1'], ['web3', 'n3', '100.70.128.4'], ['guest', 'n2', '100.70.128.2'], ['api', 'n1', '100.70.128.3']].map(([vm, node, address]) => ({ vm: vm!, node: node!, address: address! }))
  const members = new Map(['n1', 'n2'].map(id => [id, { nodeId: id, state: 'alive', since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 }, advert: { name: `host${id.slice(1)}` } as unknown as Advert } satisfies Member]))
  const lcm = {
    status: () => status({ tunnelsDown: down }),
    ...idleLcm,
    state,
    last: {
      plan: { peers: new Map(), rejected: [], tunnels: [{ node: 'n2', publicKey: 'k2', endpoint: null, address: '100.70.0.2' }, { node: 'n1', publicKey: 'k1', endpoint: null, address: '100.70.0.1' }] },
      rules: { table: 't', flows: [], skipped: [] },
      addr: { vms, vmAlloc: new Map(), nodeAddr: new Map() },
      links: []
    } as unknown as Parameters<typeof lcmRoutes>[0]['last'],
    members,
    selfId: 'n3',
    table: 'vgrid_lcm_x',
    linkCounts: async () => new Map()
  }
  const a = Fastify()
  lcmRoutes(lcm)(a)
  const list = ((await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  const b = list.find(l => l.id === 'link-b')!
  t.deepEqual(b.tunnel, { node: 'n2', name: 'host2', publicKey: 'k2', down: 'no WireGuard handshake for 244 s' })
  t.deepEqual(list.find(l => l.id === 'link-c')!.tunnel, { node: 'n1', name: 'host1', publicKey: 'k1', down: null })
})
