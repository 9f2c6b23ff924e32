import test from 'ava'
import { computeFlows, computeRuleset, counterName, flowCounter, peerAllowedIps, tableName, VM_INTERFACES, type Link, type VmPlace } from '../../node/lcm/rules.ts'
import { dropSeries, OTHER } from '../../node/lcm/metrics.ts'
import { VM_NAME } from '../../node/dvmm/vms.ts'
import { tapName, vethName } from '../../node/dvmm/host/net.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { formerVmDrops, parseTableJson } from '../../node/lcm/nft.ts'

const vms: VmPlace[] = [
  { vm: 'lb', address: '100.70.128.1', node: 'n1' },
  { vm: 'web', address: '100.70.128.2', node: 'n2' },
  { vm: 'db', address: '100.70.128.3', node: 'n3' },
  { vm: 'idle', address: '100.70.128.4', node: null }
]
const link = (id: string, from: string, to: string, protocol: Link['protocol'] = 'tcp', port: number | null = 80): Link =>
  ({ id, from: { vm: from, terminal: 'out' }, to: { vm: to, terminal: 'in' }, protocol, port })

test('a node enforces exactly the links with an end on it; the others are skipped with a reason', t => {
  const links = [link('l1', 'lb', 'web'), link('l2', 'web', 'db', 'tcp', 5432), link('l3', 'lb', 'idle'), link('l4', 'lb', 'ghost')]
  const r = computeFlows({ node: 'n2', vmPrefix: '100.70.128.0/17', vms, links })
  t.deepEqual(r.flows.map(f => f.link), ['l1', 'l2'])
  // on n2, which holds neither end of l3, the real reason still (bb27)
  t.deepEqual(r.skipped, [
    { link: 'l3', reason: 'VM idle runs nowhere' },
    { link: 'l4', reason: 'VM ghost has no overlay address' }
  ])
  const r1 = computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms, links })
  t.deepEqual(r1.skipped.find(s => s.link === 'l3'), { link: 'l3', reason: 'VM idle runs nowhere' })
  const r3 = computeFlows({ node: 'n3', vmPrefix: '100.70.128.0/17', vms, links })
  t.deepEqual(r3.skipped.find(s => s.link === 'l1'), { link: 'l1', reason: 'neither end runs on this node' })
})

test('a link whose terminal its VM does not declare lets nothing through (a VM made again under the name with other terminals)', t => {
  const declared: VmPlace[] = [{ ...vms[0]!, outputs: ['out'] }, { ...vms[1]!, inputs: ['other'] }, { ...vms[2]!, inputs: ['in'] }]
  const r = computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms: declared, links: [link('l1', 'lb', 'web'), link('l2', 'lb', 'db')] })
  t.deepEqual(r.flows.map(f => f.link), ['l2'])
  t.deepEqual(r.skipped, [{ link: 'l1', reason: 'VM web has no input terminal "in"' }])
  const noOut = computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms: [{ ...vms[0]!, outputs: ['x'] }, ...declared.slice(2)], links: [link('l2', 'lb', 'db')] })
  t.deepEqual(noOut.skipped, [{ link: 'l2', reason: 'VM lb has no output terminal "out"' }])
})

test('the script declares the drop sets, one counter per link, and each flow as map elements for both directions', t => {
  const rs = computeRuleset({ node: 'n2', table: tableName('n2'), vmPrefix: '100.70.128.0/17', vms, links: [link('l1', 'lb', 'web'), link('u', 'web', 'db', 'udp', 53), link('any', 'db', 'web', 'any', null), link('p', 'db', 'web', 'udp', null)] })
  const T = `inet ${rs.table}`
  t.regex(rs.table, /^vgrid_lcm_[0-9a-f]{10}$/)
  t.true(rs.script.includes('set drops { type ipv4_addr . ipv4_addr; size 65536; flags dynamic; counter; }'))
  t.true(rs.script.includes(`flush chain ${T} forward`))
  for (const m of ['flows_port', 'replies_port', 'flows_proto', 'replies_proto', 'flows_any', 'replies_any', 'icmp_errors']) t.true(rs.script.includes(`flush map ${T} ${m}\n`), m)
  t.true(rs.script.includes('  map flows_port { type ipv4_addr . ipv4_addr . inet_proto . inet_service : counter; }'))
  const c = (id: string): string => rs.flows.find(f => f.link === id)!.counter
  t.is(c('l1'), flowCounter({ protocol: 'tcp', src: '100.70.128.1', dst: '100.70.128.2', port: 80 }))
  const elements = rs.script.split('\n').filter(l => l.startsWith('add element'))
  t.deepEqual(elements.sort(), [
    `add element ${T} flows_any { 100.70.128.3 . 100.70.128.2 : "${c('any')}" }`,
    `add element ${T} flows_port { 100.70.128.1 . 100.70.128.2 . tcp . 80 : "${c('l1')}", 100.70.128.2 . 100.70.128.3 . udp . 53 : "${c('u')}" }`,
    `add element ${T} flows_proto { 100.70.128.3 . 100.70.128.2 . udp : "${c('p')}" }`,
    // ICMP errors of a flow from its destination only; one counter per (destination, source) (the first link's)
    `add element ${T} icmp_errors { 100.70.128.2 . 100.70.128.3 : "${c('any')}", 100.70.128.2 . 100.70.128.1 : "${c('l1')}", 100.70.128.3 . 100.70.128.2 : "${c('u')}" }`,
    `add element ${T} replies_any { 100.70.128.2 . 100.70.128.3 : "${c('any')}" }`,
    `add element ${T} replies_port { 100.70.128.2 . 100.70.128.1 . tcp . 80 : "${c('l1')}", 100.70.128.3 . 100.70.128.2 . udp . 53 : "${c('u')}" }`,
    `add element ${T} replies_proto { 100.70.128.2 . 100.70.128.3 . udp : "${c('p')}" }`
  ].sort())
  t.true(rs.script.includes('  chain undeclared {\n    update @drops { ip saddr . ip daddr }\n    meta l4proto tcp ct state established reject with tcp reset\n    drop\n  }'))
  t.deepEqual(rs.counters.sort(), ['any', 'l1', 'u', 'p'].map(c).sort())
  t.is(new Set(rs.counters).size, 4)
})

test('the forward chain has as many rules for 1,000 links as for one; two links with the same flow share its counter', t => {
  const many: VmPlace[] = Array.from({ length: 1001 }, (_, i) => ({ vm: `v${i}`, address: `100.70.${128 + (i >> 8)}.${i & 255}`, node: i === 0 ? 'n1' : 'n2' }))
  const one = computeRuleset({ node: 'n1', table: 't', vmPrefix: '100.70.128.0/17', vms: many, links: [link('x0', 'v0', 'v1')] })
  const all = computeRuleset({ node: 'n1', table: 't', vmPrefix: '100.70.128.0/17', vms: many, links: Array.from({ length: 1000 }, (_, i) => link(`x${i}`, 'v0', `v${i + 1}`)) })
  t.is(all.flows.length, 1000)
  t.deepEqual(chain(all.script, 'forward'), chain(one.script, 'forward'))
  // cli.a -> srv.x and cli.b -> srv.y, both tcp 80: the same packets, one element, one count for both
  const alone = computeRuleset({ node: 'n1', table: 't', vmPrefix: '100.70.128.0/17', vms, links: [link('b', 'lb', 'web')] })
  const twin = computeRuleset({ node: 'n1', table: 't', vmPrefix: '100.70.128.0/17', vms, links: [link('b', 'lb', 'web'), link('a', 'lb', 'web')] })
  const shared = flowCounter({ protocol: 'tcp', src: '100.70.128.1', dst: '100.70.128.2', port: 80 })
  t.deepEqual(twin.flows.map(f => [f.link, f.counter]), [['a', shared], ['b', shared]])
  t.deepEqual(twin.counters, [shared])
  // adding (or removing) a twin leaves the other link's counter, and so its count, alone
  t.deepEqual(alone.counters, [shared])
  t.is(twin.script.split('\n').filter(l => l.startsWith('add element inet t flows_port')).length, 1)
})

test('a VM source must come in where its address is routed, checked before any flow; forged ones are counted apart', t => {
  const rs = computeRuleset({ node: 'n2', table: 't', vmPrefix: '100.70.128.0/17', vms, links: [link('l1', 'lb', 'web')] })
  const forward = rs.script.slice(rs.script.lastIndexOf('chain forward {')).split('\n').map(l => l.trim())
  const antiSpoof = forward.indexOf('ip saddr 100.70.128.0/17 fib saddr . iif oif missing goto spoofed')
  t.is(antiSpoof, 5, 'right after the interface checks and the pass for traffic that is not VM traffic')
  t.true(forward.findIndex(l => l.includes('map @flows_port accept')) > antiSpoof, 'before the flows (and their replies)')
  t.true(rs.script.includes('set spoofs { type ipv4_addr . ipv4_addr; size 65536; flags dynamic; counter; }'))
  t.true(rs.script.includes(`flush chain inet t spoofed`))
  // the verdict is not in the update's rule: a full set ends that rule unmatched
  t.true(rs.script.includes('  chain spoofed {\n    update @spoofs { ip saddr . ip daddr }\n    drop\n  }'))
})

/** A chain's rules, trimmed, from the second (filling) block of the script. */
function chain (script: string, name: string): string[] {
  const from = script.lastIndexOf(`  chain ${name} {\n`)
  return script.slice(from, script.indexOf('\n  }', from)).split('\n').slice(1).map(l => l.trim())
}

test('VM traffic is decided by interface first: a VM interface sends from and receives at VM addresses only; the host\'s other traffic, IPv4 and IPv6, passes', t => {
  const rs = computeRuleset({ node: 'n2', table: 't', vmPrefix: '100.70.128.0/17', vms, links: [link('l1', 'lb', 'web')] })
  const vmIf = '{ "vgp*", "vgt*" }'
  t.deepEqual(chain(rs.script, 'forward'), [
    `meta nfproto ipv6 iifname != ${vmIf} oifname != ${vmIf} accept`,
    `iifname ${vmIf} ip saddr != 100.70.128.0/17 goto spoofed`,
    `oifname ${vmIf} ip daddr != 100.70.128.0/17 goto undeclared`,
    'ip saddr != 100.70.128.0/17 ip daddr != 100.70.128.0/17 accept',
    'ip saddr 100.70.128.0/17 fib saddr . iif oif missing goto spoofed',
    // ICMP errors about VMs' tracked connections, from the routers and nodes on the way
    'ip saddr != 100.70.128.0/17 meta l4proto icmp ct state related accept',
    // the declared flows, by map lookup: a packet passes only by its own flow's element;
    // replies the tracker knows as such first (so they count for their own link, not for
    // one the other way), and after the flows any tracked one (first seen from the reply side)
    'ct direction reply ct state established,related counter name ip saddr . ip daddr . meta l4proto . th sport map @replies_port accept',
    'ct direction reply ct state established,related counter name ip saddr . ip daddr . meta l4proto map @replies_proto accept',
    'ct direction reply ct state established,related counter name ip saddr . ip daddr map @replies_any accept',
    'counter name ip saddr . ip daddr . meta l4proto . th dport map @flows_port accept',
    'counter name ip saddr . ip daddr . meta l4proto map @flows_proto accept',
    'counter name ip saddr . ip daddr map @flows_any accept',
    'ct state established,related counter name ip saddr . ip daddr . meta l4proto . th sport map @replies_port accept',
    'ct state established,related counter name ip saddr . ip daddr . meta l4proto map @replies_proto accept',
    'ct state established,related counter name ip saddr . ip daddr map @replies_any accept',
    // and ICMP errors from the link's destination about its own flow: no other VM's
    'meta l4proto icmp ct state related counter name ip saddr . ip daddr map @icmp_errors accept',
    // never a bare drop here: it would take the host's IPv6 too
    'goto undeclared'
  ])
  // the node itself: a VM answers it, never opens a connection to it
  // (a reply must come in where its source is routed: no VM answers as another, or as a host beyond the node)
  t.deepEqual(chain(rs.script, 'input'), [`iifname != ${vmIf} accept`, 'fib saddr . iif oif missing goto spoofed', 'ct state established,related accept', 'goto undeclared'])
  t.true(rs.script.includes('  chain input { type filter hook input priority 0; policy accept; }'))
  for (const c of ['forward', 'input', 'spoofed', 'undeclared']) t.true(rs.script.includes(`flush chain inet t ${c}\n`), c)
  // the drops are their sets' updates and then a drop, rules of their own; no other drop anywhere
  t.is(rs.script.match(/^\s*drop$/gm)?.length, 2)
})

test('the VM interface patterns take every VM link end DVMM makes and never the WireGuard interface', t => {
  const matches = (name: string): boolean => VM_INTERFACES.some(p => name.startsWith(p.replace(/\*$/, '')))
  for (const id of ['a', 'web', 'x'.repeat(60)]) {
    t.true(matches(vethName(id)), vethName(id))
    t.true(matches(tapName(id)), tapName(id))
  }
  for (let i = 0; i < 2000; i++) t.false(matches(interfaceName(`12D3KooW${i}`)), interfaceName(`12D3KooW${i}`))
})

test('drops by VM in metrics: an address that is no VM\'s is one label value, summed, and no VM can be named so; a VM\'s link address is its own', t => {
  const d = (src: string, dst: string, srcVm: string | null, dstVm: string | null, packets: number, spoofed?: number, srcLink?: string) => ({ src, dst, srcVm, dstVm, packets, bytes: 0, ...(spoofed != null ? { spoofed } : {}), ...(srcLink != null ? { srcLink } : {}) })
  const series = [...dropSeries([
    d('100.1.128.1', '100.1.128.2', 'web', 'db', 3),
    d('10.254.0.2', '100.1.128.2', null, 'db', 2, 2),
    d('192.0.2.7', '100.1.128.2', null, 'db', 5, 5),
    d('100.1.128.1', '10.254.0.1', 'web', null, 1),
    d('10.254.0.6', '100.1.128.2', null, 'db', 4, 4, 'web')
  ], x => x.packets).values()]
  t.deepEqual(series, [
    { src: 'web', dst: 'db', value: 7 },
    { src: OTHER, dst: 'db', value: 7 },
    { src: 'web', dst: OTHER, value: 1 }
  ])
  t.false(VM_NAME.test(OTHER))
})

test('drops are read per pair from both sets; the forged part of them is marked', t => {
  const elem = (a: string, b: string, packets: number): object => ({ elem: { val: { concat: [a, b] }, counter: { packets, bytes: packets * 60 } } })
  const r = parseTableJson(JSON.stringify({
    nftables: [
      { set: { name: 'drops', elem: [elem('100.1.128.1', '100.1.128.2', 2), elem('100.1.128.3', '100.1.128.2', 1)] } },
      { set: { name: 'spoofs', elem: [elem('100.1.128.1', '100.1.128.2', 5), elem('100.1.128.9', '100.1.128.2', 3)] } }
    ]
  }))
  t.deepEqual(r.drops, [
    { src: '100.1.128.1', dst: '100.1.128.2', packets: 7, bytes: 420, spoofed: 5, sets: ['drops', 'spoofs'] },
    { src: '100.1.128.3', dst: '100.1.128.2', packets: 1, bytes: 60, sets: ['drops'] },
    { src: '100.1.128.9', dst: '100.1.128.2', packets: 3, bytes: 180, spoofed: 3, sets: ['spoofs'] }
  ])
  // the records of a former VM's address (one whose VM went, or is another VM now), from each set they are in; others stay
  t.deepEqual(formerVmDrops(r.drops, new Set(['100.1.128.1'])), [
    { set: 'drops', src: '100.1.128.1', dst: '100.1.128.2' },
    { set: 'spoofs', src: '100.1.128.1', dst: '100.1.128.2' }
  ])
  t.deepEqual(formerVmDrops(r.drops, new Set()), [], 'a forged address no VM held: its records stay (rv33)')
})

test('counter names are valid nft identifiers and distinct for distinct links', t => {
  const names = ['a-b', 'a_b', 'a.b', 'x:y@z', 'A'.repeat(128)].map(counterName)
  t.is(new Set(names).size, names.length)
  for (const n of names) t.regex(n, /^[A-Za-z_][A-Za-z0-9_]*$/)
})

test('bad input is refused with what is wrong', t => {
  t.throws(() => computeRuleset({ node: 'n', table: 'bad name', vmPrefix: '100.70.128.0/17', vms, links: [] }), { message: /table name/ })
  t.throws(() => computeRuleset({ node: 'n', table: 't', vmPrefix: '100.70.128.0', vms, links: [] }), { message: /not an IPv4 CIDR/ })
  const r = computeFlows({ node: 'n1', vmPrefix: '100.70.128.0/17', vms, links: [link('p', 'lb', 'web', 'tcp', 70000), link('q', 'lb', 'web', 'any', 80)] })
  t.is(r.flows.length, 0)
  t.is(r.skipped.length, 2)
})

test('allowed IPs: each remote node gets its own address and the VMs it hosts; a move changes only that', t => {
  const nodes = ['n1', 'n2', 'n3'].map((n, i) => ({ node: n, publicKey: 'k', endpoint: null, address: `100.70.0.${i + 1}` }))
  const m = peerAllowedIps('n1', nodes, vms)
  t.false(m.has('n1'))
  t.deepEqual(m.get('n2'), ['100.70.0.2/32', '100.70.128.2/32'])
  t.deepEqual(m.get('n3'), ['100.70.0.3/32', '100.70.128.3/32'])
  const moved = vms.map(v => v.vm === 'web' ? { ...v, node: 'n3' } : v)
  const m2 = peerAllowedIps('n1', nodes, moved)
  t.deepEqual(m2.get('n2'), ['100.70.0.2/32'])
  t.deepEqual(m2.get('n3'), ['100.70.0.3/32', '100.70.128.2/32', '100.70.128.3/32'])
})
