// Names and forgotten members in the membership views.
// A member forgotten with `vgrid node forget` (gone from the roll) and down (dead, left) is neither
// listed nor counted by /v1/nodes and /v1/status, though the gossip table keeps it
// until its forget time (a black-box tester saw it counted dead for minutes).
import test, { type ExecutionContext } from 'ava'
import Fastify, { type FastifyInstance } from 'fastify'
import { expandShortId, memberByName, type Member, type MemberTable } from '../../protocol/membership.ts'
import { MemberDirectory } from '../../node/membership/directory.ts'
import { shortId } from '../../node/cli/format.ts'
import { membershipRoutes, type MembershipRoutesDeps } from '../../node/membership/routes.ts'
import { ClockWatch, awayMembers, restartingMembers, clockOff, deadMembers, duplicateNames, joinUnreached, nodeView, notJoined, offsetText, unheardMembers, UNHEARD_GRACE_MS } from '../../node/membership/views.ts'
import type { NodesView, NodeView, StatusView } from '../../node/api/types.ts'
import { errorBody, toApiError } from '../../node/api/errors.ts'
import { monoNow } from '../../protocol/mono-clock.ts'

const member = (id: string, state: Member['state']): Member => ({
  nodeId: id,
  state,
  since: performance.now(),
  lastSeen: performance.now(),
  version: { incarnation: 1, seq: 1 },
  advert: { v: 1, cluster: 'c', nodeId: id, name: id, incarnation: 1, seq: 1, status: 'alive', addrs: [], capacity: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 1, diskBytes: 1 }, load: [0, 0, 0], version: 't', labels: {}, wireguard: null, sig: '' }
} as unknown as Member)

/** the membership routes of node `a` over `members`, with `deps` besides (the roll's views) */
function routesOver (t: ExecutionContext, members: MemberTable, deps: Partial<MembershipRoutesDeps>): FastifyInstance {
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send(errorBody(e.code, e.message)) })
  membershipRoutes({
    self: () => ({ id: 'a', name: 'a', version: 't', cluster: 'c', addrs: [] }),
    directory: { members, find: (x: string) => members.get(x) },
    labels: { labelsOf: () => ({}) },
    compat: () => undefined,
    clock: () => undefined,
    health: async () => [],
    token: () => 't',
    ...deps
  } as unknown as MembershipRoutesDeps)(app)
  t.teardown(async () => { await app.close() })
  return app
}

test('a dead member gone from the roll is not listed nor counted; a dead one still in it is', async t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'dead')], ['c', member('c', 'dead')], ['d', member('d', 'left')]])
  const roll = new Set(['a', 'c', 'd'])
  const app = routesOver(t, members, { forgotten: (id: string) => !roll.has(id) })
  const nodes = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json<{ nodes: NodeView[] }>().nodes
  t.deepEqual(nodes.map(n => n.name), ['a', 'c', 'd'])
  const status = (await app.inject({ method: 'GET', url: '/v1/status' })).json<StatusView>()
  t.like(status.members, { alive: 1, dead: 1, left: 1 })
})

test('a member that left and is gone from the roll (a leave, or forgotten after a graceful stop) is not listed nor counted either; an alive one is (bb36: a reinstalled server\'s old identity stood beside the new one for minutes)', async t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['e', member('e', 'left')], ['f', member('f', 'alive')], ['g', member('g', 'suspect')]])
  const roll = new Set(['a'])
  const app = routesOver(t, members, { forgotten: (id: string) => !roll.has(id) })
  const nodes = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json<{ nodes: NodeView[] }>().nodes
  t.deepEqual(nodes.map(n => n.name), ['a', 'f', 'g'], 'one running (forgotten while cut off) is shown')
  t.like((await app.inject({ method: 'GET', url: '/v1/status' })).json<StatusView>().members, { alive: 2, suspect: 1, dead: 0, left: 0 })
})

test('a member of the roll this agent never heard from is listed apart as unseen, and /v1/nodes/NAME says what it is', async t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'dead')]])
  const roll = [{ node: 'a', name: 'a', joined: 1000 }, { node: 'b', name: 'b', joined: 1000 }, { node: 'c', name: 'srv-c', joined: Date.UTC(2026, 0, 2) }]
  const app = routesOver(t, members, { rollEntries: () => roll })
  const body = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json<NodesView>()
  t.deepEqual(body.nodes.map(n => n.name), ['a', 'b'])
  t.deepEqual(body.unseen, [{ id: 'c', name: 'srv-c', joined: '2026-01-02T00:00:00.000Z' }])
  const one = await app.inject({ method: 'GET', url: '/v1/nodes/srv-c' })
  t.is(one.statusCode, 404)
  t.regex(one.json<{ error: { message: string } }>().error.message, /^srv-c \(c\) is a member of the grid \(on its roll since 2026-01-02T00:00:00\.000Z\) that this agent has not heard from since it started: it counts as down; .*vgrid node forget srv-c/)
  t.regex((await app.inject({ method: 'GET', url: '/v1/nodes/zz' })).json<{ error: { message: string } }>().error.message, /^no node with id or name "zz"$/)
  t.deepEqual((await app.inject({ method: 'GET', url: '/v1/status' })).json<StatusView>().members, { alive: 1, suspect: 0, dead: 1, left: 0, unseen: 1 }, 'counted apart in the status')
})

test('two live members with one name are a health problem naming both; a dead namesake is not', t => {
  const named = (id: string, name: string, state: Member['state']): Member => ({ ...member(id, state), advert: { ...member(id, state).advert, name } })
  const table: MemberTable = new Map([['x1', named('x1', 'n1', 'alive')], ['x2', named('x2', 'n1', 'suspect')], ['x3', named('x3', 'n2', 'alive')], ['x4', named('x4', 'n2', 'dead')]])
  const p = duplicateNames(table)
  t.is(p.length, 1)
  t.like(p[0], { service: 'membership', cause: 'duplicate-name' })
  t.regex(p[0]!.message, /2 members are named "n1" \(x1, x2\)/)
})

test('members of the roll never heard from are a health problem naming them, once the agent has been up for the grace time', t => {
  const table: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'dead')]])
  const roll = [{ node: 'a', name: 'srv-a', joined: 1 }, { node: 'b', name: 'srv-b', joined: 1 }, { node: 'c', name: 'srv-c', joined: 1 }]
  t.deepEqual(unheardMembers(roll, table, UNHEARD_GRACE_MS - 1), [], 'not while gossip may still be finding them')
  const p = unheardMembers(roll, table, UNHEARD_GRACE_MS)
  t.is(p.length, 1)
  t.like(p[0], { service: 'membership', cause: 'members-unheard' })
  t.regex(p[0]!.message, /^1 member\(s\) of the grid have not been heard from since this agent started: srv-c \(c\);.*vgrid node forget NAME/)
  t.deepEqual(unheardMembers(roll.slice(0, 2), table, UNHEARD_GRACE_MS), [], 'a dead member in the table is listed by vgrid nodes: not this problem')
})

test('an agent that reached none of its join addresses and sees no other member says so, naming each with its error', t => {
  const alone: MemberTable = new Map([['me', member('me', 'alive')]])
  const joins = [{ addr: '/ip4/127.0.0.1/tcp/7699', reached: false, lastError: 'connect ECONNREFUSED 127.0.0.1:7699' }, { addr: '/ip4/127.0.0.1', reached: false, lastError: 'no valid addresses were provided' }]
  t.deepEqual(joinUnreached(joins, alone, 'me', UNHEARD_GRACE_MS - 1), [], 'not while it may still reach one')
  const p = joinUnreached(joins, alone, 'me', UNHEARD_GRACE_MS)
  t.is(p.length, 1)
  t.like(p[0], { service: 'membership', cause: 'join-unreachable' })
  t.regex(p[0]!.message, /^no join address answered and no other member is in sight: \/ip4\/127\.0\.0\.1\/tcp\/7699 \(connect ECONNREFUSED 127\.0\.0\.1:7699\); \/ip4\/127\.0\.0\.1 \(no valid addresses were provided\); check each address/)
  t.deepEqual(joinUnreached([], alone, 'me', UNHEARD_GRACE_MS), [], 'no join address: a first node')
  // its own address (a lone node whose join list names itself): said so, not libp2p's words
  const self = joinUnreached([{ addr: '/ip4/127.0.0.1/tcp/7400/p2p/me', reached: false, lastError: 'Can not dial self' }], alone, 'me', UNHEARD_GRACE_MS)
  t.regex(self[0]!.message, /\/ip4\/127\.0\.0\.1\/tcp\/7400\/p2p\/me \(that is this agent's own address: give another member's\)/)
  t.deepEqual(joinUnreached([{ ...joins[0]!, reached: true }], alone, 'me', UNHEARD_GRACE_MS), [], 'one reached once')
  t.deepEqual(joinUnreached(joins, new Map([...alone, ['b', member('b', 'alive')]]), 'me', UNHEARD_GRACE_MS), [], 'in the grid by another way (mDNS, the peer book)')
})

test('an agent told to join that reached no join address and holds no roll refuses changes; otherwise it takes them', t => {
  t.regex(notJoined(['/ip4/10.0.0.1/tcp/7400'], [], false) ?? '', /told to join a grid \(\/ip4\/10\.0\.0\.1\/tcp\/7400\) and has not reached it yet/)
  t.is(notJoined([], [], false), null, 'founding a grid')
  t.is(notJoined(['/ip4/10.0.0.1/tcp/7400'], [{ node: 'a' }], false), null, 'synced once: the roll has a member (kept on disk)')
  t.is(notJoined(['/ip4/10.0.0.1/tcp/7400'], [], true), null, 'a join address answered: the document syncs in moments')
})

test('a node stopped for a restart shows restarting only while its recorded grace may hold its VMs, counted on this node\'s clock from when it last heard it', t => {
  const heard = (ago: number): Member => ({ ...member('a', 'left'), lastSeen: monoNow() - ago })
  const restart = { since: 1_000_000, fenceMs: 58_334 }
  t.like(nodeView(heard(10_000), 'me', {}, undefined, undefined, { restart }, 1_000_000 + 10_000).restarting, { fenceMs: 58_334 })
  t.is(nodeView(heard(58_334), 'me', {}, undefined, undefined, { restart }, 1_000_000 + 58_334).restarting, null, 'over: its VMs were taken over (or it is back)')
  // its stamp is its own clock's: a viewer 90 s ahead (or a node 90 s behind) still counts the grace from the last beat
  t.like(nodeView(heard(2000), 'me', {}, undefined, undefined, { restart }, 1_000_000 + 92_000).restarting, { fenceMs: 58_334 }, 'a viewer ahead')
  t.is(nodeView(heard(60_000), 'me', {}, undefined, undefined, { restart }, 1_000_000 - 30_000).restarting, null, 'a node ahead of the viewer: over all the same')
})

test('clockOff: members alive or suspect whose clock is past the bound are a health problem, each with its offset', t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'alive')], ['c', member('c', 'dead')], ['d', member('d', 'suspect')]])
  t.deepEqual(clockOff(new Map([['b', { offsetMs: 100, over: false }]]), members, 'a'), [])
  const p = clockOff(new Map([['b', { offsetMs: 90_000, over: true }], ['c', { offsetMs: 5000, over: true }], ['d', { offsetMs: -2500, over: true }]]), members, 'a')
  t.is(p.length, 1)
  t.is(p[0]!.cause, 'clock-offset')
  t.regex(p[0]!.message, /^2 member\(s\) have a clock off from this node's by more than 250 ms: b \+90\.0 s, d -2\.5 s;/)
  t.is(offsetText(-400), '-0.4 s')
})

test('ClockWatch: a clock past the bound counts once it stays so for 10 s (frames held up by a cut read as offsets for a moment)', t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'alive')]])
  const w = new ClockWatch()
  const over = new Map([['b', { offsetMs: 5600, over: true }]])
  t.deepEqual(w.problems(over, members, 'a', 1000), [])
  t.deepEqual(w.problems(new Map([['b', { offsetMs: 100, over: false }]]), members, 'a', 1100), [], 'back within the bound')
  t.deepEqual(w.problems(over, members, 'a', 2000), [])
  t.deepEqual(w.problems(over, members, 'a', 11_999), [])
  t.is(w.problems(over, members, 'a', 12_000).length, 1)
})

test('members of the roll held dead are a health problem naming each with how long (a tester saw health ok with a member down); one that left or was forgotten is not', t => {
  const now = performance.now()
  const m = (id: string, state: Member['state'], since: number): Member => ({ ...member(id, state), since })
  const table: MemberTable = new Map([['a', m('a', 'alive', now)], ['b', m('b', 'dead', now - 40_000)], ['c', m('c', 'left', now - 5000)], ['d', m('d', 'dead', now - 1000)], ['e', m('e', 'dead', now - 9000)]])
  const roll = [{ node: 'a' }, { node: 'b' }, { node: 'c' }, { node: 'e' }]
  const [p] = deadMembers(roll, table, now)
  t.like(p, { service: 'membership', cause: 'members-dead' })
  t.regex(p!.message, /^2 member\(s\) of the grid are dead as this node sees them: b \(dead for 40 s\), e \(dead for 9 s\); .*vgrid node forget NAME/)
  t.deepEqual(deadMembers(roll, new Map([['a', m('a', 'alive', now)], ['c', m('c', 'left', now)]]), now), [])
  // a grid with no roll yet: every dead member
  t.is(deadMembers([], table, now).length, 1)
  t.regex(deadMembers([], table, now)[0]!.message, /^3 member/)
})

test('awayMembers: a member on the roll whose agent left for a restart and is not back past its grace is a health problem; within its grace, or gone from the roll (a leave), it is not (bb17: health said ok 40 s past the grace)', t => {
  const now = monoNow()
  const wall = Date.now()
  const left = (id: string, agoMs: number): Member => ({ ...member(id, 'left'), since: now - agoMs, lastSeen: now - agoMs })
  const table: MemberTable = new Map([['a', member('a', 'alive')], ['b', left('b', 70_000)], ['c', left('c', 10_000)], ['d', left('d', 5_000)]])
  const roll = [
    { node: 'a' },
    // b's grace (35 s) ended 35 s ago; c's still runs; d has no record (it stopped without asking) ; e left the roll
    { node: 'b', restart: { fenceMs: 35_000, since: wall - 70_000, confirmed: true } },
    { node: 'c', restart: { fenceMs: 35_000, since: wall - 10_000, confirmed: true } },
    { node: 'd', restart: null }
  ]
  const [p] = awayMembers(roll, table, now, wall)
  t.like(p, { service: 'membership', cause: 'members-away' })
  t.regex(p!.message, /^2 member\(s\) of the grid stopped their agent for a restart and are not back past its grace: b \(stopped 70 s ago\), d \(stopped 5 s ago\); .*vgrid node forget NAME/)
  t.deepEqual(awayMembers(roll.slice(0, 1), table, now, wall), [], 'off the roll: a graceful leave')
  t.deepEqual(awayMembers([{ node: 'c', restart: roll[2]!.restart }], table, now, wall), [], 'within its grace')
  // within its grace it is a problem of its own: not at full redundancy until it is back (bb32)
  const [r] = restartingMembers(roll, table, now, wall)
  t.like(r, { service: 'membership', cause: 'members-restarting' })
  t.regex(r!.message, /^1 member\(s\) of the grid are away for a restart, within their grace: c \(stopped 10 s ago\); their VMs are not moved elsewhere meanwhile/)
  t.deepEqual(restartingMembers(roll.filter(e => e.node !== 'c'), table, now, wall), [], 'none within a grace')
})

test('a member alive but out of reach here (a partial partition) says so in /v1/nodes, with who reaches it (vgrid nodes showed plain alive)', async t => {
  const members: MemberTable = new Map([['a', member('a', 'alive')], ['b', member('b', 'alive')], ['c', member('c', 'alive')]])
  const app = routesOver(t, members, { outOfReach: (id: string) => id === 'b' ? { by: 'c', since: Date.UTC(2026, 11, 4), why: 'silent' as const } : undefined })
  const nodes = (await app.inject({ method: 'GET', url: '/v1/nodes' })).json<NodesView>().nodes
  t.deepEqual(nodes.find(n => n.name === 'b')?.outOfReach, { by: 'c', since: '2026-12-04T00:00:00.000Z' })
  t.is(nodes.find(n => n.name === 'c')?.outOfReach, null)
})

test('a name a replaced server had twice means the identity that may be running, then the one on the roll, then the one heard last', t => {
  const named = (id: string, state: Member['state'], lastSeen: number): Member => ({ ...member(id, state), lastSeen, advert: { ...member(id, state).advert, name: 'host4' } })
  // the old identity came first in the table (as it does): a first match meant it
  const old = named('old', 'dead', 100)
  const now = named('new', 'alive', 50)
  t.is(memberByName([old, now], 'host4')?.nodeId, 'new')
  t.is(memberByName([old, named('new', 'suspect', 50)], 'host4')?.nodeId, 'new')
  // both down: the one on the roll, else the one heard from last
  t.is(memberByName([old, named('new', 'dead', 50)], 'host4', id => id === 'new')?.nodeId, 'new')
  t.is(memberByName([named('old', 'dead', 10), named('new', 'dead', 50)], 'host4')?.nodeId, 'new')
  t.is(memberByName([old, now], 'host5'), undefined)
  const d = new MemberDirectory()
  d.attach(() => new Map([['old', old], ['new', now]]))
  t.is(d.find('host4')?.nodeId, 'new')
  t.is(d.find('old')?.nodeId, 'old', 'an id is that identity')
})

test('an id shortened as vgrid nodes prints it means the one id that starts and ends so (bb46: "no node")', t => {
  const ids: [string, string, string, string] = ['12D3KooWAbCdEfGhIjR9uGp9', '12D3KooWZzZzZzZzZzQq1234', '12D3KooWAbCdXxXxXxXyWv12', '12D3KooWAbCdYyYyYyXyWv12']
  t.is(expandShortId('12D3KooW…R9uGp9', ids), ids[0])
  t.is(expandShortId(shortId(ids[1]), ids), ids[1])
  t.is(expandShortId('12D3KooW...R9uGp9', ids), ids[0], 'three dots too')
  t.is(expandShortId('12D3KooW…XyWv12', ids), '12D3KooW…XyWv12', 'two match: left as given (then not found)')
  t.is(expandShortId('12D3KooW…nosuch', ids), '12D3KooW…nosuch')
  t.is(expandShortId('host1', ids), 'host1', 'a name is left alone')
  t.is(expandShortId('a…b', ids), 'a…b', 'too short to mean one')
})
