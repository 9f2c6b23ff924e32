// VMs confined by interface, for real: node N runs VMs a and b, node M runs r, each
// behind the veth DVMM makes (node/dvmm/host/net.ts createVeth: "vgp" + hash, a /30
// link address beside the overlay /32), routed as local-vm-net.ts does; N and M tunnel
// the VM prefix over WireGuard. N also forwards, IPv4 and IPv6, between two
// namespaces that are no VMs (c and the outside o), and listens itself (a service on
// 0.0.0.0). Declared: a -> b and r -> b, tcp 8080 and udp 9000. Everything is tried
// first with no table (each probe works, so a failure later is the rules'), then with
// both nodes' rulesets: VMs reach each other only over the declared links (not over
// their link addresses), send from no address but their own and open nothing on their
// node; the node still reaches its VMs, and the non-VM traffic it forwards passes.
import test from 'ava'
import { connectToBridge, createBridge, ip, nsRun } from '../../node/netns/netns.ts'
import { createVeth, deleteVeth } from '../../node/dvmm/host/net.ts'
import { nodeBin } from '../../node/netns/processes.ts'
import type { VmNetwork } from '../../node/dvmm/drivers/types.ts'
import { overlayPrefix, vmAddress } from '../../node/lcm/overlay.ts'
import { computeRuleset, tableName, type Link, type VmPlace } from '../../node/lcm/rules.ts'
import { applyRuleset, readCounters, removeRuleset } from '../../node/lcm/nft.ts'
import { makeNamespaces, skipReason, subnet, veth } from './ns.ts'
import { echoServer, exchange } from './tcp.ts'
import { tunnelNodes, watchArrivals } from './arrivals.ts'

const reason = await skipReason({ nft: true })
if (reason != null) console.log(`lcm confine test skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

const LINK_RANGE = '10.254.0.0/20'

async function ping6 (ns: string, addr: string): Promise<boolean> {
  const out = await nsRun(ns, 'busybox', ['ping6', '-c', '1', '-W', '2', addr], { allowFail: true, timeoutMs: 10_000 })
  return /1 packets received/.test(out)
}

maybe('VMs talk over declared links only: not over their link addresses, not from another source, not to their node; the node reaches them and its other traffic passes', async t => {
  const [sw, n, m, o, c] = await makeNamespaces(t, ['sw', 'n', 'm', 'o', 'c'])
  const net = await subnet()
  await createBridge(sw!, 'br0')
  for (const [i, h] of [n!, m!].entries()) {
    await connectToBridge({ hostNs: h, hostIf: 'eth0', switchNs: sw!, portIf: `p${i}`, bridge: 'br0' })
    await ip(['-n', h, 'addr', 'add', `${net}.${i + 1}/24`, 'dev', 'eth0'])
  }
  // o (outside) and c: plain hosts on links of N, IPv4 and IPv6, routed through N
  for (const [h, dev, v4, v6] of [[o!, 'eo', '198.51.100', 'fd00:51:'], [c!, 'ec', '203.0.113', 'fd00:113:']] as const) {
    await veth({ ns: n!, dev, cidr: `${v4}.1/24` }, { ns: h, dev: 'eth0', cidr: `${v4}.2/24` })
    await ip(['-n', n!, 'addr', 'add', `${v6}:1/64`, 'dev', dev, 'nodad'])
    await ip(['-n', h, 'addr', 'add', `${v6}:2/64`, 'dev', 'eth0', 'nodad'])
    await ip(['-n', h, 'route', 'add', 'default', 'via', `${v4}.1`])
    await ip(['-n', h, '-6', 'route', 'add', 'default', 'via', `${v6}:1`])
  }
  await nsRun(n!, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'])
  await nsRun(m!, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])

  const p = overlayPrefix(`lcm-confine-${process.pid}`)
  const [A, B, R] = [1, 2, 3].map(i => vmAddress(p, i).v4) as [string, string, string]
  // the VMs as DVMM makes them: ids unique to this process, their namespaces and veths removed by name
  const vm = async (id: string, slot: number, node: string, address: string): Promise<VmNetwork> => {
    t.teardown(async () => { await deleteVeth(id, node) })
    const v = await createVeth(id, LINK_RANGE, slot, node, { address, names: {} })
    await nsRun(node, 'sh', ['-c', `echo 1 > /proc/sys/net/ipv4/conf/${v.hostIf}/proxy_arp; echo 0 > /proc/sys/net/ipv4/neigh/${v.hostIf}/proxy_delay`])
    await ip(['-n', node, 'route', 'replace', `${address}/32`, 'dev', v.hostIf])
    return v
  }
  const va = await vm(`cf${process.pid}a`, 0, n!, A)
  const vb = await vm(`cf${process.pid}b`, 1, n!, B)
  const vr = await vm(`cf${process.pid}r`, 0, m!, R)
  t.regex(va.hostIf, /^vgp/)
  const [nsA, nsB, nsR] = [va.netns!, vb.netns!, vr.netns!]

  await tunnelNodes(t, p, net, [n!, m!], [A, B], [R])

  await echoServer(t, nsB, [8080, 9000, 7777])
  await echoServer(t, nsA, [7777])
  await echoServer(t, n!, [7400]) // a service of the node (libp2p listens so: 0.0.0.0)
  await echoServer(t, o!, [7777])
  const arrivals = await watchArrivals(o!)
  // a forged source outside the VM prefix, for the way out
  await ip(['-n', nsA, 'addr', 'add', '198.51.100.77/32', 'dev', 'lo'])

  /** Routes in a VM: to `dst` from `src` (its link address or a forged one) through its link's host end. */
  const via = async (v: VmNetwork, dst: string, src: string | null): Promise<void> => {
    if (src == null) await ip(['-n', v.netns!, 'route', 'del', `${dst}/32`], { allowFail: true })
    else await ip(['-n', v.netns!, 'route', 'replace', `${dst}/32`, 'via', v.hostAddress, 'src', src])
  }
  /**
   * N asks o over UDP; a, holding o's address for the moment, answers in o's name into
   * N's own socket (a reply in conntrack's eyes): whether N took it.
   */
  const injected = async (): Promise<boolean> => {
    await ip(['-n', nsA, 'addr', 'add', '198.51.100.2/32', 'dev', 'lo'])
    try {
      const asking = nsRun(n!, nodeBin(), ['-e', "const d = require('dgram').createSocket('udp4'); let got = 'none'; d.on('message', m => { got = String(m) }); d.bind(40000, () => { d.send('query', 5353, '198.51.100.2'); setTimeout(() => { console.log('got ' + got); process.exit(0) }, 2000) })"])
      await new Promise(resolve => setTimeout(resolve, 700))
      await nsRun(nsA, nodeBin(), ['-e', "const d = require('dgram').createSocket('udp4'); d.bind(5353, '198.51.100.2', () => { d.send('forged', 40000, '198.51.100.1', () => { d.close() }) })"])
      return (await asking).includes('got forged')
    } finally {
      await ip(['-n', nsA, 'addr', 'del', '198.51.100.2/32', 'dev', 'lo'])
    }
  }
  /** Every probe, each true when the exchange went through (and, the way out, what reached o). */
  const probe = async (): Promise<Record<string, boolean | number>> => {
    const r: Record<string, boolean | number> = {}
    for (const proto of ['tcp', 'udp'] as const) {
      await via(va, vb.vmAddress, va.vmAddress)
      await via(vb, va.vmAddress, vb.vmAddress)
      r[`a -> b link address, from a's link address, ${proto}`] = await exchange(nsA, proto, vb.vmAddress, 7777, 700)
      r[`b -> a link address, from b's link address, ${proto}`] = await exchange(nsB, proto, va.vmAddress, 7777, 700)
      await via(va, vb.vmAddress, null)
      r[`a -> b link address, from a's overlay address, ${proto}`] = await exchange(nsA, proto, vb.vmAddress, 7777, 700)
      r[`a -> its host end, ${proto}`] = await exchange(nsA, proto, va.hostAddress, 7400, 700)
      r[`a -> N's underlay address, ${proto}`] = await exchange(nsA, proto, `${net}.1`, 7400, 700)
    }
    const before = await arrivals()
    await via(va, '198.51.100.2', va.vmAddress)
    r['a -> o from its link address'] = await exchange(nsA, 'tcp', '198.51.100.2', 7777, 700)
    await via(va, '198.51.100.2', '198.51.100.77')
    await exchange(nsA, 'udp', '198.51.100.2', 7777, 500)
    await via(va, '198.51.100.2', null)
    const after = await arrivals()
    r['a -> o: packets from a\'s link address reaching o'] = after(va.vmAddress, 'tcp') - before(va.vmAddress, 'tcp')
    r['a -> o: packets from a forged outside address reaching o'] = after('198.51.100.77', 'udp') - before('198.51.100.77', 'udp')
    r['a answers in o\'s name into N\'s own UDP query'] = await injected()
    return r
  }
  /** What must pass, with the rules or without. */
  const mustPass = async (): Promise<void> => {
    for (const proto of ['tcp', 'udp'] as const) {
      t.true(await exchange(n!, proto, va.vmAddress, 7777), `the node reaches a's link address, ${proto}`)
      // (over udp, a's unbound echo socket answers a datagram to A from its link address, the
      // source its route to the node's end picks: not a reply in conntrack's eyes, so dropped)
      if (proto === 'tcp') t.true(await exchange(n!, proto, A, 7777), `the node reaches a's overlay address, ${proto}`)
      t.true(await exchange(c!, proto, '198.51.100.2', 7777), `c -> o through N (IPv4, no VM), ${proto}`)
      t.true(await exchange(nsA, proto, B, proto === 'tcp' ? 8080 : 9000), `a -> b declared, ${proto}`)
      t.true(await exchange(nsR, proto, B, proto === 'tcp' ? 8080 : 9000, 5000), `r -> b declared, through the tunnel, ${proto}`)
    }
    t.true(await ping6(c!, 'fd00:51::2'), 'c -> o through N, IPv6')
    t.true(await ping6(n!, 'fd00:51::2'), 'N -> o, IPv6')
  }

  const open = await probe()
  t.log('without rules:', JSON.stringify(open))
  t.true(Object.values(open).every(x => x === true || (typeof x === 'number' && x > 0)), `without rules every probe gets through: ${JSON.stringify(open)}`)
  await mustPass()

  const vms: VmPlace[] = [{ vm: 'a', address: A, node: 'n' }, { vm: 'b', address: B, node: 'n' }, { vm: 'r', address: R, node: 'm' }]
  const links: Link[] = ['a', 'r'].flatMap(from => [['tcp', 8080], ['udp', 9000]].map(([protocol, port]) =>
    ({ id: `${from}-b-${protocol}`, from: { vm: from, terminal: 'out' }, to: { vm: 'b', terminal: 'in' }, protocol: protocol as 'tcp' | 'udp', port: port as number })))
  // and one where nothing listens: its ICMP errors
  links.push({ id: 'a-b-udp9001', from: { vm: 'a', terminal: 'quiet' }, to: { vm: 'b', terminal: 'in' }, protocol: 'udp', port: 9001 })
  const tables: Array<[string, string]> = [[n!, tableName('n')], [m!, tableName('m')]]
  for (const [host, table] of tables) {
    t.teardown(async () => { await removeRuleset(host, table) })
    const rs = computeRuleset({ node: host === n ? 'n' : 'm', table, vmPrefix: p.vmV4, vms, links })
    t.deepEqual(rs.skipped, host === n ? [] : [{ link: 'a-b-tcp', reason: 'neither end runs on this node' }, { link: 'a-b-udp', reason: 'neither end runs on this node' }, { link: 'a-b-udp9001', reason: 'neither end runs on this node' }])
    await applyRuleset(host, rs)
  }

  const shut = await probe()
  t.log('with the rules:', JSON.stringify(shut))
  t.true(Object.values(shut).every(x => x === false || x === 0), `with the rules no probe gets through: ${JSON.stringify(shut)}`)
  await mustPass()

  // the ICMP errors of a declared flow reach its source: a's datagram to b's udp 9000,
  // with nothing listening there now, is refused (port unreachable), not silently lost
  const refused = await nsRun(nsA, nodeBin(), ['-e', `const d = require('dgram').createSocket('udp4'); d.on('error', e => { console.log(e.code); process.exit(0) }); d.connect(9001, '${B}', () => { d.send('x'); setTimeout(() => d.send('x', err => { console.log(err ? err.code : 'no error'); process.exit(0) }), 700) })`])
  t.regex(refused, /ECONNREFUSED/, 'b\'s port unreachable reached a')

  const { drops, counters } = await readCounters(n!, tableName('n'))
  t.log('drops at N:', JSON.stringify(drops))
  const at = (src: string, dst: string): (typeof drops)[number] | undefined => drops.find(d => d.src === src && d.dst === dst)
  // a link-address source from a VM interface is a forged one; tcp (SYN and its retries) and udp each
  t.true((at(va.vmAddress, vb.vmAddress)?.spoofed ?? 0) >= 2, 'a -> b by link addresses: counted, as forged')
  t.true((at(vb.vmAddress, va.vmAddress)?.spoofed ?? 0) >= 2, 'b -> a by link addresses: counted, as forged')
  t.true((at(A, vb.vmAddress)?.packets ?? 0) >= 2, 'a -> b\'s link address from a\'s own: counted')
  t.is(at(A, vb.vmAddress)?.spoofed, undefined, 'and not as forged')
  t.true((at(va.vmAddress, va.hostAddress)?.packets ?? 0) >= 2, 'a -> its host end: counted')
  t.true((at(A, `${net}.1`)?.packets ?? 0) >= 2, 'a -> N\'s underlay address: counted')
  t.true((at(va.vmAddress, '198.51.100.2')?.spoofed ?? 0) >= 1, 'a -> o from its link address: counted, as forged')
  t.true((at('198.51.100.77', '198.51.100.2')?.spoofed ?? 0) >= 1, 'a -> o from a forged address: counted, as forged')
  t.false(drops.some(d => d.src.startsWith('203.0.113.') || d.dst.startsWith('203.0.113.')), 'c\'s traffic is none of the table\'s business')
  t.is(at(B, A), undefined, 'b\'s ICMP error about a\'s flow is no breach')
  t.true([...counters.values()].every(x => x.packets > 0), `every declared link counted what it passed: ${JSON.stringify([...counters])}`)
})
