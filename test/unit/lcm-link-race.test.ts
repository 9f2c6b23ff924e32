// Link creates racing other nodes' writes (a tester): two creates from one output
// through two nodes both answered 201 and one link was inert; a create racing the
// removal of its VM on another node answered 201 and left a link naming a VM gone,
// which held its output for good. The create now waits the settle window and is
// answered as a create after the other write would have been, its link removed; a
// link whose VM is gone holds no output.
import test from 'ava'
import Fastify from 'fastify'
import { Replica, syncPair, type Draft } from '../../crdt/index.ts'
import { errorBody, toApiError } from '../../node/api/errors.ts'
import { ConflictError, NotFoundError } from '../../node/errors.ts'
import { createVmIn, removeVmIn } from '../../node/dvmm/vms.ts'
import { lcmRoutes } from '../../node/lcm/routes.ts'
import { overlayPrefix } from '../../node/lcm/overlay.ts'
import type { LcmState } from '../../node/lcm/types.ts'
import { checkLink, lostLink, oneLinkPerOutput, standingLinks, type LinkDoc } from '../../node/lcm/links.ts'
import type { Link } from '../../node/lcm/rules.ts'
import type { Member } from '../../protocol/membership.ts'
import { idleLcm } from '../helpers/idle-lcm.ts'

const link = (id: string, to: string, at: number, from = 'c1'): Link & { at: number } => ({ id, from: { vm: from, terminal: 'o' }, to: { vm: to, terminal: 'i' }, protocol: 'tcp', port: 80, at })
const vmsOf = (...ids: string[]): Map<string, { inputs?: string[], outputs?: string[], created?: number }> => new Map(ids.map(id => [id, { inputs: ['i'], outputs: ['o'], created: 1 }]))

test('lostLink: of two links from one output written at once, the later (at, then id) lost, naming the one kept', t => {
  const vms = vmsOf('c1', 'c2', 'c3')
  const a = link('link-a', 'c2', 100)
  const b = link('link-b', 'c3', 200)
  t.is(lostLink(a, [a, b], vms), null)
  const lost = lostLink(b, [b, a], vms)
  t.true(lost instanceof ConflictError)
  t.is((lost as ConflictError).code, 'output-connected')
  // as a sequential create is told, naming the winner
  t.regex(lost!.message, /^output c1\.o is connected already \(to c2\.i by link-a\): that link was made through another node at the same moment, and first; this one was removed$/)
  // written in the same millisecond: the smaller id is the output's, on every node
  t.is(lostLink({ ...b, id: 'link-0' }, [a, { ...b, id: 'link-0', at: 100 }], vms), null)
  t.regex(lostLink(a, [a, { ...b, id: 'link-0', at: 100 }], vms)!.message, /by link-0\)/)
  // another output, or the link removed meanwhile (link rm): nothing lost
  t.is(lostLink(b, [b, link('link-x', 'c2', 50, 'c2')], vms), null)
  t.is(lostLink(b, [a], vms), null)
  // the earlier one names a VM that is gone: it holds nothing, the later stands
  t.is(lostLink(b, [b, a], vmsOf('c1', 'c3')), null)
})

test('lostLink: a link whose VM was removed through another node meanwhile is answered 404 naming the VM (or 409 when one of the name was made since)', t => {
  const l = link('link-a', 'dN', 100)
  const gone = lostLink(l, [l], vmsOf('c1'))
  t.true(gone instanceof NotFoundError)
  t.is(gone!.message, 'to: no VM "dN": it was removed through another node while this link was made; this link was removed')
  // removed already with the VM (the removal saw it): still its create's answer
  t.true(lostLink(l, [], vmsOf('c1')) instanceof NotFoundError)
  t.regex(lostLink(link('link-b', 'c2', 1, 'gone'), [], vmsOf('c2'))!.message, /^from: no VM "gone"/)
  // made again under the name: another VM
  const again = lostLink({ ...l, to: { vm: 'dN', terminal: 'i', created: 1 } }, [l], new Map([...vmsOf('c1'), ['dN', { inputs: ['i'], created: 2 }]]))
  t.true(again instanceof ConflictError)
  t.is((again as ConflictError).code, 'vm_removed')
  t.regex(again!.message, /^to: VM "dN" was removed through another node while this link was made/)
})

test('a link whose VM is gone holds no output: a later create from it passes, and every node skips it saying why', t => {
  const dangling = link('link-d', 'd20', 100)
  const doc: LinkDoc = { vms: vmsOf('c1', 'c2'), links: [dangling] }
  // it was refused "output c1.o is connected already (to d20.i ...)" for good
  const made = checkLink({ from: { vm: 'c1', terminal: 'o' }, to: { vm: 'c2', terminal: 'i' }, protocol: 'tcp', port: 80 }, doc)
  t.deepEqual(made.to, { vm: 'c2', terminal: 'i' })
  // a live one still does
  t.throws(() => checkLink({ from: { vm: 'c1', terminal: 'o' }, to: { vm: 'c2', terminal: 'i' }, protocol: 'tcp', port: 81 }, { ...doc, links: [link('link-l', 'c2', 1)] }), { message: /output c1\.o is connected already \(to c2\.i by link-l\)/ })
  // and a link of a former VM of the name is no duplicate of the same link made again
  const former = { ...made, to: { ...made.to, created: 0 }, at: 1 }
  t.notThrows(() => checkLink({ from: { vm: 'c1', terminal: 'o' }, to: { vm: 'c2', terminal: 'i' }, protocol: 'tcp', port: 80 }, { ...doc, links: [former] }))
  // what every node enforces: the live link is the output's, the dangling one skipped with the reason
  const s = standingLinks([dangling, { ...made, at: 200 }], doc.vms)
  t.deepEqual(oneLinkPerOutput(s.links).links.map(l => l.id), [made.id])
  t.deepEqual(s.skipped, [{ link: 'link-d', reason: 'VM d20 no longer exists (removed while this link was made through another node): the link connects nothing and holds no output; remove it' }])
  t.regex(standingLinks([former], doc.vms).skipped[0]!.reason, /^made for a former VM named c2/)
})

// two agents' link routes over two replicas of one document, synced by the test
const GiB = 2 ** 30
const vm = (id: string, t: { inputs?: string[], outputs?: string[] }): Draft<'vms'> => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'], ...t } })
const member = (id: string): Member => ({ nodeId: id, state: 'alive', advert: { name: id } }) as unknown as Member

function node (replica: Replica, me: string, other: string, wrote: () => void): ReturnType<typeof Fastify> {
  const state: LcmState = { read: () => replica.read(), write: async (fn, m) => { const r = replica.change(fn, m).result; wrote(); return r }, on: () => {}, off: () => {} }
  const lcm = {
    status: () => ({ ok: true, error: null, errorSince: null, applyError: null, applyErrorSince: null, routeConflict: null, routeConflictSince: null, backend: 'userspace' as const, interface: 'vgx', publicKey: null, endpoint: null, address: null, prefix: overlayPrefix('c') }),
    ...idleLcm,
    state,
    last: null,
    members: new Map([[other, member(other)]]),
    selfId: me,
    table: 'vgrid_lcm_x',
    linkCounts: async () => new Map(),
    linkSettleMs: 300
  }
  const a = Fastify()
  a.setErrorHandler((err, _req, reply) => { const e = toApiError(err); void reply.code(e.status).send(errorBody(e.code, e.message)) })
  lcmRoutes(lcm)(a)
  return a
}

function grid (): { x: Replica, y: Replica, ax: ReturnType<typeof Fastify>, ay: ReturnType<typeof Fastify>, writes: (n: number) => Promise<void> } {
  const x = Replica.create({ clusterId: 'c', nodeId: '12D3KooWXXXX' })
  const y = Replica.create({ clusterId: 'c', nodeId: '12D3KooWYYYY' })
  x.change(w => { createVmIn(w, vm('c1', { outputs: ['o'] })); createVmIn(w, vm('c2', { inputs: ['i'] })); createVmIn(w, vm('c3', { inputs: ['i'] })); createVmIn(w, vm('dN', { inputs: ['i'] })) })
  syncPair(x, y)
  let count = 0
  const waiting: Array<{ n: number, resolve: () => void }> = []
  const wrote = (): void => { count++; for (const w of waiting) if (count >= w.n) w.resolve() }
  return { x, y, ax: node(x, 'X', 'Y', wrote), ay: node(y, 'Y', 'X', wrote), writes: async n => { if (count < n) await new Promise<void>(resolve => { waiting.push({ n, resolve }) }) } }
}

type Answer = { status: number, json: { id?: string, error?: { code: string, message: string } } }
const post = async (a: ReturnType<typeof Fastify>, from: string, to: string): Promise<Answer> => {
  const r = await a.inject({ method: 'POST', url: '/v1/links', payload: { from, to, port: 80 } })
  return { status: r.statusCode, json: r.json() }
}

test('POST /v1/links through two nodes at once from one output: one 201, the other the 409 output_connected naming it, and its link gone', async t => {
  const { x, y, ax, ay, writes } = grid()
  const both = Promise.all([post(ax, 'c1.o', 'c2.i'), post(ay, 'c1.o', 'c3.i')])
  // each wrote its link on its own copy; they meet within the settle window
  await writes(2)
  t.is(syncPair(x, y).rejected, undefined)
  const answers = await both
  t.deepEqual(answers.map(a => a.status).sort(), [201, 409], JSON.stringify(answers))
  const won = answers.find(a => a.status === 201)!
  const lost = answers.find(a => a.status === 409)!
  t.is(lost.json.error?.code, 'output_connected')
  t.regex(lost.json.error!.message, new RegExp(`^output c1\\.o is connected already \\(to c[23]\\.i by ${won.json.id!}\\)`))
  syncPair(x, y)
  t.deepEqual(x.read().list('connections').map(c => c.id), [won.json.id])
  t.deepEqual(y.read().list('connections').map(c => c.id), [won.json.id])
})

test('POST /v1/links racing the removal of its VM on another node: 404 naming the VM, and no link left to hold the output', async t => {
  const { x, y, ax, ay, writes } = grid()
  const made = post(ay, 'c1.o', 'dN.i')
  await writes(1)
  // x removes dN at the same moment: it has not seen the link, so takes none with it
  t.deepEqual(x.change(w => removeVmIn(w, 'dN')).result, [])
  t.is(syncPair(x, y).rejected, undefined)
  const r = await made
  t.is(r.status, 404, JSON.stringify(r.json))
  t.is(r.json.error?.message, 'to: no VM "dN": it was removed through another node while this link was made; this link was removed')
  syncPair(x, y)
  t.deepEqual(x.read().list('connections'), [])
  t.deepEqual(y.read().list('connections'), [])
  // the output is free: the next link from it is made
  t.is((await post(ax, 'c1.o', 'c2.i')).status, 201)
})
