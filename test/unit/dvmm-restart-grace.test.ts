// The restart grace (node/dvmm/restart-grace.ts): when a stop for a restart asks the
// members for a longer watchdog, whom it asks, what a member's answer checks, and the
// restarted run's fence, which counts the promised fence from the last feed only
// until it first sees a majority (node/dvmm/fencing.ts).
import test from 'ava'
import { planRestartGrace, type GracePlanInput } from '../../node/dvmm/restart-grace.ts'
import { checkAsk } from '../../node/state/holds-check.ts'
import { Fencing } from '../../node/dvmm/fencing.ts'
import { fenceTimeoutFor, watchdogTimeoutFor } from '../../node/dvmm/timing.ts'
import { silentLogger } from '../../node/log.ts'
import type { Member, MemberState } from '../../protocol/membership.ts'

const plan = (over: Partial<GracePlanInput> = {}): ReturnType<typeof planRestartGrace> => planRestartGrace({
  graceMs: 30_000, activeFenceMs: 5000, liveVms: 2, majority: true, onRoll: true, me: 'me',
  nodes: ['me', 'a', 'b', 'c', 'a'], mayBeRunning: n => n !== 'c', ...over
})

test('a stop for a restart asks every member that may take its VMs over, for grace x 5/3 as their fence', t => {
  // the watchdog allows for the restarted agent's start-up (5 s) too: back within 30 s adopts
  t.deepEqual(plan(), { ask: true, fenceMs: 58_334, watchdogMs: 35_000, peers: ['a', 'b'] })
  t.is(fenceTimeoutFor(30_000), 50_000)
  for (const g of [7, 1001, 29_999, 360_000]) t.true(fenceTimeoutFor(g) * 3 >= g * 5 && watchdogTimeoutFor(fenceTimeoutFor(g)) >= g, `rounded up: the fence for ${g} ms never falls short of it`)
  t.deepEqual(plan({ nodes: ['me'] }), { ask: true, fenceMs: 58_334, watchdogMs: 35_000, peers: [] }, 'a grid of one asks no one')
})

test('no grace asked: off, not longer than the usual watchdog, no VM, not on the roll, no majority', t => {
  const why = (over: Partial<GracePlanInput>): string => { const p = plan(over); return p.ask ? 'asked' : p.why }
  t.regex(why({ graceMs: 0 }), /off/)
  t.regex(why({ graceMs: 3000 }), /no longer than the watchdog's usual timeout \(3000 ms\)/)
  t.is(plan({ graceMs: 3001 }).ask, true)
  t.regex(why({ graceMs: 30_000, activeFenceMs: 60_000 }), /usual timeout \(36000 ms\)/, 'a long fence setting already gives more')
  t.is(plan({ liveVms: 0 }).ask, true, 'with no VM here too: its vote, lent, keeps the others going (bb18)')
  t.regex(why({ onRoll: false }), /not on the member roll/)
  t.regex(why({ majority: false }), /no majority/)
})

test('a member\'s answer checks the ask: 1 to 64 change hashes', t => {
  const h = 'a'.repeat(64)
  t.deepEqual(checkAsk({ heads: [h] }), { heads: [h] })
  for (const bad of [null, 'x', {}, { heads: [] }, { heads: ['zz'] }, { heads: [1] }, { heads: Array(65).fill(h) }]) {
    t.deepEqual(checkAsk(bad), { error: 'heads: expected 1 to 64 change hashes' })
  }
})

function fencing (o: { lastAliveAt: number, lastAliveFenceMs?: number, alive: () => boolean, now: () => number }): { f: Fencing, killed: string[] } {
  const killed: string[] = []
  const state: MemberState = 'alive'
  const members = new Map<string, Member>(['a', 'b'].map(nodeId => [nodeId, { nodeId, state, since: 0, lastSeen: 0, version: { incarnation: 1, seq: 1 }, advert: { fenceTimeoutMs: 5000 } as unknown as Member['advert'] }]))
  const f = new Fencing({
    peerId: 'me',
    log: silentLogger,
    clock: { now: o.now },
    state: { read: () => ({ list: () => ['me', 'a', 'b'].map(node => ({ node })) }) as never },
    // alive as the test says: the VM manager sees the others or it does not
    membership: { get members () { return new Map([...members].filter(() => o.alive())) } },
    metrics: { fenced: { set: () => {} } } as never,
    local: { live: new Set(['vm1']), act: async (vm: string) => { killed.push(vm) } } as never
  }, { fenceTimeoutMs: 5000, takeoverMarginMs: 1500, lastAliveAt: o.lastAliveAt, lastAliveFenceMs: o.lastAliveFenceMs })
  return { f, killed }
}

test('a restarted run keeps its adopted VMs without a majority for the fence the last feed promised, counted from that feed', t => {
  let now = 100_000
  const alive = false
  // the previous run's last feed at 80 000 promised 50 s (a restart grace)
  const { f, killed } = fencing({ lastAliveAt: 80_000, lastAliveFenceMs: 50_000, alive: () => alive, now: () => now })
  f.start()
  t.false(f.check(now).fenced, '20 s after the last feed: still within the grace')
  now = 129_999
  t.false(f.check(now).fenced)
  now = 130_000
  t.true(f.check(now).fenced, 'the last feed + 50 s, no majority yet: fenced, its VMs killed')
  t.deepEqual(killed, ['vm1'])
})

test('once the restarted run has seen a majority, its usual fence holds again', t => {
  let now = 100_000
  let alive = true
  const { f } = fencing({ lastAliveAt: 80_000, lastAliveFenceMs: 50_000, alive: () => alive, now: () => now })
  f.start()
  t.true(f.check(now).majority)
  alive = false
  now = 104_999
  t.false(f.check(now).fenced)
  now = 105_000
  t.true(f.check(now).fenced, 'the majority lost at 100 000: fenced after the usual 5 s, not the grace')
})

test('without a grace in the last feed the fence counts as before: the usual timeout from that feed', t => {
  const now = 100_000
  const { f } = fencing({ lastAliveAt: 94_000, lastAliveFenceMs: 5000, alive: () => false, now: () => now })
  f.start()
  t.true(f.check(now).fenced)
})
