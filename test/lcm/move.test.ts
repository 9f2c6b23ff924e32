// A VM restarted on another node keeps its overlay address and its peers reach it
// again without any action of theirs: three hosts on a bridge, each running the LCM
// service; "db" runs behind host B, then (B's copy gone) behind host C with the same
// address, and its lease moves to C in the document every host holds. Host A, where
// "web" runs, only sees the document change; web reaches db through the new tunnel.
// Before the move: a host that is not a member (plain routing, or a WireGuard key of
// its own) and a member's node without a connection cannot reach db.
import test from 'ava'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectToBridge, createBridge, deleteNamespace, ip } from '../../node/netns/netns.ts'
import { overlayPrefix, vmAddress } from '../../node/lcm/overlay.ts'
import { generateKeypair, WgInterface } from '../../node/lcm/wireguard.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { Driver } from './driver.ts'
import { makeNamespaces, skipReason, subnet, veth } from './ns.ts'
import { echoServer, exchange } from './tcp.ts'

const reason = await skipReason({ nft: true })
if (reason != null) console.log(`lcm move test skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

maybe('a VM restarted on another node is reachable at the same address by its peers, without any action of theirs', async t => {
  const [sw, ha, hb, hc, vweb, vdb1, vdb2, evil] = await makeNamespaces(t, ['sw', 'ha', 'hb', 'hc', 'web', 'db1', 'db2', 'evil'])
  const net = await subnet()
  await createBridge(sw!, 'br0')
  for (const [i, h] of [ha!, hb!, hc!, evil!].entries()) {
    await connectToBridge({ hostNs: h, hostIf: 'eth0', switchNs: sw!, portIf: `p${i}`, bridge: 'br0' })
    await ip(['-n', h, 'addr', 'add', `${net}.${i + 1}/24`, 'dev', 'eth0'])
  }
  const EVIL = `${net}.4`
  const clusterId = `lcm-move-${process.pid}`
  const p = overlayPrefix(clusterId)
  const WEB = vmAddress(p, 1).v4
  const DB = vmAddress(p, 2).v4
  for (const [host, vm, addr] of [[ha!, vweb!, WEB], [hb!, vdb1!, DB], [hc!, vdb2!, DB]] as const) {
    await veth({ ns: vm, dev: 'eth0', cidr: `${addr}/32` }, { ns: host, dev: 'vm0' })
    await ip(['-n', vm, 'route', 'add', 'default', 'dev', 'eth0'])
  }
  await echoServer(t, vdb1!, [5432])
  await echoServer(t, vdb2!, [5432])

  const dir = mkdtempSync(join(tmpdir(), 'lcm-move-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const ids = ['A', 'B', 'C'].map(x => `Node${x}${process.pid}`)
  const ifs = [{ web: 'vm0' }, { db: 'vm0' }, { db: 'vm0' }]
  const drivers = [ha!, hb!, hc!].map((h, i) => new Driver(t, h, { dataDir: join(dir, String(i)), peerId: ids[i], clusterId, port: 51820, vmInterfaces: ifs[i], addressPollMs: 0 }))
  const adverts: unknown[] = []
  for (const d of drivers) {
    await d.next('ready')
    adverts.push((await d.next('advert')).wg)
  }
  const spec = { driver: 'process', cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} }
  const lease = (vm: string, holder: string, epoch: number): object => ({ op: 'put', kind: 'leases', draft: { vm, holder, epoch, cpu: 0.1, memoryBytes: 1 << 20 } })
  const setup = [
    ...ids.map((id, i) => ({ op: 'put', kind: 'roll', draft: { node: id, name: `h${i}`, joined: i, overlayIndex: i } })),
    { op: 'put', kind: 'vms', draft: { id: 'web', name: 'web', app: null, desired: 'running', spec, overlayIndex: 1 } },
    { op: 'put', kind: 'vms', draft: { id: 'db', name: 'db', app: null, desired: 'running', spec, overlayIndex: 2 } },
    lease('web', ids[0]!, 1),
    lease('db', ids[1]!, 1),
    { op: 'put', kind: 'connections', draft: { id: 'web-db', app: null, from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 5432 } }
  ]
  const members = ids.map((id, i) => ({ nodeId: id, name: `h${i}`, state: 'alive', wireguard: adverts[i] }))
  for (const d of drivers) {
    await d.send({ type: 'doc', ops: setup })
    await d.send({ type: 'members', members })
  }
  t.true(await exchange(vweb!, 'tcp', DB, 5432, 5000), 'web reaches db on B')

  // a host that is not a member: routing through B's underlay address is dropped and counted
  await ip(['-n', evil!, 'route', 'add', p.vmV4, 'via', `${net}.2`])
  t.false(await exchange(evil!, 'tcp', DB, 5432), 'a non-member cannot reach a VM by routing through its node')
  const dropsB = (await drivers[1]!.send({ type: 'net' }, 'net')).drops as Array<{ src: string, dstVm: string | null, packets: number }>
  t.truthy(dropsB.find(d => d.src === EVIL && d.dstVm === 'db' && d.packets > 0), `counted on B: ${JSON.stringify(dropsB)}`)
  // nor with a WireGuard key of its own: B has no peer for it
  await ip(['-n', evil!, 'route', 'del', p.vmV4])
  const evilKey = await generateKeypair()
  const w = await WgInterface.create({ name: interfaceName(`${evil}-wg`), netns: evil!, privateKey: evilKey.privateKey, listenPort: 51820, addresses: [`100.${p.octet}.0.200/32`] })
  t.teardown(async () => { await w.destroy() })
  await w.setPeer({ publicKey: (adverts[1] as { publicKey: string }).publicKey, endpoint: `${net}.2:51820`, allowedIps: [p.v4] })
  await ip(['-n', evil!, 'route', 'add', p.vmV4, 'dev', w.name])
  t.false(await exchange(evil!, 'tcp', DB, 5432), 'a stranger\'s WireGuard key gets nowhere')
  t.is((await w.show()).peers[0]!.latestHandshake, 0, 'no handshake with a key B does not know')
  // a member's own node has no connection to db either
  t.false(await exchange(ha!, 'tcp', DB, 5432), 'a member cannot reach a VM it has no connection to')

  // B's copy of db dies with its namespace; db restarts on C: the lease moves (epoch 2)
  await deleteNamespace(vdb1!)
  t.false(await exchange(vweb!, 'tcp', DB, 5432, 1000), 'db is gone for a moment')
  const moved = Date.now()
  for (const d of drivers) await d.send({ type: 'doc', ops: [lease('db', ids[2]!, 2)] })
  let ok = false
  for (let i = 0; i < 10 && !ok; i++) ok = await exchange(vweb!, 'tcp', DB, 5432, 1000)
  t.true(ok, 'web reaches db on C at the same address')
  t.log(`lease move to traffic again: ${Date.now() - moved} ms (three documents updated in turn, one client process started)`)
  const peers = (await drivers[0]!.send({ type: 'net' }, 'net')).peers as Array<{ node: string, allowedIps: string[] }>
  t.true(peers.find(x => x.node === ids[2])!.allowedIps.includes(`${DB}/32`), 'A routes db to C now')
  t.false(peers.find(x => x.node === ids[1])!.allowedIps.includes(`${DB}/32`), 'and no longer to B')
  for (const d of drivers) await d.send({ type: 'stop' }, 'stopped')
})
