// The liveness table (protocol/liveness.ts): beat counters passed along the heartbeat
// streams, so that a node cut off from everyone loses sight of every member within the
// window, while one that hears only a few members directly still sees the whole grid.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { Heartbeats, type HeartbeatsInit } from '../../protocol/heartbeat.ts'
import { livenessWindowMs } from '../../protocol/membership-service.ts'
import { countAfter, encodeTable, keyOf, LivenessTable, parseTable, ENTRY_BYTES, NO_AGE, type WireEntry } from '../../protocol/liveness.ts'
import { prng } from '../helpers/prng.ts'

const W = 3500
const entry = (id: string, incarnation: number, count: number, ageMs = 0): WireEntry => ({ key: keyOf(id), incarnation, count, ageMs })
const all = (): number => W

test('a table counts only if it echoes a beat of this run; each member in it was alive at that beat\'s send time less its age', t => {
  const tb = new LivenessTable('me', 7)
  const known = ['me', 'a', 'b']
  tb.beat(1000) // beat 1 went out at 1000
  tb.beat(1500) // beat 2 at 1500
  t.true(tb.fresh('me', 0, W), 'this node always')
  t.is(tb.merge([entry('a', 5, 1)], known, 1600), 0, 'no echo of this node: no way to date it, counts for nothing')
  t.is(tb.merge([entry('a', 5, 1), entry('me', 6, 2)], known, 1600), 0, 'an echo of an earlier run of this node')
  t.is(tb.merge([entry('a', 5, 1), entry('me', 7, 9)], known, 1600), 0, 'an echo of a beat not sent (or long gone)')
  t.is(tb.merge([entry('a', 5, 1), entry('me', 7, 1), entry('b', 3, 4, 800)], known, 1700), 2)
  // a was alive at 1000 (the echoed beat went out then), b 800 ms before that
  t.true(tb.fresh('a', 4499, W))
  t.false(tb.fresh('a', 4500, W))
  t.false(tb.fresh('b', 3700, W))
  t.true(tb.fresh('b', 3699, W))
  // a table held up on the way (a stalled relay, a backlog): it echoes an old beat, however late it comes
  t.is(tb.merge([entry('a', 5, 2), entry('me', 7, 1)], known, 9000), 0, 'no later than known already')
  t.false(tb.fresh('a', 9000, W))
  t.is(tb.merge([entry('a', 5, 2), entry('me', 7, 2)], known, 9000), 1)
  t.true(tb.fresh('a', 4999, W) && !tb.fresh('a', 5000, W), 'alive at 1500: the news is dated by the echo, not by its arrival')
  t.is(tb.merge([entry('zz', 9, 9), entry('me', 7, 2)], known, 9000), 0, 'a member not known here is skipped')
})

test('a node sends its own count (age 0), every member alive within its window here with its age, freshest first, and counts it cannot date yet with no age; the newest count is echoed back', t => {
  const tb = new LivenessTable('me', 7)
  tb.beat(0)
  tb.beat(500)
  tb.merge([entry('me', 7, 1), entry('a', 1, 4, 100), entry('b', 1, 9, 2000)], ['me', 'a', 'b'], 600)
  // a alive at -100, b at -2000
  t.deepEqual(tb.toSend(1000, all), [entry('me', 7, 2), entry('a', 1, 4, 1100), entry('b', 1, 9, 3000)])
  t.deepEqual(tb.toSend(1600, all), [entry('me', 7, 2), entry('a', 1, 4, 1700), entry('b', 1, 9, NO_AGE)], 'b is past the window here: its count only, with no age, while it went up lately')
  t.deepEqual(tb.toSend(4200, all), [entry('me', 7, 2)], 'nothing new of either for a window: neither is passed on')
  t.deepEqual(tb.toSend(4200, id => id === 'a' ? 10_000 : W).map(e => [e.key, e.ageMs]), [[keyOf('me'), 0], [keyOf('a'), 4300]], 'a member with a longer window of its own')
  // a peer just met (no echo of this node yet): its count is kept and passed on, undated, so that it can date the next table
  t.is(tb.merge([entry('c', 2, 5)], ['me', 'a', 'b', 'c'], 1000), 0)
  t.false(tb.fresh('c', 1000, W))
  t.deepEqual(tb.toSend(1000, all).find(e => e.key === keyOf('c')), entry('c', 2, 5, NO_AGE))
  tb.merge([entry('me', 7, 2), entry('a', 1, 3, 0)], ['me', 'a', 'b'], 700)
  t.is(tb.toSend(1000, all)[1]!.count, 4, 'an older count does not replace the newest (it is what a echoes to date its tables)')
  tb.retain(new Set(['b']))
  t.deepEqual(tb.toSend(1000, all).map(e => e.key), [keyOf('me'), keyOf('b')], 'a forgotten member is dropped')
})

test('beat counts wrap after 2^32 beats (a uint32 on the wire): compared as serial numbers (RFC 1982), dating goes on across the wrap (rv25)', t => {
  t.true(countAfter(1, 0))
  t.true(countAfter(0, 0xffffffff), '0 comes right after 2^32 - 1')
  t.true(countAfter(5, 0xfffffff0))
  t.false(countAfter(0xffffffff, 0), 'and 2^32 - 1 is before 0')
  t.false(countAfter(7, 7))
  t.true(countAfter(0x7fffffff, 0), '2^31 - 1 ahead: after')
  t.false(countAfter(0x80000000, 0), 'exactly 2^31 apart: neither (undefined in RFC 1982)')
  t.false(countAfter(0, 0x80000000))
  t.true(countAfter(0x80000001, 0x00000002))
  const known = ['me', 'a']
  const me = new LivenessTable('me', 7, 0xfffffffe)
  const a = new LivenessTable('a', 5, 0xfffffffd)
  // both beat across the wrap; each merges the other's table every tick, 20 ms later
  let ageAt = 0
  for (let tick = 0; tick < 6; tick++) {
    const now = 1000 + tick * 500
    me.beat(now)
    a.beat(now + 5)
    const fromA = a.toSend(now + 5, () => W)
    const fromMe = me.toSend(now, () => W)
    t.is(me.merge(fromA, known, now + 20) > 0, tick > 0, `tick ${tick}: a's table dated here from the second exchange on`)
    a.merge(fromMe, known, now + 20)
    if (tick > 0) t.true(me.fresh('a', now + 20, W), `tick ${tick}: a in sight here`)
    ageAt = now
  }
  const sent = me.toSend(ageAt + 100, () => W)
  t.is(sent[0]!.count, 4, 'this node\'s own count wrapped: 0xfffffffe + 6, modulo 2^32')
  t.is(sent.find(e => e.key === keyOf('a'))?.count, 3, 'the newest count of a is held (and echoed back) across its wrap, not the last one before it')
  t.true(me.aliveAt('a')! >= ageAt - 500, 'a dated by the latest echo, after the wrap')
  // an old count from before the wrap does not replace the newest
  me.merge([entry('a', 5, 0xffffffff), entry('me', 7, 4)], known, ageAt + 200)
  t.is(me.toSend(ageAt + 200, () => W).find(e => e.key === keyOf('a'))?.count, 3)
})

test('table frames: round trip, partial frames, and garbage named as such', t => {
  const list = [entry('a', 1_732_240_000_000, 42, 17), entry('b', 3, 0xffffffff, 0xffffffff)]
  const frame = encodeTable(list)
  t.is(frame.byteLength, 3 + 2 * ENTRY_BYTES)
  t.deepEqual(parseTable(frame), { entries: list, size: frame.byteLength })
  t.is(parseTable(frame.subarray(0, 2)), 'need')
  t.is(parseTable(frame.subarray(0, frame.byteLength - 1)), 'need')
  t.deepEqual(parseTable(encodeTable([])), { entries: [], size: 3 })
  // a length that is not whole entries, an incarnation that is not a whole number
  t.deepEqual(parseTable(Uint8Array.from([0xfe, 0, 3, 1, 2, 3])), { entries: null, size: 6 })
  const bad = encodeTable([entry('a', 1, 1)])
  new DataView(bad.buffer).setFloat64(3 + 8, Number.NaN)
  t.is((parseTable(bad) as { entries: unknown }).entries, null)
})

interface Sim {
  /** the liveness window every node runs with */
  w: number
  ids: string[]
  tables: LivenessTable[]
  /** runs the grid from `fromMs` to `toMs`; `cut` nodes exchange nothing with the rest; a stalled node takes in and sends nothing until its stall ends, then takes in what waited */
  run: (fromMs: number, toMs: number, o?: { cut?: ReadonlySet<number>, stalled?: ReadonlyMap<number, number>, sample?: (now: number) => void }) => void
  partners: (i: number) => number[]
}

/**
 * A grid of tables on a fake clock, as the heartbeat streams carry them: every node
 * beats every 500 ms at its own phase and sends its table to its partners (its 4
 * watchers and those it watches), each frame arriving 1-20 ms later.
 */
function simulate (n: number, seed: number, o: { lagMs?: number } = {}): Sim {
  const w = livenessWindowMs({ suspectAfterMs: 1500 }, 500, n)
  const lag = (): number => 10 * Math.floor(r() * (o.lagMs ?? 0) / 10)
  const r = prng(seed)
  const ids = Array.from({ length: n }, (_, i) => `n${i}`)
  const tables = ids.map(id => new LivenessTable(id, 1))
  const links = new Set<string>()
  for (let i = 0; i < n; i++) {
    const out = new Set<number>()
    while (out.size < Math.min(4, n - 1)) { const j = Math.floor(r() * n); if (j !== i) out.add(j) }
    for (const j of out) links.add([i, j].sort((a, b) => a - b).join('-'))
  }
  const adj = ids.map(() => [] as number[])
  for (const l of links) { const [a, b] = l.split('-').map(Number) as [number, number]; adj[a]!.push(b); adj[b]!.push(a) }
  const TICK = 500
  // each node's ticks, every TICK, each late by up to the lag (a busy loop), never earlier
  const nominal = ids.map(() => 10 * Math.floor(r() * TICK / 10))
  const next = [...nominal]
  // frames by the 10 ms step they arrive in
  const queue = new Map<number, Array<{ to: number, entries: WireEntry[] }>>()
  const post = (at: number, m: { to: number, entries: WireEntry[] }): void => { const k = Math.ceil(at / 10) * 10; queue.set(k, [...queue.get(k) ?? [], m]) }
  return {
    w,
    ids,
    tables,
    partners: i => adj[i]!,
    run (fromMs, toMs, o = {}) {
      const cut = o.cut ?? new Set()
      for (let now = fromMs; now < toMs; now += 10) {
        const stalled = (i: number): boolean => (o.stalled?.get(i) ?? -Infinity) > now
        const due = queue.get(now) ?? []
        queue.delete(now)
        // a stalled node takes them in when its stall ends, in order
        for (const m of due) if (stalled(m.to)) post(o.stalled!.get(m.to)!, m); else tables[m.to]!.merge(m.entries, ids, now)
        for (let i = 0; i < n; i++) {
          if (now < next[i]!) continue
          nominal[i]! += TICK
          next[i] = nominal[i]! + lag()
          if (stalled(i)) continue
          tables[i]!.beat(now)
          const sent = tables[i]!.toSend(now, () => w)
          for (const j of adj[i]!) if (cut.has(i) === cut.has(j)) post(now + 1 + Math.floor(r() * 20) + lag(), { to: j, entries: sent })
        }
        o.sample?.(now)
      }
    }
  }
}

const seen = (s: Sim, i: number, now: number, w = s.w): number => s.ids.filter(id => s.tables[i]!.fresh(id, now, w)).length

for (const [n, lagMs] of [[7, 0], [50, 0], [200, 0], [7, 400], [50, 400], [200, 400]] as Array<[number, number]>) {
  test(`${n} nodes, each with 4 watchers${lagMs > 0 ? `, every loop up to ${lagMs} ms late` : ''}: every node keeps a majority in sight at every moment; one cut off from all sees no one within the window`, t => {
    const s = simulate(n, n + lagMs, { lagMs })
    s.run(0, 5000)
    // every node's view of every member, checked every so many ms; also with a window 1.5 s shorter
    const every = n > 50 ? 470 : 90
    let worst = n
    let tight = n
    const cutAt = n > 50 ? 15_000 : 25_000
    s.run(5000, cutAt, {
      sample: now => {
        if (now % every !== 0) return
        for (let i = 0; i < n; i++) {
          worst = Math.min(worst, seen(s, i, now))
          tight = Math.min(tight, seen(s, i, now, s.w - 1500))
        }
      }
    })
    t.log(`${n} nodes, window ${s.w} ms: fewest members in sight at any moment, of any node: ${worst} (with a window 1.5 s shorter: ${tight})`)
    t.true(worst > n / 2, `every node keeps a majority in sight (fewest: ${worst} of ${n})`)
    if (lagMs === 0) t.true(tight > n / 2, `and would with a window 1.5 s shorter (fewest: ${tight} of ${n}): the window has room for a stalled tick or two`)
    // the cut (a tick's lag may carry news from just before it)
    s.run(cutAt, cutAt + s.w + lagMs, { cut: new Set([3]) })
    t.is(seen(s, 3, cutAt + s.w + lagMs), 1, 'the cut-off node sees only itself once the window has passed since the cut')
    for (let i = 0; i < n; i++) if (i !== 3) t.true(seen(s, i, cutAt + s.w + lagMs) > n / 2, `node ${i} still sees a majority`)
  })
}

test('news held up behind a stalled relay, or in the stalled receiver itself, does not pass for fresh (rv24)', t => {
  const s = simulate(20, 11)
  s.run(0, 10_000)
  // the holder h and its neighbour r, cut from the rest at once; r stalls across the cut
  // (GC, swap) with the others' last tables in its buffer, and passes them on afterwards
  const h = 0
  const r = s.partners(h)[0]!
  const cutAt = 10_000
  const others = s.ids.map((_, i) => i).filter(i => i !== h && i !== r)
  s.run(cutAt - 300, cutAt, { stalled: new Map([[r, cutAt + 8000]]) })
  s.run(cutAt, cutAt + 12_000, { cut: new Set([h, r]), stalled: new Map([[r, cutAt + 8000]]), sample: now => {
    if (now >= cutAt + s.w) for (const o of others) t.false(s.tables[h]!.fresh(s.ids[o]!, now, s.w), `at +${now - cutAt} ms h must not see ${s.ids[o]!}`)
  } })
  t.is(seen(s, h, cutAt + 12_000), 2, 'h sees itself and r, which it still hears')
  // the holder itself stalls across a cut: the tables waiting for it are dated by the beats they echo
  const s2 = simulate(20, 12)
  s2.run(0, 10_000)
  s2.run(10_000, 10_000 + 20_000, { cut: new Set([5]), stalled: new Map([[5, 10_000 + 6000]]), sample: now => {
    if (now >= 10_000 + s2.w) t.is(seen(s2, 5, now), 1)
  } })
})

/** heartbeats on a test protocol, one watcher, no membership behind them */
const heartbeats = (host: VgridHost, over: Partial<HeartbeatsInit>): Heartbeats => new Heartbeats({
  host,
  protocol: '/test/heartbeat/1',
  intervalMs: 100,
  timeoutMs: 2000,
  watchers: 1,
  version: () => ({ incarnation: 1, seq: 1 }),
  onBeat: () => {},
  onSilent: () => {},
  onLost: () => {},
  ...over
})

test('over real heartbeat streams: a node that only one peer watches still learns of a third member through it, and loses sight of it within the window once it stops', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const beats: Array<Heartbeats | undefined> = []
  t.teardown(async () => {
    await Promise.all(beats.map(async b => await b?.stop()))
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  const window = 1000
  for (let i = 0; i < 3; i++) hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/liveness${process.pid}-${i}`], mdns: false, transport: 'memory' }))
  const ids = hosts.map(h => h.peerId.toString())
  const tables = ids.map(id => new LivenessTable(id, 1))
  const garbage: string[] = []
  for (const [i, host] of hosts.entries()) {
    let frame: Uint8Array | undefined
    const hb = heartbeats(host, {
      intervalMs: 100,
      timeoutMs: 2000,
      onGarbage: peer => { garbage.push(peer) },
      onTickStart: () => { tables[i]!.beat(performance.now()); frame = undefined },
      tableFor: () => (frame ??= encodeTable(tables[i]!.toSend(performance.now(), () => window))),
      onTable: (_peer, entries) => { tables[i]!.merge(entries, ids, performance.now()) }
    })
    beats.push(hb)
  }
  // 0 and 2 are connected only to 1: each picks 1 as its one watcher
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await hosts[2]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  for (const b of beats) await b!.start()
  const until = async (what: string, ok: () => boolean, ms = 5000): Promise<void> => {
    const end = Date.now() + ms
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }
  await until('0 and 2 to see each other through 1', () => tables[0]!.fresh(ids[2]!, performance.now(), window) && tables[2]!.fresh(ids[0]!, performance.now(), window))
  t.true(tables[1]!.fresh(ids[0]!, performance.now(), window) && tables[1]!.fresh(ids[2]!, performance.now(), window))
  // 0 falls silent (its agent stops): 2 loses sight of it within the window
  await beats[0]!.stop()
  const stoppedAt = performance.now()
  beats[0] = undefined
  await until('2 to lose sight of 0', () => !tables[2]!.fresh(ids[0]!, performance.now(), window), 3000)
  t.true(performance.now() - stoppedAt <= window + 300, 'within the window (and a tick or two)')
  t.true(tables[2]!.fresh(ids[1]!, performance.now(), window), '2 still sees 1')
  t.deepEqual(garbage, [])
})

test('over a real heartbeat stream: at most 4 tables a tick are read from a peer, the newest (the rest are skipped unread), and a malformed one is reported and drops the stream', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  for (let i = 0; i < 2; i++) hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/liveness-flood${process.pid}-${i}`], mdns: false, transport: 'memory' }))
  const tables: number[] = []
  const garbage: string[] = []
  const hb = heartbeats(hosts[0]!, {
    intervalMs: 1000,
    timeoutMs: 120_000,
    onGarbage: peer => { garbage.push(peer) },
    onTable: (_peer, entries) => { tables.push(entries.length) }
  })
  t.teardown(async () => {
    await hb.stop()
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  await hb.start()
  await hosts[1]!.dial(hosts[0]!.getMultiaddrs()[0]!)
  const stream = await hosts[1]!.dialProtocol(hosts[0]!.peerId, '/test/heartbeat/1')
  const frame = encodeTable([entry('x', 1, 1), entry('y', 1, 1)])
  for (let i = 0; i < 20; i++) stream.send(frame)
  const until = async (ok: () => boolean): Promise<void> => { const end = Date.now() + 5000; while (!ok() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20)) }
  await new Promise(resolve => setTimeout(resolve, 300))
  // the twenty arrive within a tick, or at worst across two
  t.true(tables.length >= 1 && tables.length <= 8, `at most four a tick read, the newest; the rest skipped: ${tables.length} read`)
  t.true(tables.every(n => n === 2))
  // the next tick reads again: a malformed table is reported
  await new Promise(resolve => setTimeout(resolve, 1100))
  stream.send(Uint8Array.from([0xfe, 0, 5, 1, 2, 3, 4, 5]))
  await until(() => garbage.length > 0 && stream.status !== 'open')
  t.deepEqual(garbage, [hosts[1]!.peerId.toString()])
  t.not(stream.status, 'open', 'the stream was dropped')
})

test('over a real heartbeat stream: the sender hears its watcher\'s tables back, and reports a watcher that replied and stops, or whose stream goes (onUnanswered); one that never replied says nothing', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  for (let i = 0; i < 2; i++) hosts.push(await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/liveness-replies${process.pid}-${i}`], mdns: false, transport: 'memory' }))
  const ids = hosts.map(h => h.peerId.toString())
  const unanswered: string[] = []
  let replying = true
  const table = new LivenessTable(ids[1]!, 1)
  // 0 beats to 1 (its one watcher) and hears its replies; 1 sends no beats of its own (no watchers)
  const sender = heartbeats(hosts[0]!, { intervalMs: 100, timeoutMs: 500, onUnanswered: peer => { unanswered.push(peer) } })
  let watcher = heartbeats(hosts[1]!, { intervalMs: 100, timeoutMs: 5000, watchers: 0, maxWatched: 4, tableFor: () => replying ? encodeTable(table.toSend(performance.now(), () => W)) : null })
  t.teardown(async () => {
    await sender.stop()
    await watcher.stop()
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  await watcher.start()
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await sender.start()
  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  await sleep(1000)
  t.deepEqual(unanswered, [], 'replies every tick: nothing to report')
  // the watcher stops replying (its stream and connection stay): reported once, after the silence
  replying = false
  await sleep(1200)
  t.deepEqual(unanswered, [ids[1]], 'reported once per silence')
  replying = true
  await sleep(400)
  // the connection goes (a cut the far side hung up on): reported at once
  await hosts[0]!.hangUp(hosts[1]!.peerId)
  await sleep(100)
  t.deepEqual(unanswered, [ids[1], ids[1]], 'a stream that goes is reported too')
  // a watcher that never replies (an older agent, with no tables): nothing, however long, nor when it goes
  unanswered.length = 0
  await watcher.stop()
  watcher = heartbeats(hosts[1]!, { intervalMs: 100, timeoutMs: 5000, watchers: 0, maxWatched: 4, tableFor: () => null })
  await watcher.start()
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await sleep(1500)
  t.true(sender.partners.has(ids[1]!), 'it beats to it again')
  await hosts[0]!.hangUp(hosts[1]!.peerId)
  await sleep(100)
  t.deepEqual(unanswered, [])
  // the sender stopping closes the streams to its watchers: no watcher fell silent (rv26)
  await watcher.stop()
  watcher = heartbeats(hosts[1]!, { intervalMs: 100, timeoutMs: 5000, watchers: 0, maxWatched: 4, tableFor: () => encodeTable(table.toSend(performance.now(), () => W)) })
  await watcher.start()
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  await sleep(1000)
  t.true(sender.partners.has(ids[1]!))
  await sender.stop()
  await sleep(100)
  t.deepEqual(unanswered, [], 'nothing reported as the sender stops')
})
