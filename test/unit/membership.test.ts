import test from 'ava'
import {
  onAdvert, onHeartbeat, onSuspect, onDeathReport, onTick, countStates, compareVersions, deadTimeoutMs, DEFAULT_MEMBERSHIP, validateMembershipConfig,
  type MemberTable, type MembershipConfig
} from '../../protocol/membership.ts'
import type { Advert } from '../../protocol/advert.ts'
import { ipsOf, vanished } from '../../node/membership/views.ts'

const cfg: MembershipConfig = { suspectAfterMs: 1500, deadAfterMs: 2500, silenceAfterMs: 30_000, forgetAfterMs: 60_000 }

function advert (nodeId: string, seq: number, extra: Partial<Advert> = {}): Advert {
  const r = { cpu: 1, memoryBytes: 1, diskBytes: 1 }
  return {
    v: 1, cluster: 'c', nodeId, name: nodeId, incarnation: 100, seq, status: 'alive', addrs: [],
    capacity: r, reserved: { cpu: 0, memoryBytes: 0, diskBytes: 0 }, free: r, load: [0, 0, 0],
    version: 't', labels: {}, wireguard: null, sig: '', ...extra
  }
}
const v = (seq: number, incarnation = 100): { incarnation: number, seq: number } => ({ incarnation, seq })
const joined = (...ids: string[]): MemberTable => ids.reduce<MemberTable>((t, id) => onAdvert(t, advert(id, 1), 0).table, new Map())

test('a suspicion makes an alive member suspect; unrefuted, it is dead after deadAfter', t => {
  let table = joined('a')
  let step = onSuspect(table, 'a', v(1), 1000)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'alive', to: 'suspect' }])
  table = step.table
  t.deepEqual(onTick(table, 1000 + 2499, cfg).transitions, [])
  step = onTick(table, 1000 + 2500, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'suspect', to: 'dead' }])
  table = step.table
  step = onTick(table, 3500 + 60_000, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'dead', to: 'forgotten' }])
  t.false(step.table.has('a'))
})

test('a death report ends a suspicion at once, reaches alive members too, and is refuted like a suspicion', t => {
  let table = onSuspect(joined('a', 'b'), 'a', v(1), 1000).table
  let step = onDeathReport(table, 'a', v(1), 1200)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'suspect', to: 'dead' }], 'before its own countdown ran out')
  table = step.table
  t.deepEqual(table.get('a')?.suspectedVersion, v(1))
  t.deepEqual(onDeathReport(table, 'a', v(1), 1300).transitions, [], 'dead already')
  // a member whose suspicion never reached this node
  step = onDeathReport(table, 'b', v(5), 1200)
  t.deepEqual(step.transitions, [{ nodeId: 'b', from: 'alive', to: 'dead' }])
  t.deepEqual(step.table.get('b')?.suspectedVersion, v(1), 'held to the version it was seen with')
  table = onAdvert(step.table, advert('b', 2), 1400).table
  t.is(table.get('b')?.state, 'alive', 'its next advert refutes')
  t.deepEqual(onDeathReport(table, 'b', v(1), 1500).transitions, [], 'a report about an older version is stale')
  t.deepEqual(onDeathReport(table, 'zz', v(1), 1500).transitions, [], 'unknown members stay unknown')
})

test('a refutation (newer advert) clears a suspicion; a stale suspicion is ignored', t => {
  let table = onSuspect(joined('a'), 'a', v(1), 0).table
  const step = onAdvert(table, advert('a', 2), 100)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'suspect', to: 'alive' }])
  table = step.table
  t.deepEqual(onSuspect(table, 'a', v(1), 200).transitions, [], 'suspicion about an older version')
  t.is(onSuspect(table, 'a', v(2), 200).table.get('a')?.state, 'suspect')
})

test('heartbeats keep a member alive but clear a suspicion only with a newer version', t => {
  let table = joined('a')
  table = onSuspect(table, 'a', v(1), 0).table
  t.deepEqual(onHeartbeat(table, 'a', v(1), 100).transitions, [], 'same version: not refuted')
  const step = onHeartbeat(table, 'a', v(2), 100)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'suspect', to: 'alive' }])
  t.deepEqual(step.table.get('a')?.version, v(2))
  t.deepEqual(onHeartbeat(new Map(), 'x', v(1), 0).transitions, [], 'unknown members wait for their advert')
})

test('a dead member comes back with a newer advert (healed partition, restart)', t => {
  let table = onSuspect(joined('a'), 'a', v(1), 0).table
  table = onTick(table, 3000, cfg).table
  t.is(table.get('a')?.state, 'dead')
  t.deepEqual(onAdvert(table, advert('a', 2), 4000).transitions, [{ nodeId: 'a', from: 'dead', to: 'alive' }])
  t.deepEqual(onAdvert(table, advert('a', 1, { incarnation: 500 }), 4000).transitions, [{ nodeId: 'a', from: 'dead', to: 'alive' }])
})

test('a member nobody hears of for silenceAfter is suspected, then dead', t => {
  const table = joined('a')
  t.deepEqual(onTick(table, 29_999, cfg).transitions, [])
  const step = onTick(table, 30_000, cfg)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'alive', to: 'suspect' }])
  t.is(onTick(step.table, 32_500, cfg).table.get('a')?.state, 'dead')
})

test('regular evidence keeps a member alive indefinitely (no flapping)', t => {
  let table = joined('a')
  for (let i = 0; i < 2000; i++) {
    const now = i * 500
    const hb = onHeartbeat(table, 'a', v(1), now)
    table = hb.table
    const tick = onTick(table, now + 499, cfg)
    table = tick.table
    t.deepEqual([...hb.transitions, ...tick.transitions], [])
  }
  t.is(table.get('a')?.state, 'alive')
})

test('stale or duplicate adverts change nothing', t => {
  const table = onAdvert(new Map(), advert('a', 5), 0).table
  t.is(onAdvert(table, advert('a', 5), 10).table, table)
  t.is(onAdvert(table, advert('a', 4), 10).table, table)
})

test('versions order by incarnation, then seq', t => {
  t.true(compareVersions(v(1, 2), v(99, 1)) > 0)
  t.true(compareVersions(v(2), v(1)) > 0)
  t.is(compareVersions(v(1), v(1)), 0)
})

test('a leaving advert marks the member left; left members ignore suspicion and are forgotten', t => {
  let table = joined('a')
  const step = onAdvert(table, advert('a', 2, { status: 'leaving' }), 100)
  t.deepEqual(step.transitions, [{ nodeId: 'a', from: 'alive', to: 'left' }])
  table = step.table
  t.deepEqual(onSuspect(table, 'a', v(2), 200).transitions, [])
  t.deepEqual(onHeartbeat(table, 'a', v(3), 200).transitions, [])
  t.deepEqual(onTick(table, 50_000, cfg).transitions, [], 'silence does not turn left into dead')
  t.false(onTick(table, 100 + 60_000, cfg).table.has('a'))
})

test('self is never suspected by the clock', t => {
  t.deepEqual(onTick(joined('me'), 1e9, cfg, 'me').transitions, [])
})

test('countStates counts every state', t => {
  let table = joined('a', 'b', 'c', 'd')
  table = onAdvert(table, advert('c', 2, { status: 'leaving' }), 0).table
  table = onSuspect(table, 'a', v(1), 0).table
  table = onSuspect(table, 'b', v(1), 0).table
  table = onTick(table, 2500, cfg).table
  table = onSuspect(table, 'd', v(1), 2500).table
  t.deepEqual(countStates(table), { alive: 0, suspect: 1, dead: 2, left: 1 })
})

test('the defaults detect a silent neighbour as dead within 5 s and are valid', t => {
  t.is(validateMembershipConfig(DEFAULT_MEMBERSHIP), null)
  // silence noticed after suspectAfter (+ one 500 ms heartbeat), dead deadAfter later
  t.true(deadTimeoutMs(DEFAULT_MEMBERSHIP, 500) <= 5000)
  t.truthy(validateMembershipConfig({ ...DEFAULT_MEMBERSHIP, silenceAfterMs: 1000 }))
  t.truthy(validateMembershipConfig({ ...DEFAULT_MEMBERSHIP, deadAfterMs: 0 }))
})

test('a suspicion naming a far-future version cannot keep a member dead', t => {
  let table = onSuspect(joined('a'), 'a', v(Number.MAX_SAFE_INTEGER), 0).table
  t.deepEqual(table.get('a')?.suspectedVersion, v(1), 'held to the version it was seen with')
  table = onTick(table, 3000, cfg).table
  t.is(table.get('a')?.state, 'dead')
  t.is(onAdvert(table, advert('a', 2), 4000).table.get('a')?.state, 'alive', 'its next advert refutes')
})

test('a heartbeat that brings nothing new records lastSeen at most once per grain', t => {
  const table = joined('a')
  // same version, lastSeen (0) fresher than the 5 s grain: the table is left as it is
  t.is(onHeartbeat(table, 'a', v(1), 4999, 5000).table, table)
  // once the grain has passed, lastSeen moves
  t.is(onHeartbeat(table, 'a', v(1), 5000, 5000).table.get('a')!.lastSeen, 5000)
  // a newer version is news at once
  t.deepEqual(onHeartbeat(table, 'a', v(2), 10, 5000).table.get('a')!.version, v(2))
  // without a grain every beat counts, as before
  t.is(onHeartbeat(table, 'a', v(1), 10).table.get('a')!.lastSeen, 10)
})

test('vanished: the addresses a member stopped advertising (a server that moved networks)', t => {
  const before = ipsOf(['/ip4/10.0.0.1/tcp/7400/p2p/X', '/ip4/127.0.0.1/tcp/7400/p2p/X', '/ip6/fd00::1/tcp/7400'])
  t.deepEqual([...before].sort(), ['10.0.0.1', '127.0.0.1', 'fd00::1'])
  const after = ipsOf(['/ip4/10.0.0.9/tcp/7400/p2p/X', '/ip4/127.0.0.1/tcp/7400/p2p/X', '/ip6/fd00::1/tcp/7400'])
  t.deepEqual([...vanished(before, after)], ['10.0.0.1'])
  t.is(vanished(undefined, after).size, 0, 'a first advert takes nothing away')
  t.is(vanished(after, after).size, 0)
})
