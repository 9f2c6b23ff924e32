// Link rules for real: two "VM" namespaces routed through a "node" namespace. The
// ruleset from rules.ts, applied by nft.ts, lets the declared TCP port through and
// drops an undeclared port (and undeclared UDP), counting each drop with its source
// and destination; recomputing keeps the counts; removing a link closes it and resets its TCP connections.
import test, { type ExecutionContext } from 'ava'
import { ip, nsRun, sleep, which } from '../../node/netns/netns.ts'
import { computeRuleset, tableName, type Link, type VmPlace } from '../../node/lcm/rules.ts'
import { applyRuleset, readCounters, removeRuleset } from '../../node/lcm/nft.ts'
import { makeNamespaces, routeThrough, skipReason } from './ns.ts'
import { echoServer, exchange, tcpStream } from './tcp.ts'

const reason = await skipReason({ nft: true })
if (reason != null) console.log(`lcm rules tests skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

/** an nft command in a namespace */
const nftIn = async (ns: string, args: string[]): Promise<string> => await nsRun(ns, which('nft')!, args)

const A1 = '100.80.64.1'
const A2 = '100.80.64.2'

/** two "VM" namespaces (A1, A2) routed through a "node" namespace, an echo server in the second */
async function twoVms (t: ExecutionContext): Promise<{ node: string, v1: string, v2: string }> {
  const [node, v1, v2] = await makeNamespaces(t, ['node', 'vm1', 'vm2']) as [string, string, string]
  await routeThrough(node, [{ ns: v1, dev: 'v1', address: A1 }, { ns: v2, dev: 'v2', address: A2 }])
  await echoServer(t, v2, [8080, 9090])
  return { node, v1, v2 }
}

maybe('only the declared flow passes between two VMs; the rest is dropped and counted by source and destination', async t => {
  const { node, v1, v2 } = await twoVms(t)

  // without rules both ports pass: the topology works
  t.true(await exchange(v1, 'tcp', A2, 8080))
  t.true(await exchange(v1, 'tcp', A2, 9090))

  const table = tableName('node-1')
  t.teardown(async () => { await removeRuleset(node, table) })
  const vms: VmPlace[] = [{ vm: 'web', address: A1, node: 'node-1' }, { vm: 'db', address: A2, node: 'node-1' }]
  const links: Link[] = [{ id: 'web.out-db.in', from: { vm: 'web', terminal: 'out' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 }]
  const rs = computeRuleset({ node: 'node-1', table, vmPrefix: '100.80.64.0/18', vms, links })
  t.deepEqual(rs.skipped, [])
  await applyRuleset(node, rs)

  t.true(await exchange(v1, 'tcp', A2, 8080), 'the declared port passes')
  t.false(await exchange(v1, 'tcp', A2, 9090), 'an undeclared port is dropped')
  t.false(await exchange(v1, 'udp', A2, 8080), 'the declared port over another protocol is dropped')
  t.false(await exchange(v2, 'tcp', A1, 8080, 800), 'the reverse direction is not declared')

  const c = await readCounters(node, table)
  const pass = c.counters.get(rs.flows[0]!.counter)
  t.truthy(pass)
  t.true(pass!.packets >= 4, `declared flow counted both ways (${pass?.packets} packets)`)
  const d12 = c.drops.find(d => d.src === A1 && d.dst === A2)
  const d21 = c.drops.find(d => d.src === A2 && d.dst === A1)
  t.truthy(d12, `drops from ${A1} to ${A2} are counted: ${JSON.stringify(c.drops)}`)
  t.true(d12!.packets >= 2, `two undeclared attempts at least (${d12!.packets})`)
  t.truthy(d21, `drops from ${A2} to ${A1} are counted`)

  // re-applying (a document change) keeps the counts
  await applyRuleset(node, computeRuleset({ node: 'node-1', table, vmPrefix: '100.80.64.0/18', vms, links }))
  const again = await readCounters(node, table)
  t.true(again.drops.find(d => d.src === A1 && d.dst === A2)!.packets >= d12!.packets)
  t.true(again.counters.get(rs.flows[0]!.counter)!.packets >= pass!.packets)

  // the link removed: the port closes, its counter goes
  await applyRuleset(node, computeRuleset({ node: 'node-1', table, vmPrefix: '100.80.64.0/18', vms, links: [] }))
  t.false(await exchange(v1, 'tcp', A2, 8080), 'a removed link no longer passes')
  t.false((await readCounters(node, table)).counters.has(rs.flows[0]!.counter))

  // db removed from the document: its address's drop records go with it (the next VM
  // given the address would start with them, bb27); a record of another address stays
  await exchange(v1, 'tcp', A2, 9090, 300)
  const outside = '192.0.2.7'
  await nftIn(node, ['add', 'element', 'inet', table, 'drops', `{ ${A1} . ${outside} }`])
  t.true((await readCounters(node, table)).drops.some(d => d.dst === A2), 'db\'s drops are recorded')
  await applyRuleset(node, computeRuleset({ node: 'node-1', table, vmPrefix: '100.80.64.0/18', vms: vms.slice(0, 1), links: [] }), new Set([A2]))
  const after = await readCounters(node, table)
  t.false(after.drops.some(d => d.src === A2 || d.dst === A2), `no record of the former VM's address: ${JSON.stringify(after.drops)}`)
  t.true(after.drops.some(d => d.src === A1 && d.dst === outside), 'the outside address\'s record stays')

  await removeRuleset(node, table)
  t.true(await exchange(v1, 'tcp', A2, 9090), 'removing the table restores plain forwarding')
})

maybe('removing a link resets the TCP connections it carried: an end learns at its next packet, not at its timeout', async t => {
  const { node, v1 } = await twoVms(t)
  const table = tableName('node-2')
  t.teardown(async () => { await removeRuleset(node, table) })
  const vms: VmPlace[] = [{ vm: 'web', address: A1, node: 'node-2' }, { vm: 'db', address: A2, node: 'node-2' }]
  const links: Link[] = [{ id: 'web.out-db.in', from: { vm: 'web', terminal: 'out' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 }]
  await applyRuleset(node, computeRuleset({ node: 'node-2', table, vmPrefix: '100.80.64.0/18', vms, links }))
  // a line every 100 ms for 4 s; the link goes after about 1.5 s
  const stream = tcpStream(v1, A2, 8080, 4000)
  await sleep(1500)
  await applyRuleset(node, computeRuleset({ node: 'node-2', table, vmPrefix: '100.80.64.0/18', vms, links: [] }))
  // (the stream reports when its socket closes: without the reset, not before TCP gives up)
  const r = await stream
  t.log(`lines written ${r.sent}, echoed ${r.echoes}, then ${r.error}`)
  t.true(r.echoes >= 5, 'the connection carried data while the link was declared')
  t.is(r.error, 'ECONNRESET', 'a packet after the removal was answered with a reset')
  t.true(r.sent - r.echoes <= 3, 'the first lines written after the removal met the reset')
  // the reset packet is still counted among the drops of the pair
  t.true((await readCounters(node, table)).drops.some(d => d.src === A1 && d.dst === A2))
})

maybe('a reply counts for its own link, also when a link the other way (any protocol) would take it', async t => {
  const { node, v1 } = await twoVms(t)
  const table = tableName('node-3')
  t.teardown(async () => { await removeRuleset(node, table) })
  const vms: VmPlace[] = [{ vm: 'web', address: A1, node: 'node-3' }, { vm: 'db', address: A2, node: 'node-3' }]
  const links: Link[] = [
    { id: 'l1', from: { vm: 'web', terminal: 'out' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 },
    { id: 'l2', from: { vm: 'db', terminal: 'out' }, to: { vm: 'web', terminal: 'in' }, protocol: 'any', port: null }
  ]
  const rs = computeRuleset({ node: 'node-3', table, vmPrefix: '100.80.64.0/18', vms, links })
  await applyRuleset(node, rs)
  for (let i = 0; i < 3; i++) t.true(await exchange(v1, 'tcp', A2, 8080))
  const c = (await readCounters(node, table)).counters
  const [l1, l2] = ['l1', 'l2'].map(id => c.get(rs.flows.find(f => f.link === id)!.counter)?.packets)
  t.log(`l1 ${l1} packets, l2 ${l2}`)
  t.true((l1 ?? 0) >= 12, 'both directions of three exchanges on l1')
  t.is(l2, 0, 'nothing of l1 counted on the link the other way')
})

maybe('the node\'s own root reaches its VMs; a socket of another local user does not, and is counted (bb48)', async t => {
  const [node, v1] = await makeNamespaces(t, ['node', 'vm1']) as [string, string]
  // a VM interface as the drivers name them (vgp*: a process VM's veth)
  await routeThrough(node, [{ ns: v1, dev: 'vgpt1', address: A1 }])
  // the node's end of the link has an address, as the drivers give it (the source of the node's own connections)
  await ip(['-n', node, 'addr', 'add', '10.99.0.1/32', 'dev', 'vgpt1'])
  await echoServer(t, v1, [8080])
  const table = tableName('node-1')
  t.teardown(async () => { await removeRuleset(node, table) })
  await applyRuleset(node, computeRuleset({ node: 'node-1', table, vmPrefix: '100.80.64.0/18', vms: [{ vm: 'web', address: A1, node: 'node-1' }], links: [] }))
  // perl (perl-base is on every Debian), run as root, then as nobody
  const connect = async (asUser: string[]): Promise<string> => (await nsRun(node, asUser[0] ?? '/usr/bin/perl', [...asUser.slice(1), ...(asUser.length > 0 ? ['/usr/bin/perl'] : []), '-MIO::Socket::INET', '-e', `print IO::Socket::INET->new(PeerAddr => "${A1}", PeerPort => 8080, Timeout => 2) ? "ok" : "no"`], { allowFail: true })).trim()
  t.is(await connect([]), 'ok', 'root on the node reaches the VM')
  t.is(await connect(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']), 'no', 'another user of the node does not')
  const c = await readCounters(node, table)
  t.truthy(c.drops.find(d => d.dst === A1), `the attempt is counted: ${JSON.stringify(c.drops)}`)
})
