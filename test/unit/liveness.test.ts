// The liveness table (protocol/liveness.ts): beat counters passed along the heartbeat
// streams, so that a node cut off from everyone loses sight of every member within the
// window, while one that hears only a few members directly still sees the whole grid.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { Heartbeats } from '../../protocol/heartbeat.ts'
import { encodeTable, keyOf, LivenessTable, parseTable, ENTRY_BYTES, type WireEntry } from '../../protocol/liveness.ts'
import { prng } from '../helpers/prng.ts'

const W = 2500
const entry = (id: string, incarnation: number, count: number): WireEntry => ({ key: keyOf(id), incarnation, count })

test('a member is in sight while its counter advanced here within the window; only advances count', t => {
  const tb = new LivenessTable('me', 1)
  const known = ['me', 'a', 'b']
  t.true(tb.fresh('me', 0, W), 'this node always')
  t.false(tb.fresh('a', 0, W), 'never heard')
  t.is(tb.merge([entry('a', 5, 1)], known, 1000), 1)
  t.true(tb.fresh('a', 3499, W))
  t.false(tb.fresh('a', 3500, W))
  t.is(tb.merge([entry('a', 5, 1)], known, 3000), 0, 'the same count again is no sign of life')
  t.false(tb.fresh('a', 3500, W))
  t.is(tb.merge([entry('a', 5, 0)], known, 3000), 0, 'nor an older one (a slower path)')
  t.is(tb.merge([entry('a', 6, 0)], known, 3200), 1, 'a newer incarnation (a restart) starts its count afresh')
  t.true(tb.fresh('a', 5000, W))
  t.is(tb.merge([entry('zz', 9, 9), entry('me', 9, 9)], known, 3300), 0, 'a member not known here, and this node itself, are skipped')
})

test('a node sends its own counter and only the counters fresh here: a dead member leaves the wire within a window', t => {
  const tb = new LivenessTable('me', 7)
  tb.beat()
  tb.beat()
  tb.merge([entry('a', 1, 4), entry('b', 1, 9)], ['a', 'b'], 0)
  tb.merge([entry('a', 1, 5)], ['a', 'b'], 2000)
  t.deepEqual(tb.toSend(2400, W), [entry('me', 7, 2), entry('a', 1, 5), entry('b', 1, 9)])
  t.deepEqual(tb.toSend(3000, W), [entry('me', 7, 2), entry('a', 1, 5)])
  tb.retain(new Set(['b']))
  t.deepEqual(tb.toSend(3000, W), [entry('me', 7, 2)], 'a forgotten member is dropped')
})

test('table frames: round trip, partial frames, and garbage named as such', t => {
  const list = [entry('a', 1_732_240_000_000, 42), entry('b', 3, 0xffffffff)]
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

/**
 * A grid of tables on a fake clock: each node beats and sends its table to its partners
 * every tick (as the heartbeat streams do), each partner set a few random nodes both ways.
 */
function simulate (n: number, partnersEach: number, seed: number): { ids: string[], tables: LivenessTable[], run: (fromMs: number, toMs: number, cut: ReadonlySet<number>) => void } {
  const r = prng(seed)
  const ids = Array.from({ length: n }, (_, i) => `n${i}`)
  const tables = ids.map(id => new LivenessTable(id, 1))
  const links = new Set<string>()
  for (let i = 0; i < n; i++) {
    while ([...links].filter(l => l.split('-').includes(String(i))).length < partnersEach) {
      const j = Math.floor(r() * n)
      if (j !== i) links.add([i, j].sort((a, b) => a - b).join('-'))
    }
  }
  const edges = [...links].map(l => l.split('-').map(Number) as [number, number])
  const TICK = 500
  return {
    ids,
    tables,
    run (fromMs, toMs, cut) {
      for (let now = fromMs; now < toMs; now += TICK) {
        // each node ticks at its own phase within the interval
        const order = ids.map((_, i) => i).sort(() => r() - 0.5)
        for (const [k, i] of order.entries()) {
          const at = now + (k * TICK) / n
          tables[i]!.beat()
          const sent = tables[i]!.toSend(at, W)
          for (const [a, b] of edges) {
            const to = a === i ? b : b === i ? a : -1
            if (to < 0 || cut.has(i) !== cut.has(to)) continue
            tables[to]!.merge(sent, ids, at)
          }
        }
      }
    }
  }
}

test('20 nodes, each with about 4 partners: every node sees every other; one cut off from all sees no one within the window, the others still see each other', t => {
  const { ids, tables, run } = simulate(20, 4, 7)
  run(0, 10_000, new Set())
  const seen = (i: number, now: number): number => ids.filter(id => tables[i]!.fresh(id, now, W)).length
  for (let i = 0; i < ids.length; i++) t.is(seen(i, 10_000), 20, `node ${i} sees every member`)
  const cutAt = 10_000
  run(cutAt, cutAt + 10_000, new Set([3]))
  t.is(seen(3, cutAt + W), 1, 'the cut-off node sees only itself once the window has passed since the cut')
  for (let i = 0; i < ids.length; i++) if (i !== 3) t.is(seen(i, cutAt + 10_000), 19, `node ${i} sees all but the cut-off one`)
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
    const hb = new Heartbeats({
      host,
      protocol: '/test/heartbeat/1',
      intervalMs: 100,
      timeoutMs: 2000,
      watchers: 1,
      version: () => ({ incarnation: 1, seq: 1 }),
      onBeat: () => {},
      onSilent: () => {},
      onLost: () => {},
      onGarbage: peer => { garbage.push(peer) },
      onTickStart: () => { tables[i]!.beat(); frame = undefined },
      tableFor: () => (frame ??= encodeTable(tables[i]!.toSend(performance.now(), window))),
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
