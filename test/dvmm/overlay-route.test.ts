// A VM with an overlay address is routed on its node from the moment its interface
// exists, before it runs and before the connection manager's plan learns of it: the
// anti-spoof rule (fib saddr . iif) takes a packet from an unrouted VM address for a
// forged one. Real createVeth / createTap in a node namespace, the real ruleset; the
// control takes the route away again and sees the old drop, counted as forged.
import test from 'ava'
import { checkSupport, createNamespace, deleteNamespace, ip, nsRun } from '../../node/netns/netns.ts'
import { createTap, createVeth, deleteTap, deleteVeth, tapName, vethName, vmNetns } from '../../node/dvmm/host/net.ts'
import { computeRuleset } from '../../node/lcm/rules.ts'
import { applyRuleset, readCounters } from '../../node/lcm/nft.ts'
import { echoServer, exchange } from '../lcm/tcp.ts'

const support = checkSupport({ nft: true })
if (!support.ok) console.log(`overlay route test skipped: ${support.reason}`)
const maybe = support.ok ? test : test.skip

const RANGE = '10.254.0.0/20'
const PREFIX = '100.87.128.0/17'
const C = { id: `ovr${process.pid}c`, address: '100.87.128.1' }
const D = { id: `ovr${process.pid}d`, address: '100.87.128.2' }

interface RouteJson { dst: string, dev?: string, type?: string }
const routes = async (ns: string): Promise<RouteJson[]> => JSON.parse(await ip(['-n', ns, '-j', 'route', 'show', 'table', 'main'])) as RouteJson[]
const sysctl = async (ns: string, path: string): Promise<string> => (await nsRun(ns, 'cat', [`/proc/sys/net/ipv4/${path}`])).trim()

maybe('createVeth / createTap route the overlay address to the node end before the VM runs; its first packet is not forged', async t => {
  const n = `ovr-${process.pid}-node`
  t.teardown(async () => {
    for (const v of [C, D, { id: `ovr${process.pid}plain` }]) await deleteVeth(v.id, n)
    for (const id of [`ovr${process.pid}tap`, `ovr${process.pid}tapplain`]) await deleteTap(id, n)
    await deleteNamespace(n, 1000)
  })
  await createNamespace(n)
  await ip(['-n', n, 'link', 'set', 'lo', 'up'])
  // as on a node without a tunnel (with one, the range is dev wg): an unrouted VM address goes nowhere
  await ip(['-n', n, 'route', 'add', 'unreachable', PREFIX])
  t.is(await sysctl(n, 'ip_forward'), '0', 'forwarding is off in the node, as on a fresh host before any plan')

  const nc = await createVeth(C.id, RANGE, 0, n, { address: C.address, names: {} })
  // right after createVeth, before anything else runs
  t.deepEqual((await routes(n)).filter(r => r.dst === C.address).map(r => r.dev), [vethName(C.id)])
  t.is(nc.overlayAddress, C.address)
  for (const [path, want] of [['conf/%/proxy_arp', '1'], ['neigh/%/proxy_delay', '0'], ['conf/%/forwarding', '1']] as const) {
    t.is(await sysctl(n, path.replace('%', nc.hostIf)), want, path)
  }
  await createVeth(D.id, RANGE, 1, n, { address: D.address, names: {} })
  const tap = await createTap(`ovr${process.pid}tap`, RANGE, 2, n, { address: '100.87.128.3', names: {} })
  t.deepEqual((await routes(n)).filter(r => r.dst === '100.87.128.3').map(r => r.dev), [tapName(`ovr${process.pid}tap`)])
  t.is(await sysctl(n, `conf/${tap.hostIf}/proxy_arp`), '1')

  // without an overlay address (no connection manager) nothing is routed nor set
  const plain = await createVeth(`ovr${process.pid}plain`, RANGE, 3, n)
  const plainTap = await createTap(`ovr${process.pid}tapplain`, RANGE, 4, n)
  const onPlain = (await routes(n)).filter(r => r.dev === plain.hostIf || r.dev === plainTap.hostIf)
  t.deepEqual(onPlain.map(r => r.dst).sort(), ['10.254.0.12/30', '10.254.0.16/30'], 'only the link /30s (slots 3 and 4)')
  t.is(await sysctl(n, `conf/${plain.hostIf}/proxy_arp`), '0')
  t.is(await sysctl(n, `conf/${plain.hostIf}/forwarding`), '0')

  // the connection manager's rules, C -> D declared; no plan has run (forwarding off, no route but ours)
  const table = `ovr${process.pid}`
  await applyRuleset(n, computeRuleset({
    node: 'n', table, vmPrefix: PREFIX,
    vms: [C, D].map(v => ({ vm: v.id, address: v.address, node: 'n' })),
    links: [{ id: 'c-d', from: { vm: C.id, terminal: 'out' }, to: { vm: D.id, terminal: 'in' }, protocol: 'udp', port: 9000 }]
  }))
  await echoServer(t, vmNetns(D.id), [9000])
  const spoofed = async (): Promise<number> => (await readCounters(n, table)).drops.find(d => d.src === C.address && d.dst === D.address)?.spoofed ?? 0
  t.true(await exchange(nc.netns!, 'udp', D.address, 9000), 'C\'s first datagram to D, and D\'s answer, pass')
  t.is(await spoofed(), 0, 'not counted as forged')

  // the control: without the route (as before), the same genuine datagram is dropped as forged
  await ip(['-n', n, 'route', 'del', `${C.address}/32`])
  t.false(await exchange(nc.netns!, 'udp', D.address, 9000, 500))
  t.true(await spoofed() > 0, 'unrouted, it was counted as forged')
})
