import test from 'ava'
import { interfaceName, isLegacyNameOf, isValidEndpoint, isValidKey, parseDump, renderConfig } from '../../node/lcm/wireguard-format.ts'
import { parseTableJson } from '../../node/lcm/nft.ts'

const K1 = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='
const K2 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='

test('parseDump reads the interface and its peers', t => {
  const text = [
    `PRIVATE\t${K1}\t51820\toff`,
    `${K2}\t(none)\t10.0.0.2:51820\t100.64.0.2/32,100.64.128.9/32\t1700000000\t1234\t5678\t25`,
    `${K1}\t(none)\t(none)\t(none)\t0\t0\t0\toff`
  ].join('\n') + '\n'
  const s = parseDump(text, 'vgx')
  t.is(s.name, 'vgx')
  t.is(s.publicKey, K1)
  t.is(s.listenPort, 51820)
  t.deepEqual(s.peers[0], { publicKey: K2, endpoint: '10.0.0.2:51820', allowedIps: ['100.64.0.2/32', '100.64.128.9/32'], latestHandshake: 1_700_000_000_000, rxBytes: 1234, txBytes: 5678, persistentKeepalive: 25 })
  t.deepEqual(s.peers[1], { publicKey: K1, endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 })
})

test('parseDump names what is wrong in bad output', t => {
  t.throws(() => parseDump('', 'x'), { message: /empty output/ })
  t.throws(() => parseDump('a\tb', 'x'), { message: /interface line has 2 fields/ })
  t.throws(() => parseDump(`p\t${K1}\t1\toff\n${K2}\t(none)\t(none)`, 'x'), { message: /peer line has 3 fields/ })
  t.throws(() => parseDump(`p\t${K1}\t1\toff\n${K2}\t(none)\t(none)\t(none)\tsoon\t0\t0\toff`, 'x'), { message: /latest handshake is not a count/ })
})

test('keys and endpoints are validated', t => {
  t.true(isValidKey(K1))
  t.false(isValidKey(K1.slice(1)))
  t.false(isValidKey('yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmB='), 'last char must leave the low bits zero')
  t.false(isValidKey(42))
  t.true(isValidEndpoint('10.1.2.3:51820'))
  t.true(isValidEndpoint('[fd00::1]:51820'))
  t.false(isValidEndpoint('10.1.2.3'))
  t.false(isValidEndpoint('10.1.2.300:1'))
  t.false(isValidEndpoint('10.1.2.3:0'))
  t.false(isValidEndpoint('10.1.2.3:65536'))
  t.false(isValidEndpoint('host.example:51820'), 'names are not resolved: adverts carry addresses')
  t.false(isValidEndpoint('10.1.2.3:1 --evil'))
})

test('interface names are unique per node id, at most 15 chars, and not shared by ids with a common prefix', t => {
  const a = interfaceName('12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')
  const b = interfaceName('12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB')
  t.not(a, b)
  t.is(a.length, 15)
  t.regex(a, /^vgw[a-z2-7]{12}$/)
  t.is(interfaceName('x'), interfaceName('x'))
})

test('the name earlier versions gave a node\'s interface is recognised from the current one, and no other', t => {
  const name = interfaceName('12D3KooWAAAA')
  // what the old interfaceName made: "vg" + 13 base32 of the same hash, whose first 12 are the new name's last 12
  const old = (c: string): string => `vg${name.slice(3)}${c}`
  t.true(isLegacyNameOf(old('a'), name))
  t.true(isLegacyNameOf(old('7'), name))
  t.false(isLegacyNameOf(old('8'), name), 'not base32')
  t.false(isLegacyNameOf(name, name), 'never the interface itself')
  t.false(isLegacyNameOf(`vg${interfaceName('other').slice(3)}a`, name), 'another node\'s')
  t.false(isLegacyNameOf(`vg${name.slice(3)}`, name), 'too short')
  t.false(isLegacyNameOf(old('a'), 'eth0'), 'only for a current-form name')
})

test('renderConfig writes wg(8) config', t => {
  t.is(renderConfig({ privateKey: K1, listenPort: 1, peers: [{ publicKey: K2, endpoint: '1.2.3.4:5', allowedIps: ['10.0.0.1/32'], persistentKeepalive: 5 }] }),
    `[Interface]\nPrivateKey = ${K1}\nListenPort = 1\n\n[Peer]\nPublicKey = ${K2}\nEndpoint = 1.2.3.4:5\nAllowedIPs = 10.0.0.1/32\nPersistentKeepalive = 5\n`)
})

test('parseTableJson reads named counters and per-pair drops', t => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { counter: { family: 'inet', name: 'c_a', table: 't', packets: 4, bytes: 240 } },
      { set: { name: 'drops', elem: [{ elem: { val: { concat: ['100.1.128.1', '100.1.128.2'] }, counter: { packets: 2, bytes: 120 } } }, { elem: { val: 'junk' } }] } }
    ]
  })
  const r = parseTableJson(json)
  t.deepEqual(r.counters.get('c_a'), { packets: 4, bytes: 240 })
  t.deepEqual(r.drops, [{ src: '100.1.128.1', dst: '100.1.128.2', packets: 2, bytes: 120, sets: ['drops'] }])
  t.throws(() => parseTableJson('not json'), { message: /no JSON/ })
  t.throws(() => parseTableJson('{}'), { message: /no "nftables" array/ })
})
