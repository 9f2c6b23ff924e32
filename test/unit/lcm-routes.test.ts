// The LCM's HTTP routes over a real cluster document (crdt Replica), with the API's
// own error mapping: bad link requests get a clear 4xx, good ones are stored and
// listed, removal works, /v1/net answers.
import test from 'ava'
import Fastify from 'fastify'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import { errorBody, toApiError } from '../../node/api/errors.ts'
import { lcmRoutes } from '../../node/lcm/routes.ts'
import { overlayPrefix } from '../../node/lcm/overlay.ts'
import type { LcmState } from '../../node/lcm/service.ts'
import { cutOffHere, whyNoTunnel, type LinkView } from '../../node/lcm/links.ts'
import type { LcmView } from '../../node/lcm/types.ts'
import type { TunnelDown } from '../../node/lcm/tunnel-health.ts'
import { countsOf, parseCountsAnswer, parseCountsRequest } from '../../node/lcm/link-counts.ts'
import type { Member, MemberTable } from '../../protocol/membership.ts'

/** `gate`: writes wait for it before they run, as a real write waits for the one before it */
function app (gate: Promise<void> = Promise.resolve(), over: { last?: LcmView['last'], members?: MemberTable, unreachedBy?: (node: string) => string | undefined, drops?: Array<{ src: string, dst: string, packets: number, bytes: number, spoofed?: number }>, askCounts?: LcmView['askCounts'], overlayError?: string, tunnelsDown?: TunnelDown[] } = {}): { app: ReturnType<typeof Fastify>, replica: Replica } {
  const replica = Replica.create({ clusterId: 'c', nodeId: 'n1', migrations: MIGRATIONS })
  const state: LcmState = { read: () => replica.read(), write: async fn => { await gate; return replica.change(fn).result }, on: () => {}, off: () => {} }
  const spec = { driver: 'process' as const, cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} }
  replica.change(w => {
    w.put('vms', { id: 'web', name: 'web', app: null, desired: 'running', spec: { ...spec, outputs: ['db'] } })
    w.put('vms', { id: 'db', name: 'db', app: null, desired: 'running', spec: { ...spec, inputs: ['in'] } })
    w.put('vms', { id: 'db2', name: 'db2', app: null, desired: 'running', spec: { ...spec, inputs: ['in'] } })
    w.put('vms', { id: 'bare', name: 'bare', app: null, desired: 'running', spec })
  })
  const lcm = {
    status: () => ({ ok: over.overlayError == null, error: over.overlayError ?? null, errorSince: null, applyError: null, applyErrorSince: null, routeConflict: null, routeConflictSince: null, backend: 'userspace' as const, interface: 'vgx', publicKey: null, endpoint: null, address: null, prefix: overlayPrefix('c'), ...(over.tunnelsDown != null ? { tunnelsDown: over.tunnelsDown } : {}) }),
    peerStates: async () => [],
    counters: async () => ({ counters: new Map(), drops: over.drops ?? [] }),
    drops: async () => [],
    schedule: () => {},
    settled: async () => {},
    state,
    last: over.last ?? null,
    members: over.members ?? new Map(),
    unreachedBy: over.unreachedBy,
    selfId: 'n1',
    table: 'vgrid_lcm_x',
    linkCounts: async (ids: readonly string[]) => countsOf(ids, new Map(replica.read().list('connections').map(l => [l.id, l])), over.last ?? null, { counters: new Map(), drops: over.drops ?? [] }),
    askCounts: over.askCounts,
    // with another member alive a create waits this long for others' writes of the same moment (lcm-link-race.test.ts)
    linkSettleMs: 10
  }
  const a = Fastify()
  a.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send(errorBody(e.code, e.message)) })
  lcmRoutes(lcm)(a)
  return { app: a, replica }
}

test('POST /v1/links: bad input gets a 4xx naming what is wrong; a good link is stored, listed and removed', async t => {
  const { app: a, replica } = app()
  const post = async (body: unknown): Promise<{ status: number, json: { error?: { code: string, message: string }, id?: string } }> => {
    const r = await a.inject({ method: 'POST', url: '/v1/links', payload: body as object })
    return { status: r.statusCode, json: r.json() }
  }
  const good = { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 }
  for (const [body, status, msg] of [
    [{ ...good, from: 'ghost.db' }, 404, /no VM "ghost"/],
    [{ ...good, to: 'db.nope' }, 404, /no input terminal "nope" \(its inputs: in\)/],
    [{ ...good, from: 'web.in' }, 404, /VM "web" has no output terminal "in"/],
    [{ ...good, to: 'bare.in' }, 404, /VM "bare" has no input terminal "in" \(it has no inputs: a VM's terminals are declared when it is created, with vgrid vm create --input NAME \(the API's "inputs"\), or added later with vgrid vm update bare --input NAME\)$/],
    [{ ...good, from: 'db.in', to: 'web.db' }, 404, /no output terminal "in"/],
    [{ ...good, protocol: 'any' }, 400, /protocol: "any" is not tcp or udp/],
    [{ ...good, port: undefined }, 400, /port/],
    [{ ...good, to: 'db.9x' }, 400, /not a terminal name/],
    [{ ...good, port: 0 }, 400, /port/],
    [{ ...good, port: 65536 }, 400, /port/],
    [{ ...good, protocol: 'icmp' }, 400, /protocol: "icmp" is not tcp or udp/],
    [[1, 2], 400, /body/]
  ] as const) {
    const r = await post(body)
    t.is(r.status, status, JSON.stringify(body))
    t.regex(r.json.error?.message ?? '', msg)
  }
  const made = await post(good)
  t.is(made.status, 201)
  const dup = await post(good)
  t.is(dup.status, 409)
  t.is(dup.json.error?.code, 'duplicate')
  const taken = await post({ ...good, port: 5433 })
  t.is(taken.status, 409)
  t.is(taken.json.error?.code, 'output_connected')

  const list = (await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: Array<{ id: string, from: { vm: string }, skipped: string | null }> }
  t.is(list.links.length, 1)
  t.is(list.links[0]!.id, made.json.id!)
  t.is((await a.inject({ method: 'GET', url: `/v1/links/${made.json.id!}` })).statusCode, 200)
  // an end whose VM is stopped says so (a link to it carries nothing now)
  type Ends = { from: { down: string | null }, to: { down: string | null } }
  t.like((await a.inject({ method: 'GET', url: `/v1/links/${made.json.id!}` })).json() as Ends, { from: { down: null }, to: { down: null } })
  replica.change(w => {
    w.put('leases', { vm: 'db', holder: 'n2', epoch: 1, cpu: 0.1, memoryBytes: 1 << 20, status: 'running', log: [] })
    w.update('vms', 'db', { desired: 'stopped' })
  })
  t.like((await a.inject({ method: 'GET', url: `/v1/links/${made.json.id!}` })).json() as Ends, { from: { down: null }, to: { down: 'stopping' } }, 'running, asked to stop')
  // a VM made stopped never ran: no lease, nothing being stopped (it said "stopping" for good)
  replica.change(w => { w.update('vms', 'web', { desired: 'stopped' }) })
  t.like((await a.inject({ method: 'GET', url: `/v1/links/${made.json.id!}` })).json() as Ends, { from: { down: 'stopped' }, to: { down: 'stopping' } }, 'never placed')
  t.is((await a.inject({ method: 'DELETE', url: `/v1/links/${made.json.id!}` })).statusCode, 200)
  t.is((await a.inject({ method: 'DELETE', url: `/v1/links/${made.json.id!}` })).statusCode, 404)
  t.is((await a.inject({ method: 'GET', url: '/v1/links/none' })).statusCode, 404)
})

test('two creates from one output at once: the second is checked on the document as its write finds it, and refused', async t => {
  let open = (): void => {}
  const { app: a, replica } = app(new Promise<void>(resolve => { open = resolve }))
  const post = async (to: string): Promise<number> => (await a.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to, protocol: 'tcp', port: 5432 } })).statusCode
  // both requests are read and parsed before either write runs
  const both = Promise.all([post('db.in'), post('db2.in')])
  await new Promise(resolve => setTimeout(resolve, 50))
  open()
  t.deepEqual((await both).sort(), [201, 409])
  t.is(replica.read().list('connections').length, 1)
})

test('GET /v1/net answers the status, peers, rules and drops', async t => {
  const { app: a } = app()
  const r = await a.inject({ method: 'GET', url: '/v1/net' })
  t.is(r.statusCode, 200)
  const j = r.json() as { status: { interface: string }, peers: unknown[], rules: { table: string } }
  t.is(j.status.interface, 'vgx')
  t.deepEqual(j.peers, [])
  t.is(j.rules.table, 'vgrid_lcm_x')
})

test('GET /v1/links: a link to a node this one has no tunnel to says which node and why (not "local"); one between two other nodes is not this node\'s', async t => {
  const place = (vm: string, node: string, address: string): unknown => ({ vm, node, address, inputs: null, outputs: null })
  const member = (id: string, state: string): Member => ({ nodeId: id, state, advert: { name: id.toUpperCase(), wireguard: { publicKey: 'k', endpoint: '10.0.0.2:51820' } } }) as unknown as Member
  const last = (vms: unknown[]): LcmView['last'] => ({ plan: { peers: new Map(), tunnels: [], rejected: [] }, rules: { flows: [], skipped: [] }, addr: { vms, vmAlloc: new Map(), nodeAddr: new Map() }, links: [] }) as unknown as LcmView['last']
  // web here, db on n2, whose agent stopped for a restart (left): no tunnel to it (a tester saw "local")
  const { app: a } = app(undefined, { last: last([place('web', 'n1', '10.9.0.2'), place('db', 'n2', '10.9.0.3')]), members: new Map([['n2', member('n2', 'left')]]) })
  const made = await a.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })
  t.is(made.statusCode, 201)
  const [view] = ((await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  t.is(view!.path, 'no-tunnel')
  t.like(view!.noTunnel, { node: 'n2', name: 'N2' })
  t.regex(view!.noTunnel!.why, /its agent is away \(left/)
  t.is(view!.tunnel, null)
  // removed while n2, where db runs, is away: said, as its rules pass the traffic until it runs again (bb27)
  const rm = await a.inject({ method: 'DELETE', url: `/v1/links/${(made.json() as { id: string }).id}` })
  t.is(rm.statusCode, 200)
  t.deepEqual((rm.json() as { notApplied: unknown }).notApplied, [{ node: 'n2', name: 'N2', state: 'left' }])
  // dead, or alive with no WireGuard in its advert
  t.regex(whyNoTunnel({ state: 'dead', advert: {} }), /dead/)
  // a node that hears no majority says it may be the one cut off (bb44); one dead of three is just dead
  const cut = cutOffHere([{ state: 'dead' }, { state: 'dead' }, { state: 'alive' }, { state: 'left' }])
  t.is(cut, ' (this node hears 1 of the 3 other members, no majority: it may be the one cut off)')
  t.is(whyNoTunnel({ state: 'dead', advert: {} }, undefined, cut), `its agent is dead as this node sees it${cut}`)
  t.is(cutOffHere([{ state: 'dead' }, { state: 'alive' }]), '')
  t.is(cutOffHere([{ state: 'dead' }, { state: 'dead' }, { state: 'alive' }, { state: 'suspect' }]), '')
  t.is(cutOffHere([]), '')
  t.regex(whyNoTunnel({ state: 'alive', advert: { wireguard: null } }), /advertises no WireGuard/)
  t.regex(whyNoTunnel(undefined), /not in sight/)
  t.regex(whyNoTunnel({ state: 'alive', advert: { wireguard: {} } }, 'public key "x" is not a WireGuard key'), /refused: public key/)

  // drops between the ends count, forged ones not: they carried an end's address but came from another VM (a tester)
  const counted = app(undefined, { last: last([place('web', 'n1', '10.9.0.2'), place('db', 'n2', '10.9.0.3')]), members: new Map([['n2', member('n2', 'left')]]), drops: [{ src: '10.9.0.2', dst: '10.9.0.3', packets: 5, bytes: 300, spoofed: 3 }] })
  t.is((await counted.app.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  t.is(((await counted.app.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links[0]!.drops, 2)

  // both ends on other nodes: nothing of this node's
  const other = app(undefined, { last: last([place('web', 'n2', '10.9.0.2'), place('db', 'n3', '10.9.0.3')]) })
  t.is((await other.app.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  const [elsewhere] = ((await other.app.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  t.is(elsewhere!.path, 'elsewhere')
  t.is(elsewhere!.noTunnel, null)
})

test('GET /v1/links: a tunnel to a node membership finds out of reach here (a partial partition) is down at once, saying so, not half a minute later when its handshakes go stale', async t => {
  const vms = [{ vm: 'web', node: 'n1', address: '10.9.0.2', inputs: null, outputs: null }, { vm: 'db', node: 'n2', address: '10.9.0.3', inputs: null, outputs: null }]
  const last = { plan: { peers: new Map(), tunnels: [{ node: 'n2', publicKey: 'k', endpoint: '10.0.0.2:51820', address: '10.9.255.2' }], rejected: [] }, rules: { flows: [], skipped: [] }, addr: { vms, vmAlloc: new Map(), nodeAddr: new Map() }, links: [] } as unknown as LcmView['last']
  const member = (id: string): Member => ({ nodeId: id, state: 'alive', advert: { name: id.toUpperCase(), wireguard: { publicKey: 'k', endpoint: '10.0.0.2:51820' } } }) as unknown as Member
  const { app: a } = app(undefined, { last, members: new Map([['n2', member('n2')], ['n3', member('n3')]]), unreachedBy: n => n === 'n2' ? 'n3' : undefined })
  t.is((await a.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  const [view] = ((await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  t.is(view!.path, 'tunnel')
  t.is(view!.tunnel?.down, 'this node does not reach N2 on the network while N3 does (a partial partition)')
  // half a minute on, the tunnel's health says it too, with less: the cut's reason stays (bb42)
  const health: TunnelDown[] = []
  let cut = true
  const { app: later } = app(undefined, { last, members: new Map([['n2', member('n2')], ['n3', member('n3')]]), unreachedBy: n => cut && n === 'n2' ? 'n3' : undefined, tunnelsDown: health })
  t.is((await later.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  const linksNow = async (): Promise<LinkView[]> => ((await later.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  health.push({ node: 'n2', name: 'N2', links: [(await linksNow())[0]!.id], reason: 'nothing received through the tunnel for 31 s (a live peer sends at least every 10 s)', latestHandshake: null, silentS: 31, since: new Date().toISOString(), message: '' })
  t.is((await linksNow())[0]!.tunnel?.down, 'this node does not reach N2 on the network while N3 does (a partial partition)')
  // membership reaching it again, the tunnel's own word until its handshakes are fresh
  cut = false
  t.is((await linksNow())[0]!.tunnel?.down, 'nothing received through the tunnel for 31 s (a live peer sends at least every 10 s)')
  // one VM's links only (vm show)
  const of = async (q: string): Promise<{ status: number, ids: string[] }> => { const r = await later.inject({ method: 'GET', url: `/v1/links${q}` }); return { status: r.statusCode, ids: r.statusCode === 200 ? (r.json() as { links: LinkView[] }).links.map(l => l.id) : [] } }
  t.is((await of('?vm=db')).ids.length, 1)
  t.is((await of('?vm=web')).ids.length, 1)
  t.deepEqual(await of('?vm=bare'), { status: 200, ids: [] })
  t.is((await of('?vm=a&vm=b')).status, 400)
})

test('GET /v1/links: on a node whose own overlay is down, a link\'s tunnel is down saying why (it showed up while WireGuard could not start)', async t => {
  const vms = [{ vm: 'web', node: 'n1', address: '10.9.0.2', inputs: null, outputs: null }, { vm: 'db', node: 'n2', address: '10.9.0.3', inputs: null, outputs: null }]
  const last = { plan: { peers: new Map(), tunnels: [{ node: 'n2', publicKey: 'k', endpoint: '10.0.0.2:51820', address: '10.9.255.2' }], rejected: [] }, rules: { flows: [], skipped: [] }, addr: { vms, vmAlloc: new Map(), nodeAddr: new Map() }, links: [] } as unknown as LcmView['last']
  const member = (id: string): Member => ({ nodeId: id, state: 'alive', advert: { name: id.toUpperCase(), wireguard: { publicKey: 'k', endpoint: '10.0.0.2:51820' } } }) as unknown as Member
  const error = 'WireGuard cannot start: wg addconf: Unable to modify interface: Address already in use'
  const { app: a } = app(undefined, { last, members: new Map([['n2', member('n2')]]), overlayError: error })
  t.is((await a.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  const [view] = ((await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links
  t.is(view!.path, 'tunnel')
  t.is(view!.tunnel?.down, `this node's overlay is down: ${error}`)
  // and with the overlay up, the same link's tunnel is not down
  const { app: b } = app(undefined, { last, members: new Map([['n2', member('n2')]]) })
  t.is((await b.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  t.is(((await b.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links[0]!.tunnel?.down, null)
})

test('GET /v1/links: a link\'s counts come from the node its FROM end runs on, asked when that is another; one that cannot be asked is said so, never shown as zero traffic', async t => {
  const place = (vm: string, node: string, address: string): unknown => ({ vm, node, address, inputs: null, outputs: null })
  const member = (id: string, state: string): Member => ({ nodeId: id, state, advert: { name: `host-${id}` } }) as unknown as Member
  const last = (vms: unknown[]): LcmView['last'] => ({ plan: { peers: new Map(), tunnels: [], rejected: [] }, rules: { flows: [], skipped: [] }, addr: { vms, vmAlloc: new Map(), nodeAddr: new Map() }, links: [] }) as unknown as LcmView['last']
  const asked: Array<[string, readonly string[]]> = []
  const vms = [place('web', 'n2', '10.9.0.2'), place('db', 'n3', '10.9.0.3')]
  const linkOf = async (over: Parameters<typeof app>[1]): Promise<LinkView> => {
    const { app: a } = app(undefined, { last: last(vms), ...over })
    t.is((await a.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
    return ((await a.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links[0]!
  }
  // asked of n2 (web's node), not n3 and not this node (n1), which holds neither end
  const alive = new Map([['n2', member('n2', 'alive')], ['n3', member('n3', 'alive')]])
  const got = await linkOf({ members: alive, askCounts: async (node, ids) => { asked.push([node, ids]); return new Map(ids.map(id => [id, { packets: 42, drops: 1 }])) } })
  t.true(asked.length > 0 && asked.every(([n, ids]) => n === 'n2' && ids.length === 1), JSON.stringify(asked))
  t.like(got, { packets: 42, drops: 1, counts: { node: 'n2', name: 'host-n2', error: null, tunnelDown: null } })
  // n2 says its tunnel for the link is down: shown here too, where neither end runs
  const down = await linkOf({ members: alive, askCounts: async (_node, ids) => new Map(ids.map(id => [id, { packets: 42, drops: 0, down: 'no WireGuard handshake for 200 s' }])) })
  t.like(down, { path: 'elsewhere', tunnel: null, counts: { node: 'n2', tunnelDown: 'no WireGuard handshake for 200 s' } })
  // it does not answer: why, and zeros that the CLI shows as unknown
  const silent = await linkOf({ members: alive, askCounts: async () => { throw new Error('The operation was aborted due to timeout') } })
  t.like(silent, { packets: 0, drops: 0, counts: { node: 'n2', error: 'counted on host-n2, which did not answer: The operation was aborted due to timeout' } })
  // dead, or out of reach: not asked at all
  asked.length = 0
  const dead = await linkOf({ members: new Map([['n2', member('n2', 'dead')]]), askCounts: async (node, ids) => { asked.push([node, ids]); return new Map() } })
  // the only other member dead: this one sees no majority, and says it may be the one cut off (bb44)
  t.is(dead.counts.error, 'counted on host-n2, which is dead (this node hears 0 of the 1 other members, no majority: it may be the one cut off)')
  const cut = await linkOf({ members: alive, unreachedBy: n => n === 'n2' ? 'n3' : undefined, askCounts: async (node, ids) => { asked.push([node, ids]); return new Map() } })
  t.regex(cut.counts.error!, /does not reach .*partial partition/)
  t.deepEqual(asked, [])
  // an answer without the link (an agent of an earlier release answers {error})
  t.regex((await linkOf({ members: alive, askCounts: async () => new Map() })).counts.error!, /did not answer for it/)
  // FROM end not placed: nothing counted anywhere, nothing asked
  const { app: u } = app(undefined, { last: last([place('db', 'n3', '10.9.0.3')]), members: alive, askCounts: async (node, ids) => { asked.push([node, ids]); return new Map() } })
  t.is((await u.inject({ method: 'POST', url: '/v1/links', payload: { from: 'web.db', to: 'db.in', protocol: 'tcp', port: 5432 } })).statusCode, 201)
  t.like(((await u.inject({ method: 'GET', url: '/v1/links' })).json() as { links: LinkView[] }).links[0], { packets: 0, counts: { node: null, error: null } })
  t.deepEqual(asked, [])
})

test('link counts requests and answers: junk is refused or left out', t => {
  t.deepEqual(parseCountsRequest({ links: ['link-1', 'link-2'] }), ['link-1', 'link-2'])
  for (const bad of [null, {}, { links: 'x' }, { links: [1] }, { links: [''] }, { links: Array.from({ length: 5000 }, (_, i) => `l${i}`) }]) {
    t.throws(() => parseCountsRequest(bad), { message: /a counts request is \{"links": \[ids\]\}/ })
  }
  t.deepEqual([...parseCountsAnswer({ a: { packets: 3, drops: 0 }, b: { packets: -1, drops: 0 }, c: { packets: 1.5, drops: 0 }, d: 'x', e: { packets: 1 } })], [['a', { packets: 3, drops: 0 }]])
  // a tunnel's down reason: kept when a string, left out when anything else
  t.deepEqual([...parseCountsAnswer({ a: { packets: 3, drops: 0, down: 'no handshake' }, b: { packets: 1, drops: 0, down: 7 }, c: { packets: 1, drops: 0, down: '' } })],
    [['a', { packets: 3, drops: 0, down: 'no handshake' }], ['b', { packets: 1, drops: 0 }], ['c', { packets: 1, drops: 0 }]])
  t.throws(() => parseCountsAnswer([]), { message: /a counts answer is a JSON object/ })
  t.throws(() => parseCountsAnswer({ error: 'a counts request is ...' }), { message: 'a counts request is ...' })
  // counted here: the flow's counter, and drops between the two ends that no one forged
  const links = new Map([['l1', { from: { vm: 'web' }, to: { vm: 'db' } }]])
  const last = { rules: { flows: [{ link: 'l1', counter: 'c1' }] }, addr: { vms: [{ vm: 'web', address: '10.9.0.2' }, { vm: 'db', address: '10.9.0.3' }] } } as unknown as Parameters<typeof countsOf>[2]
  const counters = { counters: new Map([['c1', { packets: 9, bytes: 900 }]]), drops: [{ src: '10.9.0.3', dst: '10.9.0.2', packets: 4, bytes: 0, spoofed: 1 }, { src: '10.9.0.9', dst: '10.9.0.2', packets: 7, bytes: 0 }] }
  t.deepEqual([...countsOf(['l1', 'nope'], links, last, counters)], [['l1', { packets: 9, drops: 3 }], ['nope', { packets: 0, drops: 0 }]])
})
