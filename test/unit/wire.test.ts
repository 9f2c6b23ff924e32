import test from 'ava'
import { decodeAdvert, encodeAdvert, isNewer, MAX_ADVERT_BYTES, type Advert } from '../../protocol/advert.ts'
import { generateClusterKey, parseClusterKey, formatClusterKey, encodeToken, decodeToken, clusterKeyFromHex, keyHex } from '../../protocol/cluster-key.ts'
import { planDials, backoffMs, type DialTarget } from '../../protocol/dialer.ts'
import { poolOf } from '../../protocol/pool.ts'
import { onAdvert } from '../../protocol/membership.ts'

const r = { cpu: 2, memoryBytes: 10, diskBytes: 100 }
const advert = (nodeId: string, extra: Partial<Advert> = {}): Advert => ({
  v: 1, cluster: 'c1', nodeId, name: nodeId, incarnation: 1, seq: 1, status: 'alive', addrs: ['/ip4/127.0.0.1/tcp/1'],
  capacity: r, reserved: { cpu: 1, memoryBytes: 0, diskBytes: 0 }, free: { cpu: 1, memoryBytes: 10, diskBytes: 100 },
  load: [0.1, 0.2, 0.3], version: '0.1.0', labels: { rack: 'a' }, wireguard: null, ...extra
})

test('adverts round-trip and are accepted only from the node they describe', t => {
  const a = advert('peerA')
  const ok = decodeAdvert(encodeAdvert(a), 'peerA', 'c1')
  t.true(ok.ok)
  t.deepEqual(ok.ok ? ok.advert : null, a)
  const forged = decodeAdvert(encodeAdvert(a), 'peerB', 'c1')
  t.deepEqual(forged.ok ? null : forged.reason, 'forged')
})

test('bad adverts are rejected with a reason', t => {
  const reason = (data: Uint8Array): string | undefined => { const d = decodeAdvert(data, 'peerA', 'c1'); return d.ok ? undefined : d.reason }
  t.is(reason(new TextEncoder().encode('{')), 'malformed')
  t.is(reason(new Uint8Array([0xff, 0xfe])), 'malformed')
  t.is(reason(new Uint8Array(MAX_ADVERT_BYTES + 1)), 'oversized')
  t.is(reason(encodeAdvert({ ...advert('peerA'), cluster: 'other' })), 'wrong-cluster')
  t.is(reason(encodeAdvert({ ...advert('peerA'), extra: 1 } as never)), 'schema')
  t.is(reason(encodeAdvert({ ...advert('peerA'), load: [1] })), 'schema')
  t.is(reason(encodeAdvert({ ...advert('peerA'), capacity: { cpu: -1, memoryBytes: 0, diskBytes: 0 } })), 'schema')
  t.is(reason(new TextEncoder().encode('null')), 'schema')
})

test('isNewer orders by incarnation, then seq', t => {
  t.true(isNewer({ incarnation: 2, seq: 1 }, { incarnation: 1, seq: 99 }))
  t.true(isNewer({ incarnation: 1, seq: 2 }, { incarnation: 1, seq: 1 }))
  t.false(isNewer({ incarnation: 1, seq: 1 }, { incarnation: 1, seq: 1 }))
})

test('cluster keys round-trip through the pnet file format and tokens', t => {
  const k = generateClusterKey()
  const again = parseClusterKey(formatClusterKey(k))
  t.is(again.clusterId, k.clusterId)
  t.is(k.psk.length, 95)
  const tok = decodeToken(encodeToken(k, ['/ip4/10.0.0.1/tcp/7400/p2p/x']))
  t.is(keyHex(tok.key), keyHex(k))
  t.deepEqual(tok.addrs, ['/ip4/10.0.0.1/tcp/7400/p2p/x'])
  t.not(clusterKeyFromHex('a'.repeat(64)).clusterId, clusterKeyFromHex('b'.repeat(64)).clusterId)
})

test('bad keys and tokens give clear errors', t => {
  t.throws(() => parseClusterKey('hello'), { message: /not a cluster key file/ })
  t.throws(() => clusterKeyFromHex('zz'), { message: /64 lowercase hex/ })
  t.throws(() => decodeToken('abc'), { message: /must start with "vgrid1."/ })
  t.throws(() => decodeToken('vgrid1.!!!'), { message: /damaged/ })
  t.throws(() => decodeToken('vgrid1.' + Buffer.from('{"k":1}').toString('base64url')), { message: /damaged/ })
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

test('join targets are dialled even when the peer budget is used up', t => {
  const plan = planDials({ targets: [target('j', { source: 'join', peerId: undefined }), target('a')], connected: new Set(['x', 'y']), now: 0, targetPeers: 2, maxParallel: 8 })
  t.deepEqual(plan.map(p => p.key), ['j'])
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
})
