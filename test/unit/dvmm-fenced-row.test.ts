// A VM its node killed when it fenced, as the other nodes of its side of a cut show it
// (node/dvmm/routes.ts over the lease that node wrote): stopped, saying where and why,
// not `starting` (a tester read `starting` there for 30 s while the holder said
// `stopped` and no process ran).
import test from 'ava'
import Fastify from 'fastify'
import { Replica } from '../../crdt/replica.ts'
import { MIGRATIONS } from '../../crdt/genesis.ts'
import type { Member } from '../../protocol/membership.ts'
import { dvmmRoutes, type DvmmRoutesDeps } from '../../node/dvmm/routes.ts'
import { History } from '../../node/dvmm/history.ts'
import { fencedKillCause, fencedKillReason } from '../../node/dvmm/run-steps.ts'
import type { VmRow } from '../../node/dvmm/vms.ts'

const GiB = 2 ** 30
const WHY = 'fenced: sees 2 of 4 roll members (no majority) for 5009 ms'

const member = (id: string): [string, Member] => [id, { nodeId: id, state: 'alive', since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 }, advert: { name: `host-${id}`, capacity: { cpu: 4, memoryBytes: 8 * GiB, diskBytes: 0 }, labels: {} } } as unknown as Member]

async function rowOn (me: string, lease: object, fenceState: DvmmRoutesDeps['fenceState'] = { majority: false, fenced: true, reason: 'sees 2 of 4 roll members (no majority)' }): Promise<VmRow> {
  const replica = Replica.create({ clusterId: 'c', nodeId: me, migrations: MIGRATIONS })
  replica.change(w => {
    for (const n of ['n1', 'n2']) w.put('roll', { node: n, name: `host-${n}`, joined: 1, draining: false })
    w.put('vms', { id: 'cli1', name: 'cli1', app: null, desired: 'running', spec: { driver: 'process', cpu: 1, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] } })
    w.put('leases', { vm: 'cli1', holder: 'n1', epoch: 1, cpu: 1, memoryBytes: GiB, ...lease })
  })
  const deps: DvmmRoutesDeps = {
    components: { state: { read: () => replica.read(), write: async fn => replica.change(fn).result }, membership: { members: new Map([member('n1'), member('n2')]) } },
    me,
    history: new History(),
    schedule: () => {},
    ha: () => ({ ok: true, stranded: [] }) as never,
    fenceState,
    local: { addressOf: () => null, live: new Set(), console: async () => { throw new Error('none') }, runtimeOf: async () => null }
  }
  const app = Fastify()
  dvmmRoutes(deps)(app)
  const res = await app.inject({ method: 'GET', url: '/v1/vms' })
  await app.close()
  return (res.json() as { vms: VmRow[] }).vms[0]!
}

test('the fenced kill\'s reason says its cause, read back as written', t => {
  t.is(fencedKillCause(fencedKillReason(WHY)), WHY)
  t.is(fencedKillCause('exited (code 1): crash 1 within 24 h, restarting in 1 s'), null)
  t.is(fencedKillCause(null), null)
})

test('another node of the fenced side shows the VM stopped, killed there, starting again there once that node sees a majority', async t => {
  const row = await rowOn('n2', { status: 'starting', reason: fencedKillReason(WHY) })
  t.is(row.state, 'stopped')
  t.is(row.node, 'host-n1')
  t.is(row.reason, `killed on host-n1: ${WHY}; it starts again there once that node sees a majority of the grid, unless the majority has taken it over meanwhile`)
})

test('its holder says it in its own words; a VM starting for another reason stays starting', async t => {
  const own = await rowOn('n1', { status: 'starting', reason: fencedKillReason(WHY) })
  t.is(own.state, 'stopped')
  t.regex(own.reason ?? '', /^this node sees 2 of 4 roll members \(no majority\): it is fenced, and killed its VMs/)
  const crash = await rowOn('n2', { status: 'starting', reason: 'exited (code 1): crash 1 within 24 h, restarting in 1 s' })
  t.is(crash.state, 'starting')
  // ... saying that its node starts it only with a majority in sight (bb43: "restarting in 1 s" for 20 s)
  t.is(crash.reason, 'exited (code 1): crash 1 within 24 h, restarting in 1 s; this node sees 2 of 4 roll members (no majority): host-n1 starts it only while it sees a majority of the grid, which it may not either')
  const seen = await rowOn('n2', { status: 'starting', reason: 'exited (code 1): crash 1 within 24 h, restarting in 1 s' }, { majority: true, fenced: false, reason: 'sees 2 of 2 roll members' })
  t.is(seen.reason, 'exited (code 1): crash 1 within 24 h, restarting in 1 s', 'with a majority here: as its node wrote it')
})
