// Two nodes give one path to two volumes at the same moment: each checked only its own
// copy of the document. Once the changes crossed, every node names the same holder
// (the smaller id), and the request that lost is undone and answered 409: of two
// requests that raced, one succeeds. Here two replicas stand for the two nodes, synced
// while both requests wait for such a change to arrive.
import test from 'ava'
import Fastify from 'fastify'
import { Replica } from '../../crdt/replica.ts'
import { syncPair } from '../../crdt/sync-pair.ts'
import { gvsRoutes, type GvsRoutesDeps } from '../../node/gvs/routes.ts'
import type { ScrubStatus } from '../../node/gvs/scrub-schedule.ts'
import { toApiError } from '../../node/api/errors.ts'

const G = 2 ** 30
// two peer ids (the document's `by` is one)
const NODES = ['12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', '12D3KooWLRPJAA5o6Z6bJgzUs4PQ1ZMVGMBb7ZNmBqXoCHTJUXDn']

function node (t: import('ava').ExecutionContext, me: string, noMajority: () => string | null = () => null, extra: Partial<GvsRoutesDeps> = {}): { replica: Replica, call: (method: 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) => Promise<{ status: number, body: { id?: string, path?: string, error?: { code: string, message: string } } }> } {
  const replica = Replica.create({ clusterId: 'c1', nodeId: me })
  const deps: GvsRoutesDeps = {
    components: {
      state: { read: () => replica.read(), write: async <T>(fn: Parameters<Replica['change']>[0], message?: string) => replica.change(fn, message).result as T },
      membership: { members: new Map(NODES.map(n => [n, { state: 'alive' }])) },
      peerId: me
    },
    pathSettleMs: 300,
    store: { removeVolume: async () => {}, forgetLine: async () => {} },
    mayFree: () => null,
    foldWait: () => null,
    noMajority,
    freeze: async () => {},
    lastRepairs: new Map(),
    scrub: { status: () => ({ intervalMs: 0, next: null, running: null, last: null }) as ScrubStatus, now: async () => { throw new Error('not here') } },
    volumes: () => replica.read().list('volumes'),
    pool: () => ({ nodes: 2, freeBytes: 100 * G }),
    repair: async () => { throw new Error('not here') },
    repairing: () => null,
    health: async () => new Map(),
    writersOf: async () => [],
    uriOf: v => `nbd+unix:///${v.path.slice(1)}?socket=/nowhere`,
    exportSweeper: { lease: () => {}, endLease: () => {}, leaseMs: 15_000, record: (now = Date.now()) => ({ node: me, run: 'r1', until: now + 60_000 }), fates: () => [] },
    ...extra
  }
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send({ error: { code: e.code, message: e.message } }) })
  gvsRoutes(deps)(app)
  t.teardown(async () => { await app.close() })
  return { replica, call: async (method, url, payload) => { const r = await app.inject({ method, url, ...(payload != null ? { payload } : {}) }); return { status: r.statusCode, body: r.json() } } }
}

test('two creates of one path on two nodes at once: one 201, one 409, one volume at the path everywhere', async t => {
  const a = node(t, NODES[0]!)
  const b = node(t, NODES[1]!)
  const ra = a.call('POST', '/v1/volumes', { path: '/race/v', size: '10M' })
  const rb = b.call('POST', '/v1/volumes', { path: '/race/v', size: '20M' })
  await new Promise(resolve => setTimeout(resolve, 100))
  syncPair(a.replica, b.replica) // the changes cross while both wait
  const [x, y] = await Promise.all([ra, rb])
  t.deepEqual([x.status, y.status].sort(), [201, 409])
  const lost = x.status === 409 ? x : y
  t.regex(lost.body.error?.message ?? '', /a volume already has the path "\/race\/v" \(vol-[0-9a-f]+, given it at the same moment on another node\): this create was undone/)
  syncPair(a.replica, b.replica)
  for (const r of [a.replica, b.replica]) t.deepEqual(r.read().list('volumes').map(v => v.path), ['/race/v'])
  t.is(a.replica.read().list('volumes')[0]?.id, (x.status === 201 ? x : y).body.id)
})

test('two renames onto one path on two nodes at once: one succeeds, the other goes back to its old path', async t => {
  const { a, b, ids: [p, q] } = await twoNodesWith(t, '/p', '/q')
  const ra = a.call('PATCH', `/v1/volumes/${p}`, { path: '/same' })
  const rb = b.call('PATCH', `/v1/volumes/${q}`, { path: '/same' })
  await new Promise(resolve => setTimeout(resolve, 100))
  syncPair(a.replica, b.replica)
  const [x, y] = await Promise.all([ra, rb])
  t.deepEqual([x.status, y.status].sort(), [200, 409])
  syncPair(a.replica, b.replica)
  const paths = new Map(a.replica.read().list('volumes').map(v => [v.id, v.path]))
  const winner = [p, q].sort()[0]!
  t.is(paths.get(winner), '/same')
  t.is(paths.get(winner === p ? q : p), winner === p ? '/q' : '/p', 'the loser has its old path back')
  t.deepEqual(new Map(b.replica.read().list('volumes').map(v => [v.id, v.path])), paths)
})

test('an undo is decided on the volumes as they are then: a volume renamed meanwhile stays; a lost rename goes back only to a free old path', async t => {
  const a = node(t, NODES[0]!)
  const b = node(t, NODES[1]!)
  // a create whose volume was renamed while it waited (that rename answered 200), and /x given again: nothing undone
  const ra = a.call('POST', '/v1/volumes', { path: '/x', size: '10M' })
  await new Promise(resolve => setTimeout(resolve, 50))
  const first = a.replica.read().list('volumes')[0]!.id
  t.is((await a.call('PATCH', `/v1/volumes/${first}`, { path: '/z' })).status, 200)
  t.is((await a.call('POST', '/v1/volumes', { path: '/x', size: '10M' })).status, 201)
  t.is((await ra).status, 201)
  t.deepEqual(a.replica.read().list('volumes').map(v => v.path).sort(), ['/x', '/z'])
  // C (the smaller id) and A renamed onto /y at the same moment; A's old path taken meanwhile by D
  const put = (r: Replica, id: string, path: string): void => { r.change(w => { w.put('volumes', { id, path, sizeBytes: 10 * 2 ** 20, replicas: 1, minReplicas: 1, thin: true, state: 'ready', parent: null, snapshots: {}, epoch: 1 }) }) }
  put(a.replica, 'vol-000000000001', '/c')
  put(a.replica, 'vol-ffffffffffff', '/old')
  syncPair(a.replica, b.replica)
  const ren = a.call('PATCH', '/v1/volumes/vol-ffffffffffff', { path: '/y' })
  const renC = b.call('PATCH', '/v1/volumes/vol-000000000001', { path: '/y' })
  await new Promise(resolve => setTimeout(resolve, 50))
  const d = a.call('POST', '/v1/volumes', { path: '/old', size: '10M' })
  await new Promise(resolve => setTimeout(resolve, 50))
  syncPair(a.replica, b.replica)
  const [r1, r2, r3] = await Promise.all([ren, renC, d])
  t.is(r2.status, 200)
  t.is(r3.status, 201, 'D keeps /old: nobody else gave it away')
  t.is(r1.status, 409)
  t.regex(r1.body.error?.message ?? '', /and "\/old" was taken meanwhile: volume vol-ffffffffffff stays at "\/y" behind vol-000000000001, reachable by its id; rename it/)
  syncPair(a.replica, b.replica)
  const paths = new Map(b.replica.read().list('volumes').map(v => [v.id, v.path]))
  t.is(paths.get('vol-000000000001'), '/y')
  t.is(paths.get('vol-ffffffffffff'), '/y')
})

test('one volume renamed to two paths on two nodes at once: the rename the document kept answers 200, the other 409 naming the path that won (bb26)', async t => {
  const a = node(t, NODES[0]!)
  const b = node(t, NODES[1]!)
  const id = (await a.call('POST', '/v1/volumes', { path: '/start', size: '10M' })).body.id ?? ''
  syncPair(a.replica, b.replica)
  const ra = a.call('PATCH', `/v1/volumes/${id}`, { path: '/p' })
  const rb = b.call('PATCH', `/v1/volumes/${id}`, { path: '/q' })
  await new Promise(resolve => setTimeout(resolve, 100))
  syncPair(a.replica, b.replica)
  const [x, y] = await Promise.all([ra, rb])
  t.deepEqual([x.status, y.status].sort(), [200, 409])
  const kept = a.replica.read().get('volumes', id)?.value.path
  const won = x.status === 200 ? x : y
  const lost = x.status === 200 ? y : x
  t.is(won.body.path, kept)
  t.is(lost.body.error?.code, 'renamed_meanwhile')
  const asked = lost === x ? '/p' : '/q'
  t.is(lost.body.error?.message, `volume "/start" is now at "${kept}" (renamed through another node meanwhile, or at the same moment and that rename won): this rename to "${asked}" did not stay`)
})

test('a node that sees no majority of the roll creates and clones no volume (the other side could give the path away meanwhile): 409 no_majority; bad input still says what is wrong', async t => {
  let cut: string | null = 'this node sees 1 of the grid\'s 3 members (no majority)'
  const a = node(t, NODES[0]!, () => cut)
  const refused = await a.call('POST', '/v1/volumes', { path: '/cut/v', size: '10M' })
  t.is(refused.status, 409)
  t.is(refused.body.error?.code, 'no_majority')
  t.regex(refused.body.error?.message ?? '', /^this node sees 1 of the grid's 3 members \(no majority\): a volume created here could take a path the other side gives another volume, and could not be used until this node sees a majority; create it through a node that sees one$/)
  t.is((await a.call('POST', '/v1/volumes', { path: 'no-slash', size: '10M' })).status, 400, 'bad input is a 400 first')
  t.deepEqual(a.replica.read().list('volumes'), [], 'nothing written')
  cut = null
  t.is((await a.call('POST', '/v1/volumes', { path: '/cut/v', size: '10M' })).status, 201, 'with a majority in sight it is created')
  cut = 'this node sees 1 of the grid\'s 3 members (no majority)'
  const clone = await a.call('POST', '/v1/volumes', { path: '/cut/c', from: '/cut/v@s1' })
  t.is(clone.status, 404, 'a clone of a snapshot that does not exist says so first')
})

type Node = ReturnType<typeof node>
/** two requests through two nodes at once: each writes its own copy, then the changes cross while both wait out their settle window */
async function atOnce<X, Y> (a: Node, b: Node, x: Promise<X>, y: Promise<Y>): Promise<[X, Y]> {
  await new Promise(resolve => setTimeout(resolve, 100))
  syncPair(a.replica, b.replica)
  return await Promise.all([x, y])
}

/** two nodes holding the same document with a 10M volume at each of `paths` (made through the first): their ids in order */
async function twoNodesWith<P extends string[]> (t: import('ava').ExecutionContext, ...paths: P): Promise<{ a: Node, b: Node, ids: { [K in keyof P]: string } }> {
  const a = node(t, NODES[0]!)
  const b = node(t, NODES[1]!)
  const ids: string[] = []
  for (const path of paths) ids.push((await a.call('POST', '/v1/volumes', { path, size: '10M' })).body.id ?? '')
  syncPair(a.replica, b.replica)
  return { a, b, ids: ids as { [K in keyof P]: string } }
}

test('a snapshot taken while the volume is removed through another node answers 409, not 201 (bb35: the acknowledged snapshot was gone with the volume)', async t => {
  const { a, b, ids: [id] } = await twoNodesWith(t, '/sv/v')
  const [s, r] = await atOnce(a, b, a.call('POST', `/v1/volumes/${id}/snapshots`, { name: 'keep' }), b.call('DELETE', `/v1/volumes/${id}`))
  t.is(r.status, 200)
  t.is(s.status, 409)
  t.is(s.body.error?.code, 'removed_meanwhile')
  t.is(s.body.error?.message, 'volume "/sv/v" was removed through another node at the same moment: its snapshot "keep" went with it')
})

test('two snapshots of one name through two nodes at once: one 201, one 409 (bb35: both 201, one snapshot)', async t => {
  const { a, b, ids: [id] } = await twoNodesWith(t, '/sv/w')
  const answers = await atOnce(a, b, a.call('POST', `/v1/volumes/${id}/snapshots`, { name: 'sr2' }), b.call('POST', `/v1/volumes/${id}/snapshots`, { name: 'sr2' }))
  t.deepEqual(answers.map(r => r.status).sort(), [201, 409])
  const lost = answers.find(r => r.status === 409)!
  t.is(lost.body.error?.code, 'exists')
  t.regex(lost.body.error?.message ?? '', /^volume "\/sv\/w" already has a snapshot "sr2" \(taken at the same moment through another node; the document kept that one, and this one did not stay\)$/)
  t.deepEqual(Object.keys(a.replica.read().get('volumes', id)!.value.snapshots), ['sr2'])
})

test('a set snapshot that loses on one volume takes back its snapshots of the others: whole or not at all (rv40)', async t => {
  const { a, b, ids: [one, two] } = await twoNodesWith(t, '/ss/one', '/ss/two')
  const [s, r] = await atOnce(a, b, a.call('POST', '/v1/snapshots', { name: 'both', volumes: ['/ss/one', '/ss/two'] }), b.call('DELETE', `/v1/volumes/${two}`))
  t.is(r.status, 200)
  t.is(s.status, 409)
  t.is(s.body.error?.code, 'removed_meanwhile')
  t.is(s.body.error?.message, 'volume "/ss/two" was removed through another node at the same moment: its snapshot "both" went with it; a set snapshot is taken whole or not at all, so the set\'s other snapshots were removed (/ss/one@both)')
  syncPair(a.replica, b.replica)
  for (const x of [a, b]) t.deepEqual(Object.keys(x.replica.read().get('volumes', one)!.value.snapshots), [], 'no snapshot of the set stays, on either node')
})

test('two same-named set snapshots of the same volumes through two nodes at once, listed in opposite orders: one stands whole, the other is answered 409 (rv41: each kept one volume and took back the other)', async t => {
  for (let round = 0; round < 5; round++) {
    const { a, b, ids: [one, two] } = await twoNodesWith(t, '/so/one', '/so/two')
    const answers = await atOnce(a, b, a.call('POST', '/v1/snapshots', { name: 'pair', volumes: ['/so/one', '/so/two'] }), b.call('POST', '/v1/snapshots', { name: 'pair', volumes: ['/so/two', '/so/one'] }))
    t.deepEqual(answers.map(r => r.status).sort(), [201, 409], JSON.stringify(answers.map(r => r.body.error)))
    syncPair(a.replica, b.replica)
    const bys = [one, two].map(id => a.replica.read().get('volumes', id)!.value.snapshots.pair?.by)
    t.true(bys[0] != null && bys[0] === bys[1], `one set whole: ${JSON.stringify(bys)}`)
  }
})

test('a set snapshot asked again names every volume of the set that has the name already (bb40: only the last)', async t => {
  const { a } = await twoNodesWith(t, '/sa/one', '/sa/two', '/sa/three')
  t.is((await a.call('POST', '/v1/snapshots', { name: 'set1', volumes: ['/sa/one', '/sa/two', '/sa/three'] })).status, 201)
  const again = await a.call('POST', '/v1/snapshots', { name: 'set1', volumes: ['/sa/one', '/sa/two', '/sa/three'] })
  t.is(again.status, 409)
  t.is(again.body.error?.code, 'exists')
  t.regex(again.body.error?.message ?? '', /^volumes "\/sa\/(one|two|three)", "\/sa\/(one|two|three)", "\/sa\/(one|two|three)" already have a snapshot "set1" \(all of the set: taken before\?\)$/)
})

test('vol repair while a member is away for a restart is refused unless forced (bb36: it copied the member\'s data away, which the background passes wait for)', async t => {
  let repaired = 0
  const a = node(t, NODES[0]!, () => null, {
    repairWaitsFor: () => 'n3 is away for a restart (its restart grace holds until 2026-12-06T10:00:00.000Z, 40 s more): its copies are waited for, not made anew elsewhere and moved back after',
    repair: async () => { repaired++; return { done: 0, total: 0, bytes: 0, failed: 0, freed: 0, health: 'healthy', errors: [], plan: { lost: 0, short: [] } } as never }
  })
  const id = (await a.call('POST', '/v1/volumes', { path: '/r/v', size: '10M' })).body.id ?? ''
  const refused = await a.call('POST', `/v1/volumes/${id}/repair`, {})
  t.is(refused.status, 409)
  t.is(refused.body.error?.code, 'member_restarting')
  t.regex(refused.body.error?.message ?? '', /^\/r\/v is not repaired now: n3 is away for a restart .*\. Repair once it is back, or with --force \(force: true\) to copy its data elsewhere now$/)
  t.is(repaired, 0)
  t.is((await a.call('POST', `/v1/volumes/${id}/repair`, { force: true })).status, 200)
  t.is(repaired, 1)
})
