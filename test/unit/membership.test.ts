import test from 'ava'
import { onAdvert, onTick, countStates, DEFAULT_MEMBERSHIP, validateMembershipConfig, type MemberTable } from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'

const cfg = { suspectAfterMs: 3000, deadAfterMs: 4500, forgetAfterMs: 60_000 }

function advert (nodeId: string, seq: number, extra: Partial<Advert> = {}): Advert {
  const r = { cpu: 1, memoryBytes: 1, diskBytes: 1 }
  return {
    v: 1, cluster: 'c', nodeId, name: nodeId, incarnation: 100, seq, status: 'alive', addrs: [],
    capacity: r, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: r, load: [0, 0, 0],
    version: 't', labels: {}, wireguard: null, ...extra
  }
}

test('a new member is alive, then suspect, dead and forgotten as silence grows', t => {
  let table: MemberTable = new Map()
  let step = onAdvert(table, advert('a', 1), 0)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'unknown', to: 'alive' }])
  table = step.table
  t.deepEqual(onTick(table, 2999, cfg).transitions, [])
  step = onTick(table, 3000, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'alive', to: 'suspect' }])
  table = step.table
  step = onTick(table, 4500, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'suspect', to: 'dead' }])
  table = step.table
  t.is(table.get('a')?.since, 4500)
  t.deepEqual(onTick(table, 4500 + 59_999, cfg).transitions, [])
  step = onTick(table, 4500 + 60_000, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'dead', to: 'forgotten' }])
  t.false(step.table.has('a'))
})

test('a member silent past the dead timeout between two ticks goes straight to dead', t => {
  const table = onAdvert(new Map(), advert('a', 1), 0).table
  t.deepEqual(onTick(table, 10_000, cfg).transitions, [{ nodeId: 'a', from: 'alive', to: 'dead' }])
})

test('regular adverts keep a member alive indefinitely (no flapping)', t => {
  let table: MemberTable = new Map()
  for (let i = 0; i < 1000; i++) {
    const now = i * 1000
    const s1 = onAdvert(table, advert('a', i + 1), now)
    table = s1.table
    const s2 = onTick(table, now + 999, cfg)
    table = s2.table
    t.deepEqual(s2.transitions, [])
    if (i > 0) t.deepEqual(s1.transitions, [])
  }
  t.is(table.get('a')?.state, 'alive')
})

test('a suspect or dead member that speaks again is alive', t => {
  let table = onAdvert(new Map(), advert('a', 1), 0).table
  table = onTick(table, 5000, cfg).table
  t.is(table.get('a')?.state, 'dead')
  const step = onAdvert(table, advert('a', 2), 6000)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'dead', to: 'alive' }])
})

test('stale or duplicate adverts change nothing', t => {
  const table = onAdvert(new Map(), advert('a', 5), 0).table
  const dup = onAdvert(table, advert('a', 5), 4000)
  t.is(dup.table, table)
  const old = onAdvert(table, advert('a', 4), 4000)
  t.is(old.table, table)
  t.is(onTick(table, 4500, cfg).table.get('a')?.state, 'dead')
})

test('a restart (higher incarnation, lower seq) is newer', t => {
  const table = onAdvert(new Map(), advert('a', 50), 0).table
  const step = onAdvert(table, advert('a', 1, { incarnation: 200 }), 10)
  t.is(step.table.get('a')?.advert.incarnation, 200)
})

test('a leaving advert marks the member left; left members are forgotten after the TTL', t => {
  let table = onAdvert(new Map(), advert('a', 1), 0).table
  const step = onAdvert(table, advert('a', 2, { status: 'leaving' }), 100)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'alive', to: 'left' }])
  table = step.table
  t.deepEqual(onTick(table, 50_000, cfg).transitions, [], 'left is not turned into dead by silence')
  t.false(onTick(table, 100 + 60_000, cfg).table.has('a'))
})

test('self is never suspected', t => {
  const table = onAdvert(new Map(), advert('me', 1), 0).table
  t.deepEqual(onTick(table, 100_000, cfg, 'me').transitions, [])
})

test('countStates counts every state', t => {
  let table: MemberTable = new Map()
  table = onAdvert(table, advert('a', 1), 0).table
  table = onAdvert(table, advert('b', 1), 0).table
  table = onAdvert(table, advert('c', 1, { status: 'leaving' }), 0).table
  table = onTick(table, 3500, cfg).table
  t.deepEqual(countStates(table), { alive: 0, suspect: 2, dead: 0, left: 1 })
})

test('the defaults detect a silent node as dead within 5 s and are valid', t => {
  t.is(validateMembershipConfig(DEFAULT_MEMBERSHIP), null)
  t.true(DEFAULT_MEMBERSHIP.deadAfterMs + 250 < 5000)
  t.truthy(validateMembershipConfig({ ...DEFAULT_MEMBERSHIP, deadAfterMs: 1000 }))
})
