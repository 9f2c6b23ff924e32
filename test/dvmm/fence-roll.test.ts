// Finding 4 of the DVMM review: nodes that join through a node cut off from the
// majority must not grow its roll into a second majority. A node writes its own roll
// entry only from a step where it sees a strict majority of the synced roll plus
// itself (not before it has synced, when told to join), and forgetting a node takes
// the same majority.
import test, { type ExecutionContext } from 'ava'
import Fastify, { type FastifyInstance } from 'fastify'
import { mayChangeRoll } from '../../crdt/placement/index.ts'
import { toApiError, errorBody } from '../../node/api/errors.ts'
import { harness, member, sleep, until, ME } from './fence-harness.ts'
import { withInterval } from '../../node/gvs/write-intervals.ts'
import { refuseUnknownQueries } from '../../node/api/server.ts'

const alive = (...ids: string[]) => (id: string): boolean => ids.includes(id)

test('mayChangeRoll: a strict majority of the synced roll (this node counted once on it); not before the first sync when joining', t => {
  t.true(mayChangeRoll({ roll: [], me: 'N', alive: alive(), joining: false }).ok, 'the first node of a grid')
  t.false(mayChangeRoll({ roll: [], me: 'N', alive: alive(), joining: true }).ok, 'told to join: the document is not synced yet')
  t.true(mayChangeRoll({ roll: ['A'], me: 'N', alive: alive('A'), joining: true }).ok, 'the second node, joining through the first')
  t.true(mayChangeRoll({ roll: ['A', 'B', 'H'], me: 'N', alive: alive('A', 'B', 'H'), joining: true }).ok)
  // the review's case: H cut off from A and B; N1 joins through H: 2 of 4 is no majority
  const cut = mayChangeRoll({ roll: ['A', 'B', 'H'], me: 'N1', alive: alive('H'), joining: true })
  t.false(cut.ok)
  t.regex(cut.reason, /sees 1 of 3 roll members \(it is not on the roll yet, so its own vote does not count\): no majority/)
  t.true(mayChangeRoll({ roll: ['A', 'B', 'H'], me: 'N1', alive: alive('A', 'H'), joining: true }).ok, '2 of 3')
  // rv21: a roll of two cut in half with a newcomer on each side: neither may join (each
  // would have made 2 of 3 on its side, two majorities)
  t.false(mayChangeRoll({ roll: ['B', 'C'], me: 'A', alive: alive('B'), joining: true }).ok, 'A with B: 1 of 2')
  t.false(mayChangeRoll({ roll: ['B', 'C'], me: 'D', alive: alive('C'), joining: true }).ok, 'D with C: 1 of 2')
  t.true(mayChangeRoll({ roll: ['B', 'C'], me: 'A', alive: alive('B', 'C'), joining: true }).ok, 'after the heal: 2 of 2')
  t.true(mayChangeRoll({ roll: ['A', 'B', 'N'], me: 'N', alive: alive('A'), joining: false }).ok, 'already on the roll: 2 of 3')
  t.false(mayChangeRoll({ roll: ['A', 'B', 'N'], me: 'N', alive: alive(), joining: false }).ok, '1 of 3')
})

test.serial('a node joining through a node cut off from the majority does not write its roll entry until it sees a majority', async t => {
  const h = await harness({ selfOnRoll: false, others: ['A', 'B', 'H'], othersState: 'dead', join: ['/ip4/127.0.0.1/tcp/1'] })
  t.teardown(h.stop)
  h.members.set('H', member('H', 'alive'))
  h.transition()
  await sleep(500)
  t.is(h.replica.read().get('roll', ME), undefined, 'sees 1 of 3: not written')

  h.members.set('A', member('A', 'alive'))
  h.transition()
  t.true(await until(() => h.replica.read().get('roll', ME) != null, 2000), 'written once it sees 2 of 3')
  t.true(Number.isInteger(h.replica.read().get('roll', ME)?.value.joined))
})

test.serial('a node not on the roll has no vote: beside one of a roll of two it sees no majority, writes no entry and claims nothing (rv21)', async t => {
  const h = await harness({ selfOnRoll: false, others: ['B', 'C'], othersState: 'dead' })
  t.teardown(h.stop)
  h.members.set('B', member('B', 'alive'))
  h.transition()
  t.true(await until(() => h.dvmm.fenceState?.aliveSeen === 1, 2000), JSON.stringify(h.dvmm.fenceState))
  // it counted itself: 2 of 3, a majority on each side of the cut with a newcomer on each
  t.false(h.dvmm.fenceState?.majority, h.dvmm.fenceState?.reason)
  t.false(h.dvmm.fenceState?.mayClaim)
  t.is(h.dvmm.fenceState?.rollSize, 2)
  await sleep(300)
  t.is(h.replica.read().get('roll', ME), undefined, 'no roll entry')
  h.members.set('C', member('C', 'alive'))
  h.transition()
  t.true(await until(() => h.replica.read().get('roll', ME) != null && h.dvmm.fenceState?.majority === true, 3000), 'both in sight: joins, and has a majority')
})

/** a node of five whose others are dead, with its VM routes (forget is one) */
async function forgetting (t: ExecutionContext): Promise<{ h: Awaited<ReturnType<typeof harness>>, app: FastifyInstance }> {
  const h = await harness({ others: ['A', 'B', 'C', 'D'], othersState: 'dead' })
  t.teardown(h.stop)
  const app = Fastify()
  app.setErrorHandler(async (err, _req, reply) => { const e = toApiError(err); return await reply.code(e.status).send(errorBody(e.code, e.message)) })
  refuseUnknownQueries(app)
  h.dvmm.routes(app)
  t.teardown(async () => { await app.close() })
  return { h, app }
}

test.serial('forget: refused on a node without a majority of the roll, allowed with one', async t => {
  const { h, app } = await forgetting(t)
  h.members.set('A', member('A', 'alive'))
  const refused = await app.inject({ method: 'DELETE', url: '/v1/nodes/C/roll' })
  t.is(refused.statusCode, 409, refused.body)
  t.regex(refused.body, /sees 2 of 5 roll members/)
  t.truthy(h.replica.read().get('roll', 'C'), 'still on the roll')
  h.members.set('B', member('B', 'alive'))
  const ok = await app.inject({ method: 'DELETE', url: '/v1/nodes/C/roll' })
  t.is(ok.statusCode, 200, ok.body)
  t.is(h.replica.read().get('roll', 'C'), undefined)
})

test.serial('forget without a majority, on the operator\'s word (half a grid lost for good had no way back): refused without --without-majority, naming it; with it, one by one until this node sees a majority', async t => {
  const { h, app } = await forgetting(t)
  // five on the roll, this node and A alive: 2 of 5
  h.members.set('A', member('A', 'alive'))
  const refused = await app.inject({ method: 'DELETE', url: '/v1/nodes/C/roll' })
  t.is(refused.statusCode, 409)
  t.regex(refused.body, /gone for good .*--without-majority/)
  const first = await app.inject({ method: 'DELETE', url: '/v1/nodes/C/roll?withoutMajority=true' })
  t.is(first.statusCode, 200, first.body)
  t.true((JSON.parse(first.body) as { withoutMajority?: boolean }).withoutMajority)
  t.is(h.replica.read().get('roll', 'C'), undefined)
  // 2 of 4: still none; D forgotten the same way gives 2 of 3, and B then goes as usual
  t.is((await app.inject({ method: 'DELETE', url: '/v1/nodes/D/roll?withoutMajority=true' })).statusCode, 200)
  const plain = await app.inject({ method: 'DELETE', url: '/v1/nodes/B/roll' })
  t.is(plain.statusCode, 200, plain.body)
  t.false('withoutMajority' in (JSON.parse(plain.body) as object), 'with a majority in sight it is a plain forget')
  t.deepEqual([...h.replica.read().all('roll').keys()].sort(), ['A', ME].sort())
  // the override is for dead members only: a live one is still refused
  const live = await app.inject({ method: 'DELETE', url: '/v1/nodes/A/roll?withoutMajority=true' })
  t.is(live.statusCode, 409)
  t.regex(live.body, /is alive/)
})

test.serial('forget NAME of a server reinstalled under its old name means the old identity, gone, not the new one running (the README\'s advice gave "is alive")', async t => {
  const { h, app } = await forgetting(t)
  for (const id of ['A', 'B']) h.members.set(id, member(id, 'alive'))
  // C's server (host-c) reinstalled: a new identity E under that name, alive and on the roll
  const named = (id: string, state: 'alive' | 'dead'): ReturnType<typeof member> => { const m = member(id, state); return { ...m, advert: { ...m.advert, name: 'host-c' } } }
  h.members.set('C', named('C', 'dead'))
  h.members.set('E', named('E', 'alive'))
  h.replica.change(w => { w.put('roll', { node: 'C', name: 'host-c', joined: 1 }); w.put('roll', { node: 'E', name: 'host-c', joined: 2 }) })
  const r = await app.inject({ method: 'DELETE', url: '/v1/nodes/host-c/roll' })
  t.is(r.statusCode, 200, r.body)
  t.like(JSON.parse(r.body), { forgotten: 'C', wasOnRoll: true })
  t.truthy(h.replica.read().get('roll', 'E'), 'the new identity stays')
  // with only the live one left under the name, it is refused as before
  const again = await app.inject({ method: 'DELETE', url: '/v1/nodes/host-c/roll' })
  t.is(again.statusCode, 409)
  t.regex(again.body, /node host-c is alive/)
})

test.serial('forget of a node that may alone hold writes of a volume: refused without force, naming the volume; with it, the writes are given up and the volume records so for good', async t => {
  const { h, app } = await forgetting(t)
  h.members.set('A', member('A', 'alive'))
  h.members.set('B', member('B', 'alive'))
  // an R=1 volume written while D alone was live: its objects may be only there
  h.replica.change(w => { w.put('volumes', { id: 'vol-000000000001', path: '/t/r1', sizeBytes: 4 * 2 ** 20, replicas: 1, state: 'ready', parent: null, snapshots: {}, writeIntervals: withInterval(undefined, [{ id: 'D', weight: 10 }], 5) }) })
  const refused = await app.inject({ method: 'DELETE', url: '/v1/nodes/D/roll' })
  t.is(refused.statusCode, 409, refused.body)
  t.is(refused.json<{ error: { code: string } }>().error.code, 'writes_only_there')
  t.regex(refused.body, /gives up writes that may be only on it, of volume \/t\/r1: an object with no copy left .* reads as zeros .*vgrid node forget D --force/)
  t.truthy(h.replica.read().get('roll', 'D'), 'still on the roll')
  t.is((await app.inject({ method: 'DELETE', url: '/v1/nodes/D/roll?force=maybe' })).statusCode, 400)
  const ok = await app.inject({ method: 'DELETE', url: '/v1/nodes/D/roll?force=true' })
  t.is(ok.statusCode, 200, ok.body)
  t.deepEqual(ok.json<{ writesGivenUp: string[] }>().writesGivenUp, ['/t/r1'])
  t.is(h.replica.read().get('roll', 'D'), undefined)
  t.like(h.replica.read().get('volumes', 'vol-000000000001')!.value.writesGivenUp, [{ node: 'D', name: 'D' }])
})

test.serial('a node forgotten while it ran (cut off when the majority forgot it) writes its roll entry again once it sees a majority', async t => {
  const h = await harness({ others: ['A', 'B'] })
  t.teardown(h.stop)
  await sleep(300)
  const first = h.replica.read().get('roll', ME)?.value.joined
  t.truthy(first)
  // cut off, and forgotten by the others meanwhile (their change reaches it)
  h.cutOff()
  h.replica.change(w => { w.remove('roll', ME) })
  h.transition()
  await sleep(500)
  t.is(h.replica.read().get('roll', ME), undefined, 'sees 1 of 3: not written')

  // back in sight
  for (const n of ['A', 'B']) h.members.set(n, member(n, 'alive'))
  h.transition()
  t.true(await until(() => h.replica.read().get('roll', ME) != null, 3000), 'back on the roll')
  t.true(h.replica.read().get('roll', ME)!.value.joined > first!, 'joined anew')
})
