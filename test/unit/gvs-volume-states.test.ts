// A volume's state through a node that is not its repair coordinator, while the
// coordinator does not answer (a partial partition: membership holds it alive through
// others, this node cannot reach it): the answer is this node's own view, saying so,
// and it comes after the longer of the two waits, not after both in turn (a tester's
// `vol ls` ran past the CLI's timeout).
import test from 'ava'
import type { Volume } from '../../crdt/index.ts'
import { coordinatorOf } from '../../node/gvs/health.ts'
import { VolumeStates } from '../../node/gvs/volume-states.ts'
import type { RepairRuns } from '../../node/gvs/repair-runs.ts'
import type { StatusService } from '../../node/gvs/status-protocol.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

test('a coordinator that does not answer: this node\'s own view, begun while it waited', async t => {
  const live = new Set(['n1', 'n2', 'n3'])
  const v = { id: 'vol-000000000001', path: '/a', sizeBytes: 2 ** 20, replicas: 2, minReplicas: 2, state: 'ready', parent: null, snapshots: {}, epoch: 1 } as unknown as Volume
  const coord = coordinatorOf(v.id, live)!
  const self = [...live].find(n => n !== coord)!
  let asked = 0
  const states = new VolumeStates({
    self,
    // an inventory slow as one that waits on the unreachable node (its list request)
    repairs: { repairer: () => ({ inventory: async () => { await sleep(2500); return { inventory: new Map([[0, [...live].filter(n => n !== coord)]]), listed: [...live].filter(n => n !== coord) } }, unavailable: async () => [] }), progress: () => null, isRunning: () => false, last: new Map() } as unknown as RepairRuns,
    // the ask runs to its timeout, as to a node that never answers
    status: { ask: async (_node: string, _ids: string[], timeoutMs: number) => { asked++; await sleep(timeoutMs); throw new Error(`no answer within ${timeoutMs} ms`) } } as unknown as Pick<StatusService, 'ask'>,
    live: () => live,
    members: () => new Map()
  })
  const t0 = Date.now()
  const h = (await states.of([v])).get(v.id)!
  const ms = Date.now() - t0
  t.is(asked, 1)
  t.regex(h.reasons.join('\n'), new RegExp(`its repair coordinator ${coord} did not answer \\(no answer within 5000 ms\\): this node's view`))
  t.true(ms < 5000 + 1500, `answered after the coordinator's wait, with this node's view ready by then (${ms} ms; both in turn took 7.5 s)`)
})

test('a node that sees no majority says so in every volume\'s state, its own view or its coordinator\'s', async t => {
  const live = new Set(['n1', 'n2'])
  const vs = ['vol-000000000001', 'vol-000000000002', 'vol-000000000003', 'vol-000000000004'].map(id => ({ id, path: `/${id}`, sizeBytes: 2 ** 20, replicas: 3, minReplicas: 3, state: 'ready', parent: null, snapshots: {}, epoch: 1 }) as unknown as Volume)
  const self = 'n1'
  const states = new VolumeStates({
    self,
    repairs: { repairer: () => ({ inventory: async () => ({ inventory: new Map([[0, [...live]]]), listed: [...live] }), unavailable: async () => [] }), progress: () => null, isRunning: () => false, last: new Map() } as unknown as RepairRuns,
    // the coordinator on the same side answers with a view that does not say it
    status: { ask: async (_node: string, ids: string[]) => Object.fromEntries(ids.map(id => [id, { writers: 0, health: { state: 'degraded', reasons: ['1 object has fewer than 3 live copies'], repair: null, lastRepair: null } }])) } as unknown as Pick<StatusService, 'ask'>,
    live: () => live,
    members: () => new Map(),
    noMajority: () => 'this node sees 2 of the grid\'s 4 members (no majority)'
  })
  const all = await states.of(vs)
  t.true(vs.some(v => coordinatorOf(v.id, live) === self) && vs.some(v => coordinatorOf(v.id, live) !== self), 'both kinds of view')
  for (const v of vs) {
    const h = all.get(v.id)!
    t.is(h.state, 'degraded')
    t.is(h.noMajority, 'this node sees 2 of the grid\'s 4 members (no majority)', v.id)
    t.regex(h.reasons[0]!, /no majority\): not readable or writable here/)
  }
})

test('a volume whose requests fail through this node is degraded here, saying why, whatever its coordinator sees (bb35)', async t => {
  const live = new Set(['n1', 'n2'])
  const vs = ['vol-000000000001', 'vol-000000000002', 'vol-000000000003', 'vol-000000000004'].map(id => ({ id, path: `/${id}`, sizeBytes: 2 ** 20, replicas: 2, minReplicas: 2, state: 'ready', parent: null, snapshots: {}, epoch: 1 }) as unknown as Volume)
  const healthy = { state: 'healthy', reasons: [], repair: null, lastRepair: null }
  const failing = (v: Volume): boolean => v.id === 'vol-000000000001' || v.id === 'vol-000000000004'
  const make = (ioFailing?: (v: Volume) => string | null): VolumeStates => new VolumeStates({
    self: 'n1',
    repairs: { repairer: () => ({ inventory: async () => ({ inventory: new Map([[0, [...live]]]), listed: [...live] }), unavailable: async () => [] }), progress: () => null, isRunning: () => false, last: new Map() } as unknown as RepairRuns,
    status: { ask: async (_node: string, ids: string[]) => Object.fromEntries(ids.map(id => [id, { writers: 0, health: healthy }])) } as unknown as Pick<StatusService, 'ask'>,
    live: () => live,
    members: () => new Map(),
    ...(ioFailing != null ? { ioFailing } : {})
  })
  const base = await make().of(vs)
  const all = await make(v => failing(v) ? 'NBD requests through this node failed 3 times since ...' : null).of(vs)
  t.true(vs.filter(failing).some(v => coordinatorOf(v.id, live) === 'n1') && vs.filter(failing).some(v => coordinatorOf(v.id, live) !== 'n1'), 'its own view and its coordinator\'s')
  for (const v of vs) {
    const h = all.get(v.id)!
    if (!failing(v)) { t.deepEqual(h, base.get(v.id)); continue }
    t.is(h.state, base.get(v.id)!.state === 'healthy' ? 'degraded' : base.get(v.id)!.state, v.id)
    t.is(h.reasons.at(-1), 'NBD requests through this node failed 3 times since ...')
  }
  t.is(all.get(vs.find(v => failing(v) && coordinatorOf(v.id, live) !== 'n1')!.id)!.state, 'degraded', 'its coordinator said healthy')
})
