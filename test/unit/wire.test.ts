import test from 'ava'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeAdvert, decodeRelayedAdvert, encodeAdvert, signAdvert, MAX_ADVERT_BYTES, type Advert } from '../../protocol/advert.ts'
import { newerThan, digestOf, doubtedIn, syncPartner, parseSyncMessage } from '../../protocol/member-sync.ts'
import { decodeSuspicion, encodeSuspicion, type Suspicion } from '../../protocol/suspicion.ts'
import { protocolCompat, protocolOf, CompatReports } from '../../protocol/compat.ts'
import { testAdvertExtra } from '../../protocol/own-advert.ts'
import { decodeHeads } from '../../node/state/announce.ts'
import { decodeBeat, encodeBeat } from '../../protocol/heartbeat.ts'
import { generateClusterKey, parseClusterKey, formatClusterKey, encodeToken, decodeToken, clusterKeyFromHex, keyHex } from '../../protocol/cluster-key.ts'
import { planDials, planTrim, backoffMs, type DialTarget } from '../../protocol/dialer.ts'
import { poolOf } from '../../protocol/pool.ts'
import { onAdvert, onSuspect } from '../../protocol/membership.ts'

const r = { cpu: 2, memoryBytes: 10, diskBytes: 100 }
const advert = (nodeId: string, extra: Partial<Advert> = {}): Advert => ({
  v: 1, cluster: 'c1', nodeId, name: nodeId, incarnation: 1, seq: 1, status: 'alive', addrs: ['/ip4/127.0.0.1/tcp/1'],
  capacity: r, reserved: { cpu: 1, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 10, diskBytes: 100 },
  load: [0.1, 0.2, 0.3], version: '0.1.0', labels: { rack: 'a' }, wireguard: null, sig: '', ...extra
})

test('signed adverts round-trip and are accepted only from the node they describe', async t => {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const a = await signAdvert(key, advert(id))
  const ok = await decodeAdvert(encodeAdvert(a), id, 'c1')
  t.true(ok.ok)
  t.deepEqual(ok.ok ? ok.advert : null, a)
  t.true((await decodeAdvert(encodeAdvert(a), undefined, 'c1')).ok, 'relayed: the signature alone is enough')
  const forged = await decodeAdvert(encodeAdvert(a), other, 'c1')
  t.is(forged.ok ? null : forged.reason, 'forged')
  const tampered = await decodeAdvert(encodeAdvert({ ...a, capacity: { ...a.capacity, cpu: 64 } }), undefined, 'c1')
  t.is(tampered.ok ? null : tampered.reason, 'bad-signature')
  const otherKey = await signAdvert(await generateKeyPair('Ed25519'), advert(id))
  const wrongKey = await decodeAdvert(encodeAdvert(otherKey), undefined, 'c1')
  t.is(wrongKey.ok ? null : wrongKey.reason, 'bad-signature')
})

test('bad adverts are rejected with a reason', async t => {
  const reason = async (data: Uint8Array): Promise<string | undefined> => { const d = await decodeAdvert(data, 'peerA', 'c1'); return d.ok ? undefined : d.reason }
  t.is(await reason(new TextEncoder().encode('{')), 'malformed')
  t.is(await reason(new Uint8Array([0xff, 0xfe])), 'malformed')
  t.is(await reason(new Uint8Array(MAX_ADVERT_BYTES + 1)), 'oversized')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), cluster: 'other' })), 'wrong-cluster')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), proto: 0 })), 'schema', 'a protocol version is a positive integer')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), proto: '2' } as never)), 'schema')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), status: 'draining' } as never)), 'schema', 'a new value in a known field breaks it')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), free: { cpu: 1, memoryBytes: 10 } } as never)), 'schema', 'a known field missing inside an object')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), load: [1] })), 'schema')
  t.is(await reason(encodeAdvert({ ...advert('peerA'), capacity: { cpu: -1, memoryBytes: 0, diskBytes: 0 } })), 'schema')
  t.is(await reason(new TextEncoder().encode('null')), 'schema')
  t.is(await reason(encodeAdvert(advert('peerA'))), 'bad-signature')
})

test('a relayed advert is signature-checked only if it is wanted', async t => {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  const signed = encodeAdvert(await signAdvert(key, advert(id)))
  const forged = encodeAdvert(advert(id))
  t.is(await decodeRelayedAdvert(forged, 'c1', () => false), null, 'unwanted: dropped before the signature check')
  const bad = await decodeRelayedAdvert(forged, 'c1', () => true)
  t.is(bad?.ok === false ? bad.reason : null, 'bad-signature')
  t.true((await decodeRelayedAdvert(signed, 'c1', () => true))?.ok)
  const junk = await decodeRelayedAdvert(new TextEncoder().encode('{'), 'c1', () => false)
  t.is(junk?.ok === false ? junk.reason : null, 'malformed', 'garbage is rejected, not skipped')
})

test('member sync sends only what the other side lacks', t => {
  const a = advert('a', { seq: 5 })
  const b = advert('b', { seq: 1 })
  const c = advert('c', { seq: 1 })
  t.deepEqual(digestOf([a, b]), { a: [1, 5], b: [1, 1] })
  t.deepEqual(newerThan([a, b, c], { a: [1, 5], b: [1, 0] }).map(x => x.nodeId), ['b', 'c'])
  t.deepEqual(newerThan([a], { a: 'junk' } as never).map(x => x.nodeId), ['a'])
})

test('member sync digests name doubted members, and a doubted member is always sent', t => {
  const a = advert('a', { seq: 5 })
  const digest = digestOf([a], [{ nodeId: 'b', incarnation: 1, seq: 3 }])
  t.deepEqual(digest, { a: [1, 5], b: [1, 3, 'doubted'] })
  t.deepEqual(doubtedIn(digest, 'b'), { incarnation: 1, seq: 3 })
  t.is(doubtedIn(digest, 'a'), undefined)
  t.is(doubtedIn({ x: 'junk' } as never, 'x'), undefined)
  // b holds itself at the doubted version: its advert goes back anyway (the refutation)
  t.deepEqual(newerThan([advert('b', { seq: 3 })], digest).map(x => x.nodeId), ['b'])
})

test('anti-entropy asks alive members and connected peers not known yet, never doubted ones', t => {
  let table = onAdvert(new Map(), advert('self'), 0).table
  // a newcomer whose first exchange failed: it holds only itself, yet it is connected
  t.is(syncPartner(table, ['seed'], 0.5), 'seed', 'an unknown connected peer is asked')
  t.is(syncPartner(table, [], 0.5), undefined)
  table = onAdvert(onAdvert(table, advert('a'), 0).table, advert('b'), 0).table
  table = onSuspect(table, 'b', { incarnation: 1, seq: 1 }, 10).table
  const picked = new Set([0, 0.3, 0.6, 0.99].map(r => syncPartner(table, ['a', 'b', 'c'], r)))
  t.deepEqual([...picked].sort(), ['a', 'c'], 'b is suspect: it is asked by the doubt re-check instead')
})

test('heartbeat frames carry a version and reject junk', t => {
  t.deepEqual(decodeBeat(encodeBeat({ incarnation: 1732240000000, seq: 42 })), { incarnation: 1732240000000, seq: 42 })
  t.is(decodeBeat(new Uint8Array(15)), null)
  t.is(decodeBeat(encodeBeat({ incarnation: -1, seq: 0 })), null)
  t.is(decodeBeat(encodeBeat({ incarnation: 1.5, seq: 0 })), null)
})

test('cluster keys round-trip through the pnet file format and tokens', t => {
  const k = generateClusterKey()
  const again = parseClusterKey(formatClusterKey(k))
  t.is(again.clusterId, k.clusterId)
  t.is(k.psk.length, 95)
  const tok = decodeToken(encodeToken(k, ['/ip4/10.0.0.1/tcp/7400/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo']))
  t.is(keyHex(tok.key), keyHex(k))
  t.deepEqual(tok.addrs, ['/ip4/10.0.0.1/tcp/7400/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'])
  t.not(clusterKeyFromHex('a'.repeat(64)).clusterId, clusterKeyFromHex('b'.repeat(64)).clusterId)
})

test('bad keys and tokens give clear errors', t => {
  t.throws(() => parseClusterKey('hello'), { message: /not a cluster key file/ })
  t.throws(() => clusterKeyFromHex('zz'), { message: /64 lowercase hex/ })
  t.throws(() => decodeToken('abc'), { message: /must start with "vgrid1."/ })
  t.throws(() => decodeToken('vgrid1.!!!'), { message: /damaged/ })
  t.throws(() => decodeToken('vgrid1.' + Buffer.from('{"k":1}').toString('base64url')), { message: /damaged/ })
  // addresses are checked where they enter, not where the bootstrap first parses them
  const k = generateClusterKey()
  t.throws(() => decodeToken(encodeToken(k, ['/ip4/10.0.0.1/tcp/7400/p2p/not-a-peer-id'])), { message: /join token is damaged \(its address "\/ip4\/10.0.0.1\/tcp\/7400\/p2p\/not-a-peer-id": "not-a-peer-id" is not a peer id\)/ })
  t.throws(() => decodeToken(encodeToken(k, ['nonsense'])), { message: /join token is damaged \(its address "nonsense"/ })
})

const target = (key: string, extra: Partial<DialTarget> = {}): DialTarget =>
  ({ key, peerId: key, addrs: ['/ip4/1.2.3.4/tcp/1'], source: 'member', attempts: 0, nextAt: 0, ...extra })

test('planDials skips connected and not-yet-due targets, puts joins first and respects the room left', t => {
  const plan = planDials({
    targets: [target('a'), target('b', { nextAt: 100 }), target('c'), target('j', { source: 'join', peerId: undefined }), target('d', { attempts: 3 })],
    connected: new Set(['c']),
    now: 50,
    targetPeers: 3,
    maxParallel: 8
  })
  t.deepEqual(plan.map(p => p.key), ['j', 'a'])
})

test('join targets are dialled even when the peer budget is used up, until the node has a few peers', t => {
  const targets = [target('j', { source: 'join', peerId: undefined }), target('a')]
  t.deepEqual(planDials({ targets, connected: new Set(['x', 'y']), now: 0, targetPeers: 2, maxParallel: 8 }).map(p => p.key), ['j'])
  // with three peers the node is in: the join address is an ordinary target (no room, no dial)
  t.deepEqual(planDials({ targets, connected: new Set(['x', 'y', 'z']), now: 0, targetPeers: 2, maxParallel: 8 }), [])
  t.deepEqual(planDials({ targets: targets.slice(0, 1), connected: new Set(['x', 'y', 'z']), now: 0, targetPeers: 4, maxParallel: 8 }).map(p => p.key), ['j'])
})

test('dials under way count against the parallel limit and the peer budget', t => {
  const targets = ['a', 'b', 'c', 'd', 'e'].map(k => target(k))
  const underWay = (k: number): Set<string> => new Set(Array.from({ length: k }, (_, i) => `f${i}`))
  // 8 in parallel at most: 6 already under way leave room for 2
  t.is(planDials({ targets, connected: new Set(), now: 0, targetPeers: 16, maxParallel: 8, inFlight: underWay(6) }).length, 2)
  // 16 peers wanted, 13 connected and 2 under way: room for 1
  const connected = new Set(Array.from({ length: 13 }, (_, i) => `p${i}`))
  t.is(planDials({ targets, connected, now: 0, targetPeers: 16, maxParallel: 8, inFlight: underWay(2) }).length, 1)
  // no room at all, and the node has peers: not even a join address is dialled
  const withJoin = [...targets, target('j', { source: 'join', peerId: undefined })]
  t.deepEqual(planDials({ targets: withJoin, connected, now: 0, targetPeers: 16, maxParallel: 8, inFlight: underWay(8) }), [])
  // an isolated node tries its join address whatever is under way
  t.deepEqual(planDials({ targets: withJoin, connected: new Set(), now: 0, targetPeers: 16, maxParallel: 8, inFlight: underWay(8) }).map(p => p.key), ['j'])
})

test('a target being dialled is not dialled again', t => {
  const plan = planDials({ targets: [target('a'), target('b')], connected: new Set(), now: 0, targetPeers: 16, maxParallel: 8, inFlight: new Set(['a']) })
  t.deepEqual(plan.map(p => p.key), ['b'])
})

test('backoff doubles up to the cap', t => {
  t.deepEqual([1, 2, 3, 4, 5, 10].map(n => backoffMs(n, 1000, 5000)), [1000, 2000, 4000, 5000, 5000, 5000])
})

test('the pool sums alive members only', t => {
  let table = onAdvert(new Map(), advert('a'), 0).table
  table = onAdvert(table, advert('b'), 0).table
  table = onAdvert(table, advert('c', { status: 'leaving' }), 0).table
  const p = poolOf(table)
  t.deepEqual(p.cpu, { total: 4, free: 2 })
  t.deepEqual(p.diskBytes, { total: 200, free: 200 })
  // a draining member's room is no room: its capacity counts, its free room not (bb28)
  const drained = poolOf(table, id => id === [...table.keys()][0])
  t.deepEqual(drained.cpu, { total: 4, free: 1 })
  t.deepEqual(drained.diskBytes, { total: 200, free: 100 })
  // fractions of a cpu add up as numbers people read (bb32: 6.199999999999999)
  let frac = onAdvert(new Map(), advert('x', { free: { cpu: 6.1, memoryBytes: 0, diskBytes: 0 } }), 0).table
  frac = onAdvert(frac, advert('y', { free: { cpu: 0.1, memoryBytes: 0, diskBytes: 0 } }), 0).table
  t.is(poolOf(frac).cpu.free, 6.2)
})

test('planDials picks at random among equally good targets', t => {
  const targets = ['a', 'b', 'c', 'd'].map(k => target(k))
  const first = (r: number): string => planDials({ targets, connected: new Set(), now: 0, targetPeers: 1, maxParallel: 8, random: () => r })[0]!.key
  t.not(first(0), first(0.99))
  // fewer failures still win over chance
  const plan = planDials({ targets: [target('x', { attempts: 2 }), target('y')], connected: new Set(), now: 0, targetPeers: 1, maxParallel: 8, random: () => 0 })
  t.deepEqual(plan.map(p => p.key), ['y'])
})

test('planTrim sheds spare connections above the high-water mark, those the peers dialled first', t => {
  const peers = [
    { peerId: 'o1', outbound: true }, { peerId: 'i1', outbound: false }, { peerId: 'k1', outbound: false },
    { peerId: 'i2', outbound: false }, { peerId: 'o2', outbound: true }, { peerId: 'i3', outbound: false }
  ].map(p => ({ ...p, openedAt: 0 }))
  const keep = new Set(['k1'])
  const at = { now: 60_000, minAgeMs: 30_000 }
  t.deepEqual(planTrim({ peers, keep, targetPeers: 2, highWater: 6, ...at }), [], 'at the high-water mark: nothing')
  t.deepEqual(planTrim({ peers, keep, targetPeers: 2, highWater: 4, ...at }), ['i1', 'i2', 'i3', 'o1'], 'down to the target, inbound first, kept ones kept')
  t.deepEqual(planTrim({ peers, keep: new Set(peers.map(p => p.peerId)), targetPeers: 2, highWater: 4, ...at }), [], 'all in use: none')
  // a newcomer's connection is left alone until it had time to learn the grid
  const young = peers.map(p => p.peerId === 'i1' ? { ...p, openedAt: 59_000 } : p)
  t.deepEqual(planTrim({ peers: young, keep, targetPeers: 2, highWater: 4, ...at }), ['i2', 'i3', 'o1', 'o2'])
})

// Forward compatibility: what a newer release adds is kept or ignored, never a reason to reject.

const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

test('an advert with fields this agent does not know is accepted, keeps them, and still verifies when relayed', async t => {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  // as a newer release would sign it: new top-level fields, new fields inside known objects
  const newer = await signAdvert(key, {
    ...advert(id, { proto: 2, protoMin: 1 }),
    capacity: { ...r, gpus: 2 },
    wireguard: { publicKey: 'pk', endpoint: '10.0.0.1:51820', mtu: 1420 },
    zone: 'eu-1',
    volumes: [{ id: 'v1', bytes: 10 }]
  } as never)
  const got = await decodeAdvert(encodeAdvert(newer), id, 'c1')
  t.true(got.ok, got.ok ? '' : got.detail)
  const kept = got.ok ? got.advert as unknown as Record<string, unknown> : {}
  t.is(kept.zone, 'eu-1')
  t.deepEqual(kept.volumes, [{ id: 'v1', bytes: 10 }])
  t.is((kept.capacity as Record<string, unknown>).gpus, 2)
  // member sync relays the object this agent holds; the next agent checks the signature
  const relayed = got.ok ? await decodeRelayedAdvert(encodeAdvert(got.advert), 'c1', () => true) : null
  t.true(relayed?.ok, 'the relayed copy verifies: nothing was dropped or reordered')
  t.deepEqual(relayed?.ok === true ? relayed.advert : null, newer)
  // and the relay can not add or change one
  const tampered = await decodeAdvert(encodeAdvert({ ...newer, zone: 'us-1' } as never), undefined, 'c1')
  t.is(tampered.ok ? null : tampered.reason, 'bad-signature')
})

test('adverts from before the protocol field speak protocol 1', async t => {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  const old = await signAdvert(key, advert(id))
  t.false('proto' in old)
  const got = await decodeAdvert(encodeAdvert(old), id, 'c1')
  t.true(got.ok)
  t.deepEqual(protocolOf(old), { min: 1, max: 1 })
  t.true(protocolCompat(old).ok)
})

test('protocol versions: ranges that overlap work together, others say which side to update', t => {
  t.deepEqual(protocolCompat({ proto: 3, protoMin: 1 }, { min: 1, max: 2 }), { proto: { min: 1, max: 3 }, ok: true, speak: 2 })
  const newer = protocolCompat({ proto: 4, protoMin: 3 }, { min: 1, max: 2 })
  t.false(newer.ok)
  t.regex(newer.reason ?? '', /speaks protocol 3-4, this agent speaks 1-2: the member runs a newer release; update this agent/)
  const older = protocolCompat({}, { min: 2, max: 3 })
  t.regex(older.reason ?? '', /speaks protocol 1, this agent speaks 2-3: the member runs an older release; update it/)
  t.deepEqual(protocolOf({ proto: 2, protoMin: 5 }), { min: 2, max: 2 }, 'a min above the max is read as the max')
})

test('an incompatible member is reported once, and again only after it was compatible or forgotten', t => {
  const reports = new CompatReports()
  const ours = { min: 1, max: 1 }
  t.true(reports.note('a', { proto: 2, protoMin: 2 }, ours).report)
  t.false(reports.note('a', { proto: 2, protoMin: 2 }, ours).report, 'the next advert: already said')
  t.deepEqual([...reports.incompatible], ['a'])
  t.true(reports.note('a', { proto: 3, protoMin: 3 }, ours).report, 'a different range is news')
  t.false(reports.note('a', { proto: 1 }, ours).report, 'compatible: nothing to say')
  t.deepEqual([...reports.incompatible], [])
  t.true(reports.note('a', { proto: 3, protoMin: 3 }, ours).report)
  reports.forget('a')
  t.true(reports.note('a', { proto: 3, protoMin: 3 }, ours).report)
})

test('a suspicion with fields this agent does not know is accepted; one with a broken known field is not', t => {
  const s: Suspicion = { v: 1, cluster: 'c1', from: 'p1', target: 'p2', incarnation: 1, seq: 2 }
  const got = decodeSuspicion(json({ ...s, kind: 'dead', reason: 'silent', witnesses: ['p3'] }), 'p1', 'c1')
  t.true(got.ok)
  t.is(got.ok ? got.suspicion.kind : null, 'dead')
  t.true(decodeSuspicion(encodeSuspicion(s), 'p1', 'c1').ok)
  const bad = (v: unknown): string | undefined => { const d = decodeSuspicion(json(v), 'p1', 'c1'); return d.ok ? undefined : d.reason }
  t.is(bad({ ...s, seq: -1, extra: 1 }), 'schema')
  t.is(bad({ ...s, kind: 'zombie' }), 'schema')
  t.is(bad({ ...s, target: undefined }), 'schema')
  t.is(bad({ ...s, from: 'p9' }), 'forged')
})

test('member sync messages: unknown fields and digest entries are ignored, a broken known field is named', t => {
  const a = advert('a', { seq: 5 })
  const msg = parseSyncMessage(json({ digest: { a: [1, 5, 'doubted', 'more'], b: { inc: 1 } }, adverts: [a], compressed: false, v: 2 }), ['digest', 'adverts'])
  t.deepEqual(doubtedIn(msg.digest, 'a'), { incarnation: 1, seq: 5 }, 'an entry with more elements keeps its meaning')
  t.deepEqual(newerThan([advert('b')], msg.digest).map(x => x.nodeId), ['b'], 'an entry of an unknown shape: the advert is sent')
  t.is(msg.adverts.length, 1)
  t.deepEqual(JSON.parse(new TextDecoder().decode(msg.adverts[0])), a)
  t.deepEqual(Object.keys(parseSyncMessage(json({ digest: {}, adverts: 'x' }), ['digest'])), ['digest'], 'only the fields asked for are read')
  t.throws(() => parseSyncMessage(json({ adverts: [] }), ['digest']), { message: /digest is not an object/ })
  t.throws(() => parseSyncMessage(json({ digest: {} }), ['adverts']), { message: /adverts is not a list/ })
  t.throws(() => parseSyncMessage(json([1]), ['digest']), { message: /not an object/ })
  t.throws(() => parseSyncMessage(new Uint8Array([0xff]), ['digest']))
})

test('state heads announcements with fields this agent does not know are accepted', t => {
  const head = 'a'.repeat(64)
  t.deepEqual(decodeHeads(json({ v: 1, heads: [head], origin: 'x', at: 5 })), [head])
  t.is(decodeHeads(json({ v: 1, heads: ['nothex'], origin: 'x' })), null)
})

test('the advert test hook adds fields only with VGRID_TEST_HOOKS=1, and names a bad value', t => {
  t.deepEqual(testAdvertExtra({ VGRID_TEST_ADVERT_EXTRA: '{"zone":"x"}' }), {}, 'production: nothing')
  t.deepEqual(testAdvertExtra({ VGRID_TEST_HOOKS: '1' }), {})
  t.deepEqual(testAdvertExtra({ VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: '{"zone":"x"}' }), { zone: 'x' })
  t.throws(() => testAdvertExtra({ VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: '[1]' }), { message: /VGRID_TEST_ADVERT_EXTRA must be a JSON object/ })
  t.throws(() => testAdvertExtra({ VGRID_TEST_HOOKS: '1', VGRID_TEST_ADVERT_EXTRA: '{' }), { message: /VGRID_TEST_ADVERT_EXTRA is not JSON/ })
})
