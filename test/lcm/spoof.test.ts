// Forged source addresses, for real: node N runs three VMs (web, db, other) behind
// veths and reaches node M, where api runs, over WireGuard on a shared underlay that a
// non-member host (evil) is on too. N's ruleset declares web -> db and api -> db (tcp
// 8080, udp 9000). A packet claiming to be from api but sent by evil over the
// underlay, or claiming to be from web (or api) but sent by other from its own veth,
// is dropped at N and counted as forged; what db receives is counted inside db's
// namespace by source address. The genuine flows, both directions, still pass. The
// same forgeries reach db when the anti-spoof rule is left out: the test sees the bug.
import test from 'ava'
import { connectToBridge, createBridge, ip, nsRun } from '../../node/netns/netns.ts'
import { overlayPrefix, vmAddress } from '../../node/lcm/overlay.ts'
import { computeRuleset, tableName, type Link, type VmPlace } from '../../node/lcm/rules.ts'
import { applyRuleset, readCounters, removeRuleset } from '../../node/lcm/nft.ts'
import { makeNamespaces, skipReason, subnet, veth } from './ns.ts'
import { echoServer, exchange } from './tcp.ts'
import { tunnelNodes, watchArrivals } from './arrivals.ts'

const reason = await skipReason({ nft: true })
if (reason != null) console.log(`lcm spoof test skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

maybe('a forged VM source is dropped and counted, from the underlay and from a local VM; the genuine flows pass', async t => {
  const [sw, n, m, evil, vweb, vdb, vother, vapi] = await makeNamespaces(t, ['sw', 'n', 'm', 'evil', 'web', 'db', 'other', 'api'])
  const net = await subnet()
  await createBridge(sw!, 'br0')
  for (const [i, h] of [n!, m!, evil!].entries()) {
    await connectToBridge({ hostNs: h, hostIf: 'eth0', switchNs: sw!, portIf: `p${i}`, bridge: 'br0' })
    await ip(['-n', h, 'addr', 'add', `${net}.${i + 1}/24`, 'dev', 'eth0'])
  }
  const p = overlayPrefix(`lcm-spoof-${process.pid}`)
  const [WEB, DB, OTHER, API] = [1, 2, 3, 4].map(i => vmAddress(p, i).v4) as [string, string, string, string]
  // each VM behind a veth of its node, named as DVMM names them ("vgp" + ...), routed
  // and proxy-ARPed as local-vm-net.ts does
  for (const [host, vm, dev, addr] of [[n!, vweb!, 'vgpweb', WEB], [n!, vdb!, 'vgpdb', DB], [n!, vother!, 'vgpother', OTHER], [m!, vapi!, 'vgpapi', API]] as const) {
    await veth({ ns: vm, dev: 'eth0', cidr: `${addr}/32` }, { ns: host, dev })
    await ip(['-n', vm, 'route', 'add', 'default', 'dev', 'eth0'])
    await ip(['-n', host, 'route', 'add', `${addr}/32`, 'dev', dev])
    await nsRun(host, 'sh', ['-c', `echo 1 > /proc/sys/net/ipv4/conf/${dev}/proxy_arp; echo 0 > /proc/sys/net/ipv4/neigh/${dev}/proxy_delay; echo 1 > /proc/sys/net/ipv4/ip_forward`])
  }
  await tunnelNodes(t, p, net, [n!, m!], [WEB, DB, OTHER], [API])

  // the forgers: evil routes db through N's underlay address from API; other sends from WEB or API
  await ip(['-n', evil!, 'addr', 'add', `${API}/32`, 'dev', 'lo'])
  await ip(['-n', evil!, 'route', 'add', `${DB}/32`, 'via', `${net}.1`, 'src', API])
  for (const a of [WEB, API]) await ip(['-n', vother!, 'addr', 'add', `${a}/32`, 'dev', 'lo'])
  const forgeFrom = async (src: string): Promise<void> => {
    await ip(['-n', vother!, 'route', 'replace', `${DB}/32`, 'dev', 'eth0', 'src', src])
  }

  await echoServer(t, vdb!, [8080, 9090, 9000])
  const arrivals = await watchArrivals(vdb!)
  const table = tableName('n')
  t.teardown(async () => { await removeRuleset(n!, table) })
  const vms: VmPlace[] = [{ vm: 'web', address: WEB, node: 'n' }, { vm: 'db', address: DB, node: 'n' }, { vm: 'other', address: OTHER, node: 'n' }, { vm: 'api', address: API, node: 'm' }]
  const links: Link[] = ['web', 'api'].flatMap(from => [['tcp', 8080], ['udp', 9000]].map(([protocol, port]) =>
    ({ id: `${from}-db-${protocol}`, from: { vm: from, terminal: 'out' }, to: { vm: 'db', terminal: 'in' }, protocol: protocol as 'tcp' | 'udp', port: port as number })))
  const rs = computeRuleset({ node: 'n', table, vmPrefix: p.vmV4, vms, links })
  t.deepEqual(rs.skipped, [])

  /** Each forgery, once over tcp (a SYN) and once over udp: how many of them reached db. */
  const forge = async (): Promise<Record<string, number>> => {
    const got: Record<string, number> = {}
    for (const proto of ['tcp', 'udp'] as const) {
      for (const [who, from, src] of [['evil as api', evil!, API], ['other as web', vother!, WEB], ['other as api', vother!, API]] as const) {
        if (from === vother) await forgeFrom(src)
        const before = await arrivals()
        t.false(await exchange(from, proto, DB, proto === 'tcp' ? 8080 : 9000, 500), 'no answer comes back to a forger')
        got[`${who} ${proto}`] = (await arrivals())(src, proto) - before(src, proto)
      }
    }
    return got
  }

  // the bug, shown: without the anti-spoof rule every forgery reaches db
  const unguarded = { ...rs, script: rs.script.replace(/^.*fib saddr.*\n/m, '') }
  t.not(unguarded.script, rs.script)
  await applyRuleset(n!, unguarded)
  const leaked = await forge()
  t.true(Object.values(leaked).every(x => x > 0), `without the check, forged packets reach db: ${JSON.stringify(leaked)}`)

  await applyRuleset(n!, rs)
  const stopped = await forge()
  t.deepEqual(Object.values(stopped), Object.values(stopped).map(() => 0), `with it, none does: ${JSON.stringify(stopped)}`)
  const drops = (await readCounters(n!, table)).drops
  for (const [src, dst] of [[API, DB], [WEB, DB]]) {
    const d = drops.find(x => x.src === src && x.dst === dst)
    // one TCP SYN and one UDP datagram per forger and forged address
    t.true((d?.spoofed ?? 0) >= (src === API ? 4 : 2), `forged ${src} -> ${dst} counted as such: ${JSON.stringify(drops)}`)
  }

  // the genuine flows pass, replies included (a local VM, and a remote one through WireGuard)
  for (const proto of ['tcp', 'udp'] as const) {
    t.true(await exchange(vweb!, proto, DB, proto === 'tcp' ? 8080 : 9000), `web -> db ${proto}`)
    t.true(await exchange(vapi!, proto, DB, proto === 'tcp' ? 8080 : 9000, 5000), `api -> db ${proto} through the tunnel`)
  }
  // an undeclared flow from a genuine source is still a plain drop
  await ip(['-n', vother!, 'route', 'del', `${DB}/32`])
  t.false(await exchange(vother!, 'udp', DB, 9000, 500))
  t.false(await exchange(vweb!, 'tcp', DB, 9090, 500))
  const after = (await readCounters(n!, table)).drops
  t.is(after.find(x => x.src === OTHER && x.dst === DB)?.spoofed, undefined, 'other\'s own address is not forged')
  t.true((after.find(x => x.src === OTHER && x.dst === DB)?.packets ?? 0) >= 1)
  t.true((after.find(x => x.src === WEB && x.dst === DB)?.packets ?? 0) > (drops.find(x => x.src === WEB && x.dst === DB)?.packets ?? 0), 'web\'s undeclared port counted too')
  t.log('forged, per forgery and protocol, reaching db without the check:', JSON.stringify(leaked))
  t.log('drops at N:', JSON.stringify(after))

  // full drop sets still drop (an update that cannot add ends its rule): sets of one element
  await removeRuleset(n!, table)
  const tiny = tableName('n-tiny')
  t.teardown(async () => { await removeRuleset(n!, tiny) })
  await applyRuleset(n!, { ...rs, table: tiny, script: rs.script.replaceAll(`inet ${table}`, `inet ${tiny}`).replaceAll('size 65536', 'size 1') })
  t.false(await exchange(vweb!, 'tcp', DB, 9090, 500), 'undeclared, fills the drop set')
  t.false(await exchange(vother!, 'udp', DB, 9000, 500), 'undeclared, the drop set full')
  const before = await arrivals()
  t.false(await exchange(evil!, 'udp', DB, 9000, 500), 'forged, fills the forged set')
  await forgeFrom(WEB)
  t.false(await exchange(vother!, 'udp', DB, 9000, 500), 'forged, the forged set full')
  const now = await arrivals()
  t.is(now(API, 'udp') - before(API, 'udp') + now(WEB, 'udp') - before(WEB, 'udp'), 0, 'no forgery reached db')
  t.is((await readCounters(n!, tiny)).drops.length, 2, 'one pair counted per set')
})
