// One DVMM decision step (node/dvmm/decide.ts) on hand-made inputs and a fake clock:
// claims, settle before start, takeover timing, fencing, drain, losers killed,
// reservations; and the create-request checks (node/dvmm/vms.ts).
import test from 'ava'
import { claimMatchesSpec, claimStillApplies, creditWaits, decide, lockedWaitsIfLost, startsStillDue, takeoverMajoritySince, type DecideInput } from '../../node/dvmm/decide.ts'
import { vmDraft } from '../../node/dvmm/vms.ts'
import { diskOwners, diskTaken } from '../../node/dvmm/disk-owner.ts'
import type { DocView, LeaseView } from '../../node/dvmm/view.ts'
import type { Lease, RollEntry, Vm } from '../../crdt/index.ts'
import { activeFenceMs, fenced, holderNoticeMs, positionOf, takeover, type NodeView } from '../../crdt/placement/index.ts'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

/** a FileCheck for which no kernel, initrd or image exists (programs do) */
const missing = (p: string, kind: string): string | null => kind === 'program' ? null : `${p} does not exist or is not a file`

const GiB = 2 ** 30
const A = 'nodeA'
const B = 'nodeB'
const C = 'nodeC'
const vm = (id: string, cpu = 1, extra: Partial<Vm> = {}): Vm => ({ id, name: id, app: null, desired: 'running', spec: { driver: 'process', cpu, memoryBytes: GiB, volumes: [], constraints: {}, command: ['x'] }, at: 1, by: A, ...extra })
const lease = (v: string, holder: string, extra: Partial<Lease> = {}): Lease => ({ vm: v, holder, epoch: 1, cpu: 1, memoryBytes: GiB, status: 'running', at: 1, by: holder, ...extra })
const lv = (...claims: Lease[]): LeaseView => ({ winner: [...claims].sort((x, y) => y.epoch - x.epoch || (x.holder < y.holder ? -1 : 1))[0]!, claims })
const roll = (id: string, draining = false): RollEntry => ({ node: id, name: id, joined: 1, draining, at: 1, by: id })
const node = (id: string, extra: Partial<NodeView> = {}): NodeView => ({ id, name: id, alive: true, draining: false, capacity: { cpu: 4, memoryBytes: 8 * GiB }, labels: {}, ...extra })
const majority = fenced({ rollSize: 3, aliveSeen: 3, lastMajorityAt: 0, now: 0, fenceTimeoutMs: 5000 })

function input (over: Partial<DecideInput> & { vms?: Vm[], leases?: LeaseView[] } = {}): DecideInput {
  const doc: DocView = {
    vms: new Map((over.vms ?? []).map(v => [v.id, v])),
    leases: new Map((over.leases ?? []).map(l => [l.winner.vm, l])),
    roll: new Map([A, B, C].map(n => [n, roll(n)]))
  }
  const { vms: _v, leases: _l, ...rest } = over
  return {
    me: A, now: 10_000, doc, nodes: [node(A), node(B), node(C)],
    holderAlive: () => true, lastHeard: () => 0, fence: majority,
    runs: new Set(), busy: new Set(), claimedAt: new Map(), conflictSeenAt: new Map(), unplacedSince: new Map(),
    capacity: { cpu: 4, memoryBytes: 8 * GiB },
    cfg: { settleMs: 1000, fenceTimeoutMs: 5000, takeoverMarginMs: 1000, strategy: 'spread' },
    ...rest
  }
}

test('new VMs: each agent claims exactly the ones the shared ranking gives it, and all are claimed by someone', t => {
  const vms = Array.from({ length: 9 }, (_, i) => vm(`v${i}`))
  const claimed = [A, B, C].map(me => decide(input({ me, vms })).claims.map(c => c.vm))
  t.is(claimed.flat().length, 9)
  t.is(new Set(claimed.flat()).size, 9, 'no VM claimed by two agents that see the same inputs')
  t.true(claimed.every(c => c.length > 0), 'spread: every node gets some')
})

test('a claim starts its VM only once settled, and with a majority in sight', t => {
  const l = lv(lease('v', A, { status: 'claimed' }))
  t.deepEqual(decide(input({ vms: [vm('v')], leases: [l], claimedAt: new Map([['v', 9500]]) })).start, [])
  t.is(decide(input({ vms: [vm('v')], leases: [l], claimedAt: new Map([['v', 9500]]) })).wakeInMs, 500)
  t.deepEqual(decide(input({ vms: [vm('v')], leases: [l], claimedAt: new Map([['v', 9000]]) })).start, ['v'])
  const noMajority = fenced({ rollSize: 3, aliveSeen: 1, lastMajorityAt: 9000, now: 10_000, fenceTimeoutMs: 5000 })
  t.deepEqual(decide(input({ vms: [vm('v')], leases: [l], fence: noMajority })).start, [])
})

test('a loser that runs the VM kills it at once; a fenced node kills everything and claims nothing', t => {
  const d = decide(input({ vms: [vm('v'), vm('w')], leases: [lv(lease('v', A), lease('v', B, { epoch: 2 }))], runs: new Set(['v']) }))
  t.deepEqual(d.kill.map(k => k.vm), ['v'])
  const f = fenced({ rollSize: 3, aliveSeen: 1, lastMajorityAt: 0, now: 10_000, fenceTimeoutMs: 5000 })
  const df = decide(input({ vms: [vm('v'), vm('w')], leases: [lv(lease('v', A))], runs: new Set(['v']), fence: f }))
  t.deepEqual(df.kill.map(k => k.vm), ['v'])
  t.deepEqual(df.claims, [])
})

test('a fenced node kills busy VMs too: a graceful stop or a start in flight', t => {
  const f = fenced({ rollSize: 3, aliveSeen: 1, lastMajorityAt: 0, now: 10_000, fenceTimeoutMs: 5000 })
  const d = decide(input({ vms: [vm('v'), vm('s')], leases: [lv(lease('v', A)), lv(lease('s', A, { status: 'claimed' }))], runs: new Set(['v']), busy: new Set(['v', 's']), fence: f }))
  t.deepEqual(d.kill.map(k => k.vm).sort(), ['s', 'v'])
  t.regex(d.kill[0]!.why, /^fenced: /)
})

test('a takeover whose epoch would pass the document\'s largest is not claimed: the VM is blocked with the reason', t => {
  const base = { vms: [vm('v'), vm('w')], leases: [lv(lease('v', C, { epoch: Number.MAX_SAFE_INTEGER })), lv(lease('w', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 0 }
  const all = [A, B].map(me => decide(input({ ...base, me, now: 20_000 })))
  t.false(all.some(d => d.claims.some(c => c.vm === 'v')), 'nobody claims v')
  t.true(all.some(d => d.claims.some(c => c.vm === 'w' && c.epoch === 4)), 'w is taken over as usual')
  for (const d of all) {
    t.deepEqual(d.blocked.map(b => b.vm), ['v'])
    t.regex(d.blocked[0]!.reason, /epoch 9007199254740991 is at the largest/)
  }
})

test('a wait that starts in the future (time credited after failed steps) never keeps the best-ranked node from claiming', t => {
  const nodes = [node(A), node(B), node(C)]
  const first = Array.from({ length: 50 }, (_, i) => vm(`b${i}`)).find(v => positionOf({ vm: v.id, cpu: 1, memoryBytes: GiB, constraints: {} }, nodes, new Map(), A).pos === 0)!
  const d = decide(input({ vms: [first], now: 10_000, unplacedSince: new Map([[first.id, 60_000]]) }))
  t.deepEqual(d.claims.map(c => c.vm), [first.id])
})

test('takeover of a dead holder: only after fence timeout + margin from when it was last heard of, with epoch + 1', t => {
  const base = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000 }
  const early = decide(input({ ...base, now: 10_999 }))
  t.deepEqual(early.claims, [])
  t.is(early.wakeInMs, 1)
  const [me] = [A, B].filter(n => decide(input({ ...base, me: n, now: 11_000 })).claims.length > 0)
  const d = decide(input({ ...base, me: me!, now: 11_000 }))
  t.like(d.claims[0], { vm: 'v', epoch: 4, from: C })
})

test('in a roll larger than a node\'s watchers + 1, a takeover also waits for the holder\'s silence timeout: cut off from all, it finds the members it hears no heartbeat from silent only then (rv21)', t => {
  const detection = { watchers: 4, silenceMs: 30_000 }
  t.is(holderNoticeMs(5, detection), 0, 'five: every member hears every other')
  t.is(holderNoticeMs(6, detection), 30_000)
  t.is(holderNoticeMs(10, undefined), 0, 'no detection given: as before')
  // rv23: the longest silence timeout any node advertises (settings, table sizes differ)
  t.is(holderNoticeMs(6, detection, [{}, { silenceMs: 42_000 }, { silenceMs: 12_000 }]), 42_000)
  // rv23: watchers are picked among every agent connected, on the roll or not: a roll of
  // five with a sixth agent about is no longer "every member watches every other"
  const five = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000 }
  t.true([A, B].some(me => decide(input({ ...five, me, now: 11_000, detection: { ...detection, agents: 3 } })).claims.length > 0), 'three agents: no notice')
  t.deepEqual([A, B].flatMap(me => decide(input({ ...five, me, now: 11_000, detection: { ...detection, agents: 6 } })).claims), [], 'six agents about: the notice holds')
  // a roll of ten; C, the holder, last heard at 5 s
  const ten = ['n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9'].map(n => [n, roll(n)] as const)
  const base = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000, detection }
  const at = (now: number, me = A): ReturnType<typeof decide> => {
    const i = input({ ...base, me, now, nodes: [node(A), node(B), node(C, { alive: false }), ...ten.map(([n]) => node(n))] })
    for (const [n, e] of ten) i.doc.roll.set(n, e)
    return decide(i)
  }
  t.deepEqual(at(11_000).claims, [], 'not after fence timeout + margin alone')
  t.is(at(11_000).wakeInMs, 30_000)
  const [me] = [A, B].filter(n => at(41_000, n).claims.length > 0)
  t.like(at(41_000, me).claims[0], { vm: 'v', epoch: 4, from: C })
  // the same in takeover's own words
  const r = takeover({ holderAlive: false, holderLastHeard: 5000, now: 11_000, fenceTimeoutMs: 5000, marginMs: 1000, noticeMs: 30_000 })
  t.false(r.allowed)
  t.regex(r.reason, /fence timeout \+ the time the holder may take to find itself cut off from all \(30000 ms\) \+ margin \(36000 ms\)/)
})

test('in a roll larger than watchers + 1 whose every node keeps a liveness table, a takeover waits the longest liveness window, not the silence timeout', t => {
  const detection = { watchers: 4, silenceMs: 30_000, livenessMs: 2500 }
  const all = (ms: number[]): Array<{ silenceMs: number, livenessMs: number }> => ms.map(livenessMs => ({ silenceMs: 30_000, livenessMs }))
  t.is(holderNoticeMs(5, detection, all([2500])), 0, 'five: every member hears every other')
  t.is(holderNoticeMs(6, detection, all([2500, 2500])), 2500)
  t.is(holderNoticeMs(6, detection, all([2500, 4000])), 4000, 'the longest advertised')
  t.is(holderNoticeMs(6, detection, [...all([2500]), { silenceMs: 42_000 }]), 42_000, 'a node of an older release (no window): the longest silence timeout')
  t.is(holderNoticeMs(6, { watchers: 4, silenceMs: 30_000 }, all([2500])), 30_000, 'this node has no window itself')
  // a roll of ten, every node advertising a window of 2.5 s; C, the holder, last heard at 5 s
  const ten = ['n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9'].map(n => [n, roll(n)] as const)
  const base = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000, detection }
  const w = { silenceMs: 30_000, livenessMs: 2500 }
  const at = (now: number, me = A): ReturnType<typeof decide> => {
    const i = input({ ...base, me, now, nodes: [node(A, w), node(B, w), node(C, { alive: false, ...w }), ...ten.map(([n]) => node(n, w))] })
    for (const [n, e] of ten) i.doc.roll.set(n, e)
    return decide(i)
  }
  t.deepEqual(at(11_000).claims, [], 'not after fence timeout + margin alone')
  t.is(at(11_000).wakeInMs, 2500)
  t.deepEqual([A, B].flatMap(me => at(13_499, me).claims), [])
  const [me] = [A, B].filter(n => at(13_500, n).claims.length > 0)
  t.like(at(13_500, me).claims[0], { vm: 'v', epoch: 4, from: C })
})

test('takeover waits for the longest fence timeout any node advertises, the dead holder\'s included', t => {
  // C (dead, last heard at 5000) ran with a 20 s fence: it kills its VMs only by 25 000
  const nodes = [node(A), node(B), node(C, { alive: false, fenceTimeoutMs: 20_000 })]
  const base = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000, nodes }
  const claimsAt = (now: number): number => [A, B].map(me => decide(input({ ...base, me, now })).claims.length).reduce((x, y) => x + y, 0)
  t.is(claimsAt(11_000), 0, 'not after this node\'s own 5 s fence + margin')
  t.is(claimsAt(25_999), 0)
  t.is(decide(input({ ...base, now: 11_000 })).wakeInMs, 15_000)
  t.is(claimsAt(26_000), 1, 'after the holder\'s 20 s fence + margin')
  // a shorter one advertised changes nothing: this node's own holds
  const short = [node(A), node(B), node(C, { alive: false, fenceTimeoutMs: 3000 })]
  t.is([A, B].map(me => decide(input({ ...base, nodes: short, me, now: 11_000 })).claims.length).reduce((x, y) => x + y, 0), 1)
})

test('a holder stopped for a restart (its roll entry\'s restart record): takeover waits the fence it recorded, capped at the longest setting', t => {
  const base = { vms: [vm('v')], leases: [lv(lease('v', C, { epoch: 3 }))], holderAlive: (n: string) => n !== C, lastHeard: () => 5000 }
  const withRecord = (fenceMs: number): Partial<DecideInput> => {
    const doc = input(base).doc
    doc.roll.set(C, { ...roll(C), restart: { fenceMs, since: 1 } })
    return { ...base, doc }
  }
  const claimsAt = (now: number, over: Partial<DecideInput>): number => [A, B].map(me => decide(input({ ...over, me, now })).claims.length).reduce((x, y) => x + y, 0)
  t.is(claimsAt(11_000, base), 1, 'without a record: the usual fence + margin')
  t.is(claimsAt(11_000, withRecord(50_000)), 0, 'with one: not after the usual fence')
  t.is(claimsAt(55_999, withRecord(50_000)), 0)
  t.is(decide(input({ ...withRecord(50_000), now: 11_000 })).wakeInMs, 45_000)
  t.is(claimsAt(56_000, withRecord(50_000)), 1, 'after the recorded fence + margin')
  t.is(claimsAt(11_000, withRecord(2000)), 1, 'a record shorter than the usual fence changes nothing')
  t.is(claimsAt(606_000, withRecord(Number.MAX_SAFE_INTEGER)), 1, 'a damaged record holds the VM for the longest fence setting (10 min), not for ever')
  // a cleared record (the next run saw a majority) counts as none
  const cleared = input(base).doc
  cleared.roll.set(C, { ...roll(C), restart: null })
  t.is(claimsAt(11_000, { ...base, doc: cleared }), 1)
})

test('activeFenceMs: never longer than another member\'s own setting; one not known counts as the fence last run', t => {
  const base = { configuredMs: 20_000, legacyMs: 5000 }
  t.is(activeFenceMs({ ...base, others: [20_000, 30_000] }), 20_000, 'set alike (or longer) everywhere: the setting')
  t.is(activeFenceMs({ ...base, others: [20_000, 8000] }), 8000, 'a member that waits 8 s of its own, whatever it knows of this node')
  t.is(activeFenceMs({ ...base, others: [20_000, null] }), 5000, 'an agent that advertises none waits 5 s')
  // a member with no advert here (not met yet, or met only in the roll): the fence this node ran with last
  t.is(activeFenceMs({ ...base, previousMs: 5000, others: [20_000, undefined] }), 5000)
  t.is(activeFenceMs({ ...base, previousMs: 5000, others: [20_000] }), 20_000, 'once it is known, the previous run no longer counts')
  t.is(activeFenceMs({ ...base, others: [undefined] }), 20_000, 'a new data dir: nothing ran shorter')
  t.is(activeFenceMs({ ...base, others: [] }), 20_000, 'alone')
  t.is(activeFenceMs({ ...base, configuredMs: 5000, previousMs: 20_000, others: [undefined, 20_000] }), 5000, 'never longer than the setting')
})

test('drain: the draining node stops its VMs (then releases) and nobody plans onto it', t => {
  const i = input({ vms: [vm('v'), vm('new')], leases: [lv(lease('v', A))], runs: new Set(['v']), nodes: [node(A, { draining: true }), node(B), node(C)] })
  const d = decide(i)
  t.deepEqual(d.stop.map(s => s.vm), ['v'])
  t.false(d.claims.some(c => c.vm === 'new'), 'A does not claim while draining')
  t.true([B, C].some(me => decide({ ...i, me }).claims.some(c => c.vm === 'new')), 'another node does')
})

test('a VM desired stopped keeps its lease with the node that ran it, set to stopped (its console is there); a removed VM\'s lease is released', t => {
  const stopped = vm('v', 1, { desired: 'stopped' })
  const d = decide(input({ vms: [stopped], leases: [lv(lease('v', A))] }))
  t.deepEqual(d.park, [{ vm: 'v', why: 'desired stopped' }])
  t.deepEqual(d.release, [])
  t.deepEqual(decide(input({ vms: [stopped], leases: [lv(lease('v', A, { status: 'failed' }))] })).park.map(p => p.vm), ['v'], 'a failed one too')
  const kept = decide(input({ vms: [stopped], leases: [lv(lease('v', A, { status: 'stopped' }))] }))
  t.deepEqual([kept.park, kept.release, kept.claims], [[], [], []], 'already stopped: left so, reserving nothing, until started again')
  t.deepEqual(decide(input({ vms: [stopped], leases: [lv(lease('v', A))], runs: new Set(['v']) })).stop.map(s => s.vm), ['v'], 'while it runs: stopped first')
  t.deepEqual(decide(input({ vms: [], leases: [lv(lease('v', A, { status: 'stopped' }))] })).release.map(r => r.vm), ['v'], 'the VM removed: released')
  t.deepEqual(decide(input({ me: B, vms: [stopped], leases: [lv(lease('v', A))] })).park, [], 'only the holder')
})

test('reservations: the plan may pick a node, but it never claims past its capacity (counting its contested claims)', t => {
  const vms = [vm('big', 3)]
  // A already holds 2 cpu, one of them a claim it may be losing
  const leases = [lv(lease('x', A, { cpu: 1 })), lv(lease('y', A, { cpu: 1 }), lease('y', B, { cpu: 1 }))]
  const d = decide(input({ vms, leases, nodes: [node(A)], capacity: { cpu: 4, memoryBytes: 8 * GiB } }))
  t.deepEqual(d.claims, [])
  t.is(d.refused.length, 0, 'the plan itself already sees A too full (from the winning leases)')
  const d2 = decide(input({ vms: [vm('z', 2)], leases, nodes: [node(A, { capacity: { cpu: 8, memoryBytes: 8 * GiB } })], capacity: { cpu: 3, memoryBytes: 8 * GiB } }))
  t.is(d2.refused.length, 1, 'own reservations (2 of 3 cpu) refuse a 2-cpu claim the plan allowed')
})

test('fallback to the next-ranked node: after four settle windows of waiting, but time this agent\'s loop lost does not count', t => {
  const nodes = [node(A), node(B), node(C)]
  // a VM whose ranking puts this node (A) second
  const second = Array.from({ length: 50 }, (_, i) => vm(`f${i}`)).find(v => positionOf({ vm: v.id, cpu: 1, memoryBytes: GiB, constraints: {} }, nodes, new Map(), A).pos === 1)!
  const at = (since: number): DecideInput => input({ vms: [second], now: 10_000, unplacedSince: new Map([[second.id, since]]) })
  t.deepEqual(decide(at(7_000)).claims, [], 'waited 3 s of the 4 s')
  t.deepEqual(decide(at(6_000)).claims.map(c => c.vm), [second.id], 'waited 4 s: the best-ranked node has not claimed it, so this one does')
  // steps every second on time: all of the wait counts
  let since = new Map([[second.id, 6_000]])
  for (let s = 0; s < 4; s++) since = creditWaits(since, 1000, 1020)
  t.deepEqual(decide(input({ vms: [second], now: 10_000, unplacedSince: since })).claims.map(c => c.vm), [second.id])
  // the loop stalled 8 s between two steps (every agent's claims and sync were as late):
  // only one step's worth of that counts, and the fallback waits
  since = creditWaits(new Map([[second.id, 1_000]]), 9_000, 1_020)
  t.deepEqual(decide(input({ vms: [second], now: 10_000, unplacedSince: since })).claims, [])
  t.true(decide(input({ vms: [second], now: 10_000, unplacedSince: since })).wakeInMs > 0)
})

test('a VM left failed or stopped by the crash rule is not placed again until started', t => {
  const d = decide(input({ vms: [vm('v')], leases: [lv(lease('v', B, { status: 'stopped', reason: '3 crashes' }))] }))
  t.deepEqual(d.claims, [])
  t.deepEqual(d.unplaced, [])
})

test('create request: each wrong field gets an error naming it', t => {
  const doc: DocView = { vms: new Map([['taken', vm('taken')]]), leases: new Map(), roll: new Map() }
  const nodes = [node(A)]
  const ok = { name: 'web', cpu: 1, memory: '512M', driver: 'process', command: ['/bin/true'] }
  t.like(vmDraft(ok, doc, nodes), { id: 'web', spec: { memoryBytes: 512 * 2 ** 20 } })
  const bad = (patch: Record<string, unknown>, field: RegExp): void => { t.throws(() => vmDraft({ ...ok, ...patch }, doc, nodes, missing), { message: field }) }
  bad({ memory: 0 }, /^memory:/)
  bad({ memory: 'lots' }, /^memory:/)
  bad({ driver: 'docker' }, /^driver:/)
  bad({ driver: 'qemu', command: undefined, kernel: '/no/such/vmlinux' }, /^kernel: \/no\/such\/vmlinux does not exist/)
  bad({ cpu: 64 }, /^cpu: 64 vCPUs is more than any node has/)
  bad({ memory: '100T' }, /^memory: 100\.0 TiB is more than any node has \(largest: \d+\.\d (GiB|TiB|MiB)\)/)
  bad({ name: 'Bad Name' }, /^name: "Bad Name" must be 1-63 lowercase letters/)
  bad({ name: 'x'.repeat(100) }, /^name: "x{40}…" must be/)
  bad({ command: undefined }, /^command:/)
  bad({ restart: 'sometimes' }, /^restart:/)
  // what can only fail later, or reserves almost nothing, is refused now, naming the bound
  bad({ cpu: 1e-300 }, /^cpu: 1e-300 is below 0.01, the smallest share a VM gets/)
  bad({ cpu: '0.2' }, /^cpu: must be a JSON number of vCPUs above 0, not a string \("0.2"\)/)
  bad({ cpu: 1e9 }, /^cpu: 1000000000 vCPUs is more than the 4096 a VM may have/)
  bad({ cpu: JSON.parse('1e400') as number }, /^cpu: reads as infinite, more than the 4096 vCPUs a VM may have/)
  bad({ memory: 1 }, /^memory: 1 B is below the 1M a process VM needs at least/)
  bad({ memory: '128' }, /^memory: 128 is below the 1M a process VM needs at least \(a number alone is bytes: 128M\?\)$/)
  bad({ memory: '99999999T' }, /^memory: 99999999T is more than any node has/)
  bad({ memory: 1048576.5 }, /^memory: 1048576.5 is not a whole number of bytes/)
  bad({ command: Array.from({ length: 900 }, () => 'x') }, /^command: has 900 arguments, more than the 256/)
  bad({ command: ['/bin/x', 'y'.repeat(5000)] }, /^command\[1\]: is longer than 4096 characters/)
  // the other kind's field is said before its file is looked for
  bad({ kernel: '/k' }, /^kernel: a process VM runs its command; kernel is for a qemu VM/)
  bad({ driver: 'qemu', command: undefined, kernel: '../../etc/passwd' }, /^kernel: \.\.\/\.\.\/etc\/passwd is not an absolute path/)
  bad({ command: ['/bin/sleep', '1000\u0000x'] }, /^command\[1\]: holds a NUL byte/)
  bad({ command: ['', 'x'] }, /^command\[0\]: is empty: the program to run must be named/)
  bad({ command: ['relative/path'] }, /^command\[0\]: "relative\/path" is a relative path: give the program's absolute path/)
  // checked on this node's files (bb34: both were taken, then failed at every start)
  t.throws(() => vmDraft({ ...ok, command: ['/no/such/prog'] }, doc, nodes), { message: /^command\[0\]: \/no\/such\/prog does not exist on this node or is not a file$/ })
  const plain = join(mkdtempSync(join(tmpdir(), 'vgrid-prog-')), 'plain')
  writeFileSync(plain, 'not a program', { mode: 0o644 })
  t.teardown(() => { rmSync(dirname(plain), { recursive: true, force: true }) })
  t.throws(() => vmDraft({ ...ok, command: [plain] }, doc, nodes), { message: /^command\[0\]: \S+\/plain is not executable \(mode 644\)$/ })
  t.like(vmDraft({ ...ok, command: ['sleep', '1'] }, doc, nodes), { spec: { command: ['sleep', '1'] } }, 'a bare name is looked up where it runs')
  t.like(vmDraft({ ...ok, command: ['/opt/cuda/bin/train'], constraints: { gpu: '1' } }, doc, nodes), { spec: { command: ['/opt/cuda/bin/train'] } }, 'a VM bound to labelled nodes may run what only they have (rv39)')
  t.throws(() => vmDraft({ ...ok, driver: 'qemu', command: undefined, image: '/etc/passwd' }, doc, nodes), { message: /^image: \/etc\/passwd is not a bootable disk image: neither qcow2 nor a raw disk with a boot sector/ })
  t.deepEqual(JSON.stringify(vmDraft({ ...ok, command: ['/usr/bin/printf', '%s|%s\n', '', 'x'] }, doc, nodes)).includes('"/usr/bin/printf","%s|%s\\n","","x"'), true, 'an empty argument is one')
  bad({ restrat: 'never' }, /unknown field "restrat"/)
  bad({ labels: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, 'v'])) }, /^labels: has 5000 entries, more than the 64 a VM may carry/)
  // the same keys as the CLI's --label and the node labels take
  bad({ labels: { '': 'x' } }, /^labels: key "" is not a label key/)
  bad({ labels: { 'a b': 'x' } }, /^labels: key "a b" is not a label key/)
  t.like(vmDraft({ ...ok, labels: { 'tier.example/web-1': 'x' } }, doc, nodes), { spec: { labels: { 'tier.example/web-1': 'x' } } })
  // wrong in itself under a name in use: the field is named, not the name (a reviewer's: 409 name_in_use)
  bad({ name: 'taken', constraints: null }, /^constraints:/)
  bad({ name: 'taken', labels: { 'a b': 'x' } }, /^labels: key "a b"/)
  t.throws(() => vmDraft({ ...ok, name: 'taken' }, doc, nodes), { message: /a VM named "taken" already exists/ })
  t.throws(() => vmDraft({ ...ok, kernel: '/k' }, doc, nodes, () => null), { message: /^kernel: a process VM runs its command; kernel is for a qemu VM/ })
  t.throws(() => vmDraft({ ...ok, driver: 'qemu', kernel: '/k' }, doc, nodes, () => null), { message: /^command: a qemu VM boots a kernel or an image; a command is for a process VM/ })
  t.throws(() => vmDraft({ ...ok, driver: 'qemu', command: undefined, kernel: '/k', memory: '1M' }, doc, nodes, () => null), { message: /^memory: 1M is below the 16M a qemu VM needs/ })
  // a directory is not a kernel (the default check, on this machine's own files)
  t.throws(() => vmDraft({ ...ok, driver: 'qemu', command: undefined, kernel: '/' }, doc, nodes), { message: /^kernel: \/ does not exist or is not a file/ })
  // the user a process VM runs as: a name or a uid, process VMs only
  t.like(vmDraft({ ...ok, user: 'nobody' }, doc, nodes), { spec: { user: 'nobody' } })
  t.like(vmDraft({ ...ok, user: '1000' }, doc, nodes), { spec: { user: '1000' } })
  bad({ user: 'Not A User' }, /^user: must be a user name/)
  bad({ user: 7 }, /^user: must be a user name/)
  t.throws(() => vmDraft({ ...ok, driver: 'qemu', command: undefined, kernel: '/k', user: 'nobody' }, doc, nodes, () => null), { message: /^user: only a process VM runs as a user/ })
  t.throws(() => vmDraft({ ...ok, name: 'taken' }, doc, nodes), { message: /already exists/ })
  // a request wrong in itself says what is wrong, not that the name is taken
  t.throws(() => vmDraft({ ...ok, name: 'taken', driver: 'kvm' }, doc, nodes), { message: /^driver: must be "qemu" or "process", not "kvm"/ })
  t.throws(() => vmDraft({ ...ok, name: 'taken', restart: 'sometimes' }, doc, nodes), { message: /^restart:/ })
  t.throws(() => vmDraft({ ...ok, driver: undefined }, doc, nodes), { message: /^driver: is missing: "qemu" or "process"/ })
  t.throws(() => vmDraft('nope', doc, nodes), { message: /^body:/ })
  // volumes: by path or id, qemu only, each once, and no other VM's disk
  const vols = { find: (r: string) => ['/shop/db', 'vol-1'].includes(r) ? { id: 'vol-1', path: '/shop/db', snapshots: ['s1'] } : r === '/shop/logs' ? { id: 'vol-2', path: '/shop/logs', snapshots: [] } : undefined, usedBy: (id: string) => id === 'vol-2' ? 'logger' : undefined }
  const q = { ...ok, driver: 'qemu', command: undefined, kernel: '/k' }
  t.deepEqual(vmDraft({ ...q, volumes: ['/shop/db'] }, doc, nodes, () => null, vols).spec.volumes, ['vol-1'])
  t.throws(() => vmDraft({ ...ok, volumes: ['/shop/db'] }, doc, nodes, () => null, vols), { message: /^volumes: a process VM cannot attach volumes/ })
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/none'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: no volume "\/shop\/none"/ })
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/db', 'vol-1'] }, doc, nodes, () => null, vols), { message: /^volumes\[1\]: \/shop\/db is listed twice/ })
  // a path without its leading slash (bb34: "no volume" alone)
  t.throws(() => vmDraft({ ...q, volumes: ['shop/db'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: no volume "shop\/db" \(a volume's path starts with \/: \/shop\/db\)$/ })
  t.throws(() => vmDraft({ ...q, volumes: ['relative'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: no volume "relative" \(a volume's path starts with \/, or give its id, vol-\.\.\.\)$/ })
  // a snapshot, and an empty path, said as what they are (a tester got "no volume" and "must be an array")
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/db@s1'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: "\/shop\/db@s1" is a snapshot of \/shop\/db, read-only: .*vgrid vol clone \/shop\/db@s1 NEWPATH/ })
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/db@nosuch'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: \/shop\/db has no snapshot "nosuch" \(it has s1\)$/ }, 'a snapshot that does not exist is not said to be one (a tester)')
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/logs@s1'] }, doc, nodes, () => null, vols), { message: /^volumes\[0\]: \/shop\/logs has no snapshot "s1"$/ })
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/db', ''] }, doc, nodes, () => null, vols), { message: /^volumes\[1\]: is empty: give a volume's path or id/ })
  t.throws(() => vmDraft({ ...q, volumes: ['/shop/logs'] }, doc, nodes, () => null, vols), { message: /already a disk of VM logger/ })
  t.throws(() => vmDraft({ ...q, volumes: 'vol-1' }, doc, nodes, () => null, vols), { message: /^volumes: must be an array/ })
  // terminals: names that can be host names, each once, an input or an output
  t.like(vmDraft({ ...ok, inputs: ['http', 'admin'], outputs: ['db'] }, doc, nodes).spec, { inputs: ['http', 'admin'], outputs: ['db'] })
  t.false('inputs' in vmDraft(ok, doc, nodes).spec, 'none declared: none stored')
  bad({ inputs: 'http' }, /^inputs: must be an array/)
  bad({ outputs: ['9db'] }, /^outputs\[0\]: "9db" is not a terminal name/)
  bad({ outputs: ['db', 'db.x'] }, /^outputs\[1\]: "db.x" is not a terminal name/)
  bad({ inputs: ['a', 'b', 'a'] }, /^inputs\[2\]: "a" is listed twice/)
  bad({ outputs: ['db', 'DB'] }, /^outputs\[1\]: "DB" is listed twice \(names are host names: case does not count\)/)
  bad({ outputs: ['LocalHost'] }, /^outputs\[0\]: "localhost" cannot be a terminal: inside the VM it names the VM itself/)
  bad({ inputs: ['db'], outputs: ['db'] }, /^outputs: "db" is an input too/)
  bad({ inputs: ['Db'], outputs: ['db'] }, /^outputs: "Db" is an input too/)
  bad({ inputs: Array.from({ length: 65 }, (_, i) => `t${i}`) }, /^inputs: must be an array of at most 64/)
})

test('claimMatchesSpec: a claim is written only for the VM it was decided for, with the demand it reserves (rv21: rm + create of the name between read and write)', t => {
  const made = vm('v', 1, { created: 100 })
  // the node the ranking gives it to claims it
  const c = [A, B, C].flatMap(me => decide(input({ me, vms: [made] })).claims)[0]
  t.like(c, { vm: 'v', cpu: 1, made: 100 })
  t.true(claimMatchesSpec(made, c!))
  t.false(claimMatchesSpec(undefined, c!), 'removed meanwhile')
  t.false(claimMatchesSpec(vm('v', 8, { created: 200 }), c!), 'made again, bigger: its demand was not what was reserved')
  t.false(claimMatchesSpec(vm('v', 1, { created: 200 }), c!), 'made again alike: decided again (its constraints may differ)')
})

test('claimStillApplies: a placement only where there is no lease, a takeover only of the lease it took over', t => {
  t.true(claimStillApplies(undefined, { epoch: 1 }))
  t.false(claimStillApplies(lease('v', B, { status: 'claimed' }), { epoch: 1 }), 'a claim that arrived after the read is not written over')
  t.true(claimStillApplies(lease('v', B, { epoch: 3 }), { epoch: 4, from: B }))
  t.false(claimStillApplies(lease('v', C, { epoch: 4 }), { epoch: 4, from: B }), 'another node took it over first')
  t.false(claimStillApplies(undefined, { epoch: 4, from: B }), 'the lease went (the VM was removed or stopped)')
  // placed afresh over a lease nothing runs under: parked, or a former VM's that ended; not once it runs again
  t.true(claimStillApplies(lease('v', B, { epoch: 3, status: 'stopped', parked: true }), { epoch: 4, from: B, parked: true }))
  t.false(claimStillApplies(lease('v', B, { epoch: 3, status: 'failed' }), { epoch: 4, from: B, parked: true }), 'the crash rule\'s: stays')
  t.true(claimStillApplies(lease('v', B, { epoch: 3, status: 'failed' }), { epoch: 4, from: B, parked: true, former: true }))
  t.false(claimStillApplies(lease('v', B, { epoch: 3, status: 'running' }), { epoch: 4, from: B, parked: true, former: true }))
})

test('startsStillDue: a start decided on one read is carried out only if a later read still gives it to this node', t => {
  const doc = (leases: LeaseView[], vms: Vm[] = [vm('v')]): DocView => ({ vms: new Map(vms.map(v => [v.id, v])), leases: new Map(leases.map(l => [l.winner.vm, l])), roll: new Map() })
  const before = doc([lv(lease('v', A, { status: 'claimed' }))])
  t.deepEqual(startsStillDue(['v'], before, before, A, true), ['v'])
  t.deepEqual(startsStillDue(['v'], before, doc([lv(lease('v', A, { status: 'claimed' }), lease('v', '0smaller', { status: 'claimed' }))]), A, true), [], 'a claim that wins arrived')
  t.deepEqual(startsStillDue(['v'], before, doc([lv(lease('v', A, { status: 'claimed' }), lease('v', C, { status: 'claimed' }))]), A, true), [], 'a claim it had not seen: its settle window starts again')
  t.deepEqual(startsStillDue(['v'], before, doc([lv(lease('v', B, { epoch: 2, from: A }))]), A, true), [], 'taken over')
  t.deepEqual(startsStillDue(['v'], before, doc([]), A, true), [], 'the lease went')
  t.deepEqual(startsStillDue(['v'], before, doc([lv(lease('v', A, { status: 'claimed' }))], [vm('v', 1, { desired: 'stopped' })]), A, true), [], 'stopped meanwhile')
  t.deepEqual(startsStillDue(['v'], before, doc([lv(lease('v', A, { status: 'claimed' }))], []), A, true), [], 'removed meanwhile')
  t.deepEqual(startsStillDue(['v'], before, before, A, false), [], 'fenced meanwhile')
})

test('two VMs naming one volume (made through two nodes at the same moment): the first made has it; the other is not placed, and stopped where it runs, with why', t => {
  const disk = (id: string, created: number): Vm => vm(id, 1, { created, spec: { driver: 'qemu', cpu: 1, memoryBytes: GiB, volumes: ['vol-aaaaaaaaaaaa'], constraints: {}, kernel: '/k' } as Vm['spec'] })
  const first = disk('r5', 1000)
  const second = disk('r6', 1001)
  const owners = diskOwners([second, first])
  t.is(owners.get('vol-aaaaaaaaaaaa')?.id, 'r5')
  t.is(diskTaken(first, owners), null)
  t.is(diskTaken(second, owners)?.owner.id, 'r5')
  // the same stamp: the smaller id
  t.is(diskOwners([disk('b', 5), disk('a', 5)]).get('vol-aaaaaaaaaaaa')?.id, 'a')
  // every node claims r5 alone; r6 is pending with why, naming the volume by its path
  const path = (v: string): string => v === 'vol-aaaaaaaaaaaa' ? '/t/race3' : v
  for (const me of [A, B, C]) {
    const d = decide(input({ me, vms: [first, second], volumePath: path }))
    t.false(d.claims.some(c => c.vm === 'r6'), me)
    t.regex(d.blocked.find(b => b.vm === 'r6')?.reason ?? '', /^its disk \/t\/race3 is VM "r5"'s too \(made first/)
  }
  // both running already (placed before this rule): r6 is stopped where it runs, r5 runs on
  const d = decide(input({ vms: [first, second], leases: [lv(lease('r5', A)), lv(lease('r6', A))], runs: new Set(['r5', 'r6']), volumePath: path }))
  t.deepEqual(d.stop.map(s => s.vm), ['r6'])
  t.deepEqual(d.kill, [])
})

test('a lease of a former VM of the same name (removed while its holder was away, made again): its run is stopped, never adopted as the new VM; the lease is given up or taken over; the new VM waits, saying why', t => {
  // the old db1 was made at 100 and claimed; the new one, made at 200, has another spec
  const now = vm('db1', 0.5, { created: 200 })
  const old = lease('db1', A, { made: 100, epoch: 9 })
  // its holder, back with the old guest running: stopped (a tester's new VM showed running while the old guest ran on)
  const back = decide(input({ vms: [now], leases: [lv(old)], runs: new Set(['db1']) }))
  t.deepEqual(back.stop.map(s => s.vm), ['db1'])
  t.regex(back.stop[0]!.why, /a former VM of this name/)
  t.deepEqual(back.start, [])
  // once stopped: the lease is given up, nothing claimed over it in the same step
  const stopped = decide(input({ vms: [now], leases: [lv(old)] }))
  t.deepEqual(stopped.release.map(r => r.vm), ['db1'])
  t.deepEqual(stopped.start, [])
  t.deepEqual(stopped.claims, [])
  // another node, the holder alive: waits, saying why
  const other = decide(input({ me: B, vms: [now], leases: [lv(old)] }))
  t.deepEqual(other.claims, [])
  t.regex(other.blocked.find(b => b.vm === 'db1')!.reason, /a former VM of this name .* still holds its lease on nodeA: this one is placed once that run has ended/)
  // the holder away: taken over only after the fence wait, at the next epoch
  const away = (at: number): ReturnType<typeof decide> => decide(input({ me: B, now: at, vms: [now], leases: [lv(old)], holderAlive: () => false, lastHeard: () => 10_000, nodes: [node(A, { alive: false }), node(B), node(C)] }))
  t.deepEqual(away(12_000).claims, [])
  t.regex(away(12_000).blocked.find(b => b.vm === 'db1')!.reason, /its node is away/)
  const later = [B, C].flatMap(me => decide(input({ me, now: 30_000, vms: [now], leases: [lv(old)], holderAlive: () => false, lastHeard: () => 10_000, nodes: [node(A, { alive: false }), node(B), node(C)] })).claims)
  t.is(later.length, 1)
  t.is(later[0]!.epoch, 10)
  // an idle one (its run ended): placed afresh over it by another node, at once
  const idleOld = lease('db1', B, { made: 100, epoch: 9, status: 'failed' })
  const afresh = [A, C].flatMap(me => decide(input({ me, vms: [now], leases: [lv(idleOld)] })).claims)
  t.is(afresh.length, 1)
  t.like(afresh[0], { vm: 'db1', epoch: 10, former: true })
  // the same VM (made alike, or an older agent's lease without made): adopted and left running as before
  t.deepEqual(decide(input({ vms: [now], leases: [lv(lease('db1', A, { made: 200 }))], runs: new Set(['db1']) })).stop, [])
  t.deepEqual(decide(input({ vms: [now], leases: [lv(lease('db1', A))], runs: new Set(['db1']) })).stop, [])
})

test('a removed VM whose run may go on (its node away, within its fence wait; or alive, stopping it) keeps its disks: another VM naming one waits, saying why', t => {
  const withDisk = (id: string): Vm => { const v = vm(id, 1, { created: 300 }); return { ...v, spec: { ...v.spec, volumes: ['vol-a'] } } }
  // q2 was removed; its lease on B (made for it, with its disk) is still there
  const old = lease('q2', B, { made: 100, disks: ['vol-a'] })
  const awayAt = (now: number, me = A): ReturnType<typeof decide> => decide(input({ me, now, vms: [withDisk('q2b')], leases: [lv(old)], holderAlive: n => n !== B, lastHeard: () => 10_000, nodes: [node(A), node(B, { alive: false }), node(C)] }))
  const d = awayAt(12_000)
  t.deepEqual(d.claims, [])
  t.regex(d.blocked.find(b => b.vm === 'q2b')!.reason, /its disk vol-a may still be open in a run of a removed VM "q2" on nodeB/)
  // past the fence wait its watchdog has ended that run: placed
  t.is([A, C].flatMap(me => awayAt(30_000, me).claims).filter(c => c.vm === 'q2b').length, 1)
  // its node alive (stopping it): waits too
  t.deepEqual(decide(input({ vms: [withDisk('q2b')], leases: [lv(old)] })).claims.filter(c => c.vm === 'q2b'), [])
  // a lease nothing runs under, or one claimed without disks (an older agent), holds nothing
  t.is([A, B, C].flatMap(me => decide(input({ me, vms: [withDisk('q2b')], leases: [lv({ ...old, status: 'failed' })] })).claims).filter(c => c.vm === 'q2b').length, 1)
  // the VM's own lease (made for it) is not a former run's
  const own = decide(input({ me: B, vms: [withDisk('q2')], leases: [lv(lease('q2', B, { made: 300, disks: ['vol-a'] }))], runs: new Set(['q2']) }))
  t.deepEqual(own.stop, [])
  t.deepEqual(own.blocked, [])
})

test('a removed VM\'s lease back in sight (its node returned long after the fence wait) does not stop or hold back a VM placed on its disk since', t => {
  const x = { ...vm('x', 1, { created: 300 }), spec: { ...vm('x').spec, volumes: ['vol-a'] } }
  const stale = lease('q2', B, { made: 100, disks: ['vol-a'] })
  const mine = lease('x', A, { made: 300, disks: ['vol-a'], epoch: 1 })
  const d = decide(input({ vms: [x], leases: [lv(stale), lv(mine)], runs: new Set(['x']) }))
  t.deepEqual(d.stop, [])
  t.deepEqual(d.kill, [])
  t.deepEqual(d.blocked, [])
})

test('a vote locked for a restart holds nothing back where the holder out of sight could not make a majority with it (bb20: a crash a minute after a routine restart waited for the lock)', t => {
  // four: D back from a restart (its vote may be lent, locked until 60 s), C dead: C with
  // D's lent vote has 2 of 4, no majority, so C fenced itself whatever D lent
  const D = 'nodeD'
  const nodes = [node(A, { aliveSince: 0 }), node(B, { aliveSince: 0 }), node(C, { alive: false }), node(D, { aliveSince: 5000 })]
  const voteLock = (id: string): number => id === D ? 60_000 : -Infinity
  const i = input({ now: 20_000, nodes, vms: [vm('theirs')], leases: [lv(lease('theirs', C))], holderAlive: id => id !== C, lastHeard: () => 10_000, voteLock })
  i.doc.roll.set(D, roll(D))
  t.true([A, B, D].some(me => decide({ ...i, me }).claims.some(c => c.vm === 'theirs')), 'taken over after fence timeout + margin, not after the lock')
  // two of four out of sight: C and a fourth with D's vote would have 3 of 4: the lock holds
  const cut = { ...i, nodes: [node(A, { aliveSince: 0 }), node(B, { alive: false }), node(C, { alive: false }), node(D, { aliveSince: 5000 })], holderAlive: (id: string) => id !== C && id !== B }
  t.false([A, D].some(me => decide({ ...cut, me }).claims.some(c => c.vm === 'theirs')), 'A and D alone have no majority anyway')
})

test('what the loss of one member now would wait for vote locks that hold nothing back yet (bb47: two of four back from restarts, ha said 6.5 s and a crash waited 55 s)', t => {
  // four: C and D back from restarts (locked until 60 s), A and B never restarted; A answers
  const D = 'nodeD'
  const nodes = [node(A, { aliveSince: 0 }), node(B, { aliveSince: 0 }), node(C, { aliveSince: 5000 }), node(D, { aliveSince: 8000 })]
  const voteLock = (id: string): number => id === C || id === D ? 60_000 : -Infinity
  const i = input({ now: 20_000, nodes })
  i.doc.roll.set(D, roll(D))
  // with all four in sight the locks hold nothing back: a majority since C came into sight
  t.is(takeoverMajoritySince(i.doc, A, nodes, voteLock), 5000)
  // losing B leaves A alone without a lent vote: a takeover of B waits for the locks, 60 s + the 6.5 s wait;
  // the same for losing A itself, judged from B (rv46: this node's own loss was left out)
  t.deepEqual(lockedWaitsIfLost(i.doc, A, nodes, voteLock, 6500, 20_000), [{ node: A, ms: 60_000 + 6500 - 20_000 }, { node: B, ms: 60_000 + 6500 - 20_000 }])
  // and after the locks, nothing
  t.deepEqual(lockedWaitsIfLost(i.doc, A, nodes, voteLock, 6500, 61_000), [])
  // one member back from a restart: losing any other still leaves half the roll with no vote to lend
  const one = (id: string): number => id === D ? 60_000 : -Infinity
  t.deepEqual(lockedWaitsIfLost(i.doc, A, nodes, one, 6500, 20_000), [])
})

test('locks dropped once a holder out of sight cannot make a majority count the majority from then, not from before (rv23)', t => {
  // A-E, C holds v. D restarted at 5 s (vote lent to C's side while away, locked to 73.3 s);
  // {C, E} | {A, B} at 10 s; D back on A's side at 20 s; E crosses over at 60 s
  const D = 'nodeD'
  const E = 'nodeE'
  const nodes = [node(A), node(B, { aliveSince: 0 }), node(C, { alive: false }), node(D, { aliveSince: 20_000 }), node(E, { aliveSince: 60_000 })]
  const voteLock = (id: string): number => id === D ? 73_334 : -Infinity
  const i = input({ now: 61_000, nodes, vms: [vm('v')], leases: [lv(lease('v', C))], holderAlive: id => id !== C, lastHeard: () => 10_000, voteLock })
  for (const n of [D, E]) i.doc.roll.set(n, roll(n))
  // C with D's lent vote had 3 of 5 until E left it at 60 s: the majority here counts from 60 s
  t.is(takeoverMajoritySince(i.doc, A, nodes, voteLock), 60_000)
  t.false([A, B, D, E].some(me => decide({ ...i, me }).claims.some(c => c.vm === 'v')), 'not at 61 s')
  t.true([A, B, D, E].some(me => decide({ ...i, me, now: 60_000 + 5000 + 1000 + 1 }).claims.some(c => c.vm === 'v')), 'after fence timeout + margin from 60 s')
})

test('a vote locked for a restart (voteLock) holds back a takeover that needs it, but not this node\'s own lease from before its majority came back', t => {
  // A is back from a restart: its own vote may still be lent (locked until 60 s); B alive, C dead
  const nodes = [node(A, { aliveSince: 0 }), node(B, { aliveSince: 0 }), node(C, { alive: false })]
  const voteLock = (id: string): number => id === A ? 60_000 : -Infinity
  const own = lv(lease('mine', A, { status: 'starting' }))
  const theirs = lv(lease('theirs', C))
  const i = input({ now: 20_000, nodes, vms: [vm('mine'), vm('theirs')], leases: [own, theirs], holderAlive: id => id !== C, lastHeard: () => 0, voteLock, claimedAt: new Map([['mine', 9000]]) })
  const d = decide(i)
  t.deepEqual(d.start, ['mine'], 'its own lease starts: the lock does not change what the document may still learn')
  // by neither A nor B (both need A's vote for a majority of three)
  t.false([A, B].some(me => decide({ ...i, me }).claims.some(c => c.vm === 'theirs')), 'C\'s VM is not taken over while A\'s vote may keep it alive on C\'s side')
  // once the lock and a fence timeout and margin after it have passed: taken over
  t.true([A, B].some(me => decide({ ...i, me, now: 60_000 + 5000 + 1000 + 1 }).claims.some(c => c.vm === 'theirs')))
})

test('a node alone on its roll counts its majority from its start: an old data dir (roll of itself only) starts none of its old leases, and with others about claims nothing, until a takeover\'s wait has passed (rv21)', t => {
  // restored from a backup taken while it was the grid's only node: its roll holds A alone,
  // and a lease of A's, which the grid has since moved on from
  const alone = (over: Partial<DecideInput> & { vms?: Vm[], leases?: LeaseView[] }): ReturnType<typeof decide> => {
    const i = input({ nodes: [node(A)], ...over })
    i.doc.roll = new Map([[A, roll(A)]])
    return decide(i)
  }
  const old = { vms: [vm('v')], leases: [lv(lease('v', A, { status: 'running' }))], startedAt: 10_000 }
  t.deepEqual(alone({ ...old, now: 10_100 }).start, [], 'not at once: its document may be years old')
  t.is(alone({ ...old, now: 10_100 }).wakeInMs, 5900)
  t.deepEqual(alone({ ...old, now: 16_000 }).start, ['v'], 'after fence timeout + margin from its start, as a takeover would wait')
  t.deepEqual(alone({ ...old, now: 10_100, startedAt: undefined }).start, ['v'], 'without a start time: as before')
  // an empty roll is a grid of this node alone too
  const empty = input({ vms: [vm('w')], nodes: [node(A)], now: 10_100, startedAt: 10_000, othersExpected: true })
  empty.doc.roll = new Map()
  t.deepEqual(decide(empty).claims, [], 'others about (or --join given): no claim on a roll that may be old')
  t.deepEqual(decide({ ...empty, othersExpected: false }).claims.map(c => c.vm), ['w'], 'no one else about: a grid of one claims at once')
  t.deepEqual(decide({ ...empty, now: 16_000 }).claims.map(c => c.vm), ['w'])
  // rv25: with others about, nothing old starts and nothing is claimed before this node holds a live member's document, however long that takes
  t.deepEqual(alone({ ...old, now: 60_000, othersExpected: true, synced: false }).start, [], 'not synced yet: its old lease waits')
  t.deepEqual(decide({ ...empty, now: 60_000, synced: false }).claims, [], 'not synced yet: no claim')
  t.deepEqual(alone({ ...old, now: 16_000, othersExpected: true, synced: true }).start, ['v'], 'synced, and the wait over')
  // a node with others on its roll is not alone: unchanged
  t.deepEqual(decide(input({ vms: [vm('v')], leases: [lv(lease('v', A, { status: 'running' }))], startedAt: 10_000, now: 10_100 })).start, ['v'])
})
