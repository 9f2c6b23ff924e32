// VMs whose holder is not alive (node/dvmm/vms.ts lostVms): where they run is unknown,
// and when no live node fits them they run nowhere, which `vm ls`, `vgrid ha` and the
// status must say (a black-box test found them shown "running" on a dead node).
import test from 'ava'
import type { Lease, Vm } from '../../crdt/schema.ts'
import type { NodeView } from '../../crdt/placement/index.ts'
import { lostReason, lostVms, unplacedVms } from '../../node/dvmm/vms.ts'
import type { DocView } from '../../node/dvmm/view.ts'

const GiB = 2 ** 30
const node = (id: string, alive: boolean): NodeView => ({ id, name: `h-${id}`, alive, draining: false, capacity: { cpu: 2, memoryBytes: 4 * GiB }, labels: {} })
const vm = (id: string, cpu: number, desired: Vm['desired'] = 'running'): Vm =>
  ({ id, name: id, app: null, desired, spec: { driver: 'process', cpu, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] }, at: 1, by: 'a' } as unknown as Vm)
const lease = (v: string, holder: string, cpu: number, status: Lease['status'] = 'running'): Lease => ({ vm: v, holder, epoch: 1, cpu, memoryBytes: GiB, status, at: 1, by: holder } as Lease)
const doc = (vms: Vm[], leases: Lease[]): DocView => ({
  vms: new Map(vms.map(v => [v.id, v])),
  leases: new Map(leases.map(l => [l.vm, { winner: l, claims: [l] }])),
  roll: new Map()
})

test('a VM whose holder is dead and that no live node fits is lost with the reason; one that fits waits for the fence', t => {
  const nodes = [node('a', true), node('b', true), node('c', false)]
  // a and b each hold 1.5 of 2 cpu: c's 1.5 fits on neither, c's 0.25 fits
  const d = doc([vm('web', 1.5), vm('db', 1.5), vm('big', 1.5), vm('small', 0.25), vm('off', 1.5, 'stopped')],
    [lease('web', 'a', 1.5), lease('db', 'b', 1.5), lease('big', 'c', 1.5), lease('small', 'c', 0.25), lease('off', 'c', 1.5)])
  const lost = lostVms(d, nodes)
  t.deepEqual(lost.map(l => [l.name, l.nodeName, l.fitsNowhere != null]), [['big', 'h-c', true], ['small', 'h-c', false]])
  t.regex(lostReason(lost[0]!), /^its node h-c is not alive; no other node fits it: no node fits/)
  t.is(lostReason(lost[1]!), 'its node h-c is not alive; it moves once that node\'s fence timeout has passed')
  // this node's majority counts a member back from a restart only later (a vote it may have lent)
  t.regex(lostReason(lost[1]!, undefined, 41_200), /^its node h-c is not alive; it moves once that node's fence timeout has passed, and not within 42 s: this node's majority counts a member back from a restart only once the vote it may have lent/)
  t.deepEqual(lostVms(d, nodes, 'small').map(l => l.name), ['small'], 'one VM, the others still counted for room')
  // a holder gone from the grid altogether (forgotten) is not alive either
  t.deepEqual(lostVms(d, [node('a', true), node('b', true)]).map(l => l.nodeName), ['c', 'c'])
  // stopped or failed leases, and live holders, are not lost
  t.deepEqual(lostVms(doc([vm('x', 1)], [lease('x', 'c', 1, 'failed')]), nodes), [])
  t.deepEqual(lostVms(doc([vm('x', 1)], [lease('x', 'a', 1)]), nodes), [])
})

test('a lost VM seen from a node with no majority in sight: not known here, whether it fits elsewhere or not (the majority side may run it)', t => {
  const l = { vm: 'a', name: 'a', node: 'n1', nodeName: 'h1', fitsNowhere: null } as unknown as Parameters<typeof lostReason>[0]
  t.regex(lostReason(l), /moves once that node's fence timeout has passed/)
  const blind = /^its node h1 is not in sight of this node, which sees 1 of 3 roll members \(no majority\) for 900 ms: whether the VM runs there or was taken over is not known here$/
  t.regex(lostReason(l, 'sees 1 of 3 roll members (no majority) for 900 ms'), blind)
  t.regex(lostReason({ ...l, fitsNowhere: 'no node fits (3 not alive)' }, 'sees 1 of 3 roll members (no majority) for 900 ms'), blind, 'not "no other node fits it": the others only look dead from here')
})

test('a lost VM of a node stopped for a restart: under its watchdog for so long, then said killed by it and moving within the fence (bb42: "may run on there" after the kill)', t => {
  const l = { vm: 'a', name: 'a', node: 'n1', nodeName: 'h1', fitsNowhere: null, restarting: true } as unknown as Parameters<typeof lostReason>[0]
  t.is(lostReason(l, undefined, 0, { watchdogLeftMs: 12_300, leftMs: 37_000 }), 'its node h1 is not alive; its agent stopped for a restart, and the VM may run on there under its watchdog for its restart grace (13 s more); it moves only if the agent is not back by then')
  t.is(lostReason(l, undefined, 0, { watchdogLeftMs: 0, leftMs: 21_100 }), 'its node h1 is not alive; its agent stopped for a restart and, as this node last heard, was not back within its restart grace, so its watchdog has killed the VM there unless the agent came back just in time; it moves once that node\'s fence timeout has passed, within 22 s')
  t.regex(lostReason(l, undefined, 40_000, { watchdogLeftMs: 0, leftMs: 21_100 }), /within 40 s$/, 'or later, while a lent vote holds takeovers back')
  t.regex(lostReason({ ...l, fitsNowhere: 'no node fits (2 not alive)' }, undefined, 0, { watchdogLeftMs: 0, leftMs: 5000 }), /watchdog has killed the VM there unless the agent came back just in time; no other node fits it: no node fits \(2 not alive\)$/)
  t.regex(lostReason(l), /may run on there under its watchdog for its restart grace; it moves only if/, 'no count known: as before')
})

test('VMs that should run, hold no lease and fit nowhere are unplaced; stopped ones and ones that fit are not', t => {
  const nodes = [node('a', true), node('b', true)]
  const d = doc([vm('held', 1.5), vm('huge', 3), vm('fits', 0.25), vm('off', 3, 'stopped')], [lease('held', 'a', 1.5)])
  const u = unplacedVms(d, nodes)
  t.deepEqual(u.map(x => x.vm), ['huge'])
  t.regex(u[0]!.reason, /no node fits/)
})

test('vgrid ha: a node without a majority in sight does not say the others\' VMs run nowhere, only that it cannot tell', async t => {
  const { haLines } = await import('../../node/dvmm/cli.ts')
  const lost = [{ node: 'b', name: 'h-b', vms: ['web', 'db'], reasons: ['x', 'x'], reason: 'no majority of the grid in sight to take it over' }]
  const blind = haLines({ ok: false, stranded: [], noMajority: 'sees 1 of 3 roll members', lost } as never)
  t.true(blind.includes('  h-b is not in sight: whether web, db run there is not known here, and nothing is taken over from here'), blind.join('\n'))
  t.false(blind.some(l => /run(s)? nowhere/.test(l)))
  const seen = haLines({ ok: false, stranded: [], lost: [{ ...lost[0]!, vms: ['web'], reasons: ['no node fits'], reason: 'no node fits' }] } as never)
  t.regex(seen.join('\n'), /h-b is not alive: .*web.* runs nowhere, no other node fits/)
  const restarting = haLines({ ok: false, stranded: [], lost: [{ ...lost[0]!, vms: ['web'], reasons: ['lacks label host=b'], reason: 'lacks label host=b', restarting: true }] } as never)
  t.deepEqual(restarting, ['HA not ok:', '  h-b is restarting: web runs on there for its restart grace; should it not come back, no other node fits it: web (lacks label host=b)'])
  const thin = haLines({ ok: false, stranded: [], noMargin: '2 of 3 roll members are in sight and a majority is 2: losing any one of them fences every node' })
  t.deepEqual(thin, ['HA not ok:', '  2 of 3 roll members are in sight and a majority is 2: losing any one of them fences every node'])
  // a crowded anti-affinity group another node could spread (bb47)
  const crowded = haLines({ ok: true, stranded: [], crowded: [{ group: 'web', node: 'host1', vms: ['web1', 'web2'], could: ['host3', 'host4'] }] })
  t.deepEqual(crowded, ['HA ok: every VM could be placed again if any one node failed', '  anti-affinity group web: web1 and web2 share host1 (losing it stops both), though host3 and host4 could take one now with none of the group (vgrid vm stop VM, then vgrid vm start VM, places it anew)'])
  // vote locks that only the loss of one more member would bring to bear are said (bb47)
  const locked = haLines({ ok: true, stranded: [], failover: { ms: 6500, why: 'the fence timeout 5 s + a margin of 1.5 s', ifLost: { nodes: ['host3', 'host4'], ms: 55_000, locked: ['host1', 'host2'] } } })
  t.deepEqual(locked, ['HA ok: every VM could be placed again if any one node failed', '  a dead node\'s VMs start elsewhere 6.5 s after it was last heard of: the fence timeout 5 s + a margin of 1.5 s', '  but were host3 or host4 lost now, its VMs would start elsewhere only 55.0 s from now: host1 and host2 came back from a restart lately and count towards a takeover only once the votes they may have lent, to keep VMs alive elsewhere, have lapsed'])
})

test('a lost VM of a node stopped for a restart is restarting as the caller counts it (its clock, from the last beat), not by the record\'s own stamp', t => {
  const nodes = [node('a', true), node('c', false)]
  const d = { ...doc([vm('big', 1.5)], [lease('big', 'c', 1.5)]), roll: new Map([['c', { node: 'c', name: 'h-c', restart: { since: 1, fenceMs: 58_334 } }]]) } as unknown as DocView
  // the record's stamp is long past by this node's wall clock (a node behind, or a viewer ahead): the caller's count decides
  t.true(lostVms(d, nodes, undefined, undefined, () => true)[0]!.restarting === true)
  t.is(lostVms(d, nodes, undefined, undefined, () => false)[0]!.restarting, undefined)
  t.is(lostVms(d, nodes)[0]!.restarting, undefined, 'by default its stamp: long over')
})
