// What an earlier agent on this host left (node/lcm/leftovers.ts), from what `ip -j -d
// link show`, `nft -j list tables` and /proc/net/unix print: only LCM WireGuard
// interfaces and LCM tables other than the agent's own, never a VM's tap or another
// program's table.
import test from 'ava'
import { foreignTables, lcmSocketNames, leftoverInterfaces, listenerInodes } from '../../node/lcm/leftovers.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { tableName } from '../../node/lcm/rules.ts'
import { overlayDownReason } from '../../node/lcm/health.ts'

const own = interfaceName('new-node')
const old = interfaceName('old-node')
const tun = (ifname: string, type = 'tun'): object => ({ ifname, linkinfo: { info_kind: 'tun', info_data: { type } } })

test('leftover interfaces: another identity\'s (wireguard-go\'s tun or the kernel\'s), an earlier version\'s name; not ours, not a VM\'s tap or veth, not another program\'s', t => {
  t.deepEqual(leftoverInterfaces([
    { ifname: 'lo' },
    { ifname: 'eth0', linkinfo: { info_kind: 'veth' } },
    tun(own),
    tun(old),
    { ifname: interfaceName('kernel-node'), linkinfo: { info_kind: 'wireguard' } },
    tun('vgabcdefghijklm'), // an earlier version's "vg" + 13
    tun('vgpabcdefghijkl', 'tap'), // a VM's tap
    tun('vgtabcdefghijkl'), // a VM's, by name whatever its kind
    { ifname: 'vgpabcdefghijkm', linkinfo: { info_kind: 'veth' } },
    tun('tailscale0'),
    { ifname: 'wg0', linkinfo: { info_kind: 'wireguard' } }, // the operator's own
    tun('vgwABCDEFGHIJKL'), // not base32 lower case: no name of ours
    { ifname: interfaceName('bridge-node'), linkinfo: { info_kind: 'bridge' } }
  ], own), [old, interfaceName('kernel-node'), 'vgabcdefghijklm'])
  t.deepEqual(leftoverInterfaces([tun(own)], own), [], 'a restart of the same identity finds nothing here (create() replaces its own)')
})

test('foreign tables: the LCM tables of the inet family other than ours; junk output is an error that says so', t => {
  const mine = tableName('new-node')
  const theirs = tableName('old-node')
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.9' } },
      { table: { family: 'inet', name: mine, handle: 1 } },
      { table: { family: 'inet', name: theirs, handle: 2 } },
      { table: { family: 'ip', name: tableName('ip-family'), handle: 3 } },
      { table: { family: 'inet', name: 'filter', handle: 4 } },
      { table: { family: 'inet', name: 'vgrid_lcm_nothex!!!!', handle: 5 } }
    ]
  })
  t.deepEqual(foreignTables(json, mine), [theirs])
  t.deepEqual(foreignTables(JSON.stringify({ nftables: [] }), mine), [])
  t.throws(() => foreignTables('Error: no nft', mine), { message: /nft -j list tables gave no JSON/ })
  t.throws(() => foreignTables('{}', mine), { message: /no "nftables" array/ })
})

test('listener inodes: the listening control socket of the interface, under /run or /var/run; not a client\'s, not another interface\'s', t => {
  const text = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    `0000000076e0fcc4: 00000002 00000000 00010000 0001 01 1887523 /var/run/wireguard/${old}.sock`,
    `0000000076e0fcc5: 00000003 00000000 00000000 0001 03 1887530 /var/run/wireguard/${old}.sock`,
    `0000000076e0fcc6: 00000002 00000000 00010000 0001 01 1887524 /run/wireguard/${own}.sock`,
    '0000000076e0fcc7: 00000002 00000000 00010000 0001 01 1887525 @/some/abstract',
    '0000000076e0fcc8: 00000003 00000000 00000000 0001 03 1887526',
    ''
  ].join('\n')
  t.deepEqual(listenerInodes(text, old), [1887523])
  t.deepEqual(listenerInodes(text, own), [1887524])
  t.deepEqual(listenerInodes(text, interfaceName('none')), [])
  t.deepEqual(listenerInodes('', old), [])
})

test('overlay down: the reason links give while this node\'s WireGuard is not running, none while it runs', t => {
  t.is(overlayDownReason({ ok: true, error: null }), null)
  t.is(overlayDownReason({ ok: false, error: 'WireGuard cannot start: x' }), 'this node\'s overlay is down: WireGuard cannot start: x')
  t.is(overlayDownReason({ ok: false, error: null }), 'this node\'s overlay is down: WireGuard is not running')
})

test('the LCM control sockets in wireguard-go\'s run dir other than our own: LCM names only, never a VM\'s or another program\'s', t => {
  t.deepEqual(lcmSocketNames(['vgwabcdefghijkl.sock', 'vgwmnopqrstuvwx.sock', 'wg0.sock', 'vgwabcdefghijkl', 'vgpabcdefghijkl.sock', 'notes.txt'], 'vgwmnopqrstuvwx'), ['vgwabcdefghijkl'])
})
