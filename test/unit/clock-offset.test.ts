// Heartbeat frames carry the sender's wall clock; watchers measure clock offsets.
import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost, type VgridHost } from '../../protocol/host.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { Registry } from 'prom-client'
import { Heartbeats, encodeBeat, encodeBeatWithClock, parseBeat, estimateOffset, offsetExceeds, MAX_CLOCK_OFFSET_MS } from '../../protocol/heartbeat.ts'

test('old 16-byte frames, extended frames and longer frames from a newer agent all parse', t => {
  const v = { incarnation: 3, seq: 7 }
  t.deepEqual(parseBeat(encodeBeat(v)), { beat: v, size: 16 })
  t.deepEqual(parseBeat(encodeBeatWithClock(v, 1234.5)), { beat: { ...v, wallMs: 1234.5 }, size: 26 })
  // a newer agent's frame with 8 more bytes: read what we know, skip the rest
  const ext = encodeBeatWithClock(v, 99)
  const longer = new Uint8Array(ext.length + 8)
  longer.set(ext)
  longer[1] = 32
  t.deepEqual(parseBeat(longer), { beat: { ...v, wallMs: 99 }, size: 34 })
  t.is(parseBeat(ext.subarray(0, 10)), 'need')
  t.is(parseBeat(encodeBeat(v).subarray(0, 15)), 'need')
  // garbage: a too-short extension, a negative version, a bad clock
  t.is((parseBeat(Uint8Array.from([0xff, 3, 0, 0, 0])) as { beat: unknown }).beat, null)
  t.is((parseBeat(encodeBeat({ incarnation: -1, seq: 0 })) as { beat: unknown }).beat, null)
  t.is((parseBeat(encodeBeatWithClock(v, Number.NaN)) as { beat: unknown }).beat, null)
})

test('the offset estimate takes the least-delayed sample; the bound applies either way', t => {
  t.is(estimateOffset([]), undefined)
  t.is(estimateOffset([-12, -3, -40]), -3)
  t.false(offsetExceeds(MAX_CLOCK_OFFSET_MS))
  t.true(offsetExceeds(MAX_CLOCK_OFFSET_MS + 1))
  t.true(offsetExceeds(-3_600_000))
})

test('a watcher measures a peer\'s clock an hour ahead and reports it once', async t => {
  const clusterKey = generateClusterKey()
  const hosts: VgridHost[] = []
  const beats: Heartbeats[] = []
  t.teardown(async () => {
    await Promise.all(beats.map(async b => await b.stop()))
    await Promise.all(hosts.map(async h => await h.stop()))
  })
  const reports: Array<[string, number, boolean]> = []
  const skews = [0, 3_600_000]
  const registry = new Registry()
  for (const [i, skew] of skews.entries()) {
    const host = await createHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey, listen: [`/memory/clock${process.pid}-${i}`], mdns: false, transport: 'memory' })
    hosts.push(host)
    beats.push(new Heartbeats({
      host,
      protocol: '/test/heartbeat/1',
      intervalMs: 100,
      timeoutMs: 2000,
      watchers: 1,
      version: () => ({ incarnation: 1, seq: 1 }),
      onBeat: () => {},
      onSilent: () => {},
      onLost: () => {},
      wallClock: () => Date.now() + skew,
      sendClockTo: () => true,
      registry: i === 0 ? registry : undefined,
      onClockOffset: (peer, ms, over) => { reports.push([peer, ms, over]) }
    }))
  }
  await Promise.all(beats.map(async b => { await b.start() }))
  await hosts[0]!.dial(hosts[1]!.getMultiaddrs()[0]!)
  const deadline = Date.now() + 10_000
  while ((beats[0]!.clockOffsets().size === 0 || beats[1]!.clockOffsets().size === 0) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  await new Promise(resolve => setTimeout(resolve, 500))
  const [a, b] = hosts.map(h => h.peerId.toString()) as [string, string]
  const ofB = beats[0]!.clockOffsets().get(b)!
  const ofA = beats[1]!.clockOffsets().get(a)!
  t.true(ofB.over && Math.abs(ofB.offsetMs - 3_600_000) < 1000, `A sees B at ${ofB.offsetMs} ms`)
  t.true(ofA.over && Math.abs(ofA.offsetMs + 3_600_000) < 1000, `B sees A at ${ofA.offsetMs} ms`)
  const text = await registry.metrics()
  t.regex(text, /^vgrid_clock_offset_peers_over_bound 1$/m)
  t.regex(text, new RegExp(`^vgrid_clock_offset_seconds\\{peer="${b}"\\} 3[56]\\d\\d`, 'm'))
  t.deepEqual(reports.map(([p, , over]) => [p, over]).sort(), [[a, true], [b, true]].sort(), 'one report per peer, not one per beat')
})
