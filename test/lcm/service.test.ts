// The LCM service for real, two agents' worth: each service runs in its own host
// namespace (test/lcm/service-driver.ts), with a "VM" namespace behind it. The
// services make their WireGuard interfaces, advertise key and endpoint, add each
// other as peers when members are alive, route the remote VM through the tunnel and
// enforce the declared link: the declared TCP port passes between the two VMs, an
// undeclared one is dropped and counted with source and destination; a host
// address change is noticed and the tunnel keeps carrying pings; a dead member's
// peer goes; stopping leaves no interface or socket, and the rules stay (fail closed).
import test from 'ava'
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { generateKeyPairSync } from 'node:crypto'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ip, isAlive, namespacePids, nsRun, replaceAddress, sleep, which } from '../../node/netns/netns.ts'
import { Driver } from './driver.ts'
import { nodeAddress, overlayPrefix, vmAddress } from '../../node/lcm/overlay.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { tableName } from '../../node/lcm/rules.ts'
import { WIREGUARD_GO_ENV } from '../../node/lcm/wireguard.ts'
import type { LcmStatus } from '../../node/lcm/types.ts'
import { makeNamespaces, pingStream, skipReason, subnet, veth } from './ns.ts'

/** the service's wireguard-go in `ns` (by name: the service and its address watch run there too) */
const wireguardGoPids = async (ns: string): Promise<number[]> =>
  (await namespacePids(ns)).filter(pid => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'wireguard-go'
    } catch {
      return false // a short-lived wg, nft or ip of the service's, gone already
    }
  })
import { echoServer, exchange } from './tcp.ts'

const reason = await skipReason({ nft: true })
if (reason != null) console.log(`lcm service test skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

maybe('two services: tunnel, declared link passes, undeclared dropped and counted, roaming, dead member, clean stop', async t => {
  const [ha, hb, v1, v2] = await makeNamespaces(t, ['ha', 'hb', 'v1', 'v2'])
  const net = await subnet()
  await veth({ ns: ha!, dev: 'eth0', cidr: `${net}.1/24` }, { ns: hb!, dev: 'eth0', cidr: `${net}.2/24` })
  const clusterId = `lcm-test-${process.pid}`
  const p = overlayPrefix(clusterId)
  const A1 = vmAddress(p, 10).v4
  const A2 = vmAddress(p, 20).v4
  for (const [host, vm, dev, addr] of [[ha!, v1!, 'vm1', A1], [hb!, v2!, 'vm2', A2]] as const) {
    await veth({ ns: vm, dev: 'eth0', cidr: `${addr}/32` }, { ns: host, dev })
    await ip(['-n', vm, 'route', 'add', 'default', 'dev', 'eth0'])
    // no proxy_arp, no forwarding, no route to the VM here: the service sets them up
  }
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const idA = `NodeA${process.pid}`
  const idB = `NodeB${process.pid}`
  const a = new Driver(t, ha!, { dataDir: join(dir, 'a'), peerId: idA, clusterId, port: 51820, vmInterfaces: { web: 'vm1' }, addressPollMs: 200 })
  const b = new Driver(t, hb!, { dataDir: join(dir, 'b'), peerId: idB, clusterId, port: 51820, vmInterfaces: { db: 'vm2' }, addressPollMs: 200 })
  const readyA = await a.next('ready')
  await b.next('ready')
  t.true((readyA.status as { ok: boolean }).ok, JSON.stringify(readyA.status))
  const advA = (await a.next('advert')).wg as { publicKey: string, endpoint: string }
  const advB = (await b.next('advert')).wg as { publicKey: string, endpoint: string }
  t.is(advA.endpoint, `${net}.1:51820`)
  t.is(advB.endpoint, `${net}.2:51820`)

  const spec = { driver: 'process', cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} }
  const ops = [
    { op: 'put', kind: 'roll', draft: { node: idA, name: 'a', joined: 1, overlayIndex: 1 } },
    { op: 'put', kind: 'roll', draft: { node: idB, name: 'b', joined: 2, overlayIndex: 2 } },
    { op: 'put', kind: 'vms', draft: { id: 'web', name: 'web', app: null, desired: 'running', spec, overlayIndex: 10 } },
    { op: 'put', kind: 'vms', draft: { id: 'db', name: 'db', app: null, desired: 'running', spec, overlayIndex: 20 } },
    { op: 'put', kind: 'leases', draft: { vm: 'web', holder: idA, epoch: 1, cpu: 0.1, memoryBytes: 1 << 20 } },
    { op: 'put', kind: 'leases', draft: { vm: 'db', holder: idB, epoch: 1, cpu: 0.1, memoryBytes: 1 << 20 } },
    { op: 'put', kind: 'connections', draft: { id: 'web-db', app: null, from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 } }
  ]
  const alive = [{ nodeId: idA, name: 'a', state: 'alive', wireguard: advA }, { nodeId: idB, name: 'b', state: 'alive', wireguard: advB }]
  for (const d of [a, b]) {
    await d.send({ type: 'doc', ops })
    await d.send({ type: 'members', members: alive })
  }
  const netA = await a.send({ type: 'net' }, 'net')
  const peersA = netA.peers as Array<{ publicKey: string, node: string, allowedIps: string[] }>
  t.is(peersA.length, 1)
  t.is(peersA[0]!.node, idB)
  t.true(peersA[0]!.allowedIps.includes(`${A2}/32`), `B's VM is routed to B: ${peersA[0]!.allowedIps.join(',')}`)

  t.deepEqual((await a.send({ type: 'names', vm: 'web' }, 'names')).names, { db: A2 }, 'web resolves its output terminal to db\'s address')

  await echoServer(t, v2!, [8080, 9090])
  t.true(await exchange(v1!, 'tcp', A2, 8080, 5000), 'the declared link passes through the tunnel')
  t.false(await exchange(v1!, 'tcp', A2, 9090), 'an undeclared port is dropped')
  const drops = (await a.send({ type: 'net' }, 'net')).drops as Array<{ srcVm: string, dstVm: string, packets: number }>
  const d = drops.find(x => x.srcVm === 'web' && x.dstVm === 'db')
  t.truthy(d, `the drop is counted with source and destination: ${JSON.stringify(drops)}`)
  const metrics = String((await a.send({ type: 'metrics' }, 'metrics')).text)
  t.regex(metrics, /vgrid_lcm_drops_total\{src="web",dst="db"\} [1-9]/)
  t.regex(metrics, new RegExp(`vgrid_lcm_tunnel_bytes_total\\{peer="${idB}",direction="tx"\\} [1-9]`))
  t.regex(metrics, /vgrid_lcm_link_packets_total\{link="web-db"\} [1-9]/)

  // host A's address changes: the service notices by itself, re-sets its peers' endpoints, re-advertises
  const stream = pingStream(t, ha!, nodeAddress(p, 2).v4, 0.1)
  await sleep(1000)
  await replaceAddress(ha!, 'eth0', `${net}.1/24`, `${net}.11/24`)
  const moved = (await a.next('advert', 10_000)).wg as { endpoint: string }
  t.is(moved.endpoint, `${net}.11:51820`)
  await sleep(3000)
  const r = await stream.stop()
  t.log(`across the address change: ${r.replies.length} replies of ${r.sent}, longest gap ${r.maxGapMs} ms`)
  t.true(r.replies.length >= 25)
  t.true(r.maxGapMs <= 2000, `longest gap ${r.maxGapMs} ms`)

  // wireguard-go dies under the service: the next plan makes the interface again
  const wgPids = await wireguardGoPids(ha!)
  t.is(wgPids.length, 1, `one wireguard-go in host A: ${wgPids.join(',')}`)
  process.kill(wgPids[0]!, 'SIGKILL')
  let back = false
  for (let i = 0; i < 10 && !back; i++) back = await exchange(v1!, 'tcp', A2, 8080, 1500)
  t.true(back, 'the link carries traffic again after wireguard-go was killed')

  // A's interface set down and up by hand: the kernel drops the routes through it, and
  // up does not bring them back (a tester's links carried nothing for good): put back
  await ip(['-n', ha!, 'link', 'set', 'dev', interfaceName(idA), 'down'])
  await ip(['-n', ha!, 'link', 'set', 'dev', interfaceName(idA), 'up'])
  let restored = false
  for (let i = 0; i < 12 && !restored; i++) restored = await exchange(v1!, 'tcp', A2, 8080, 1500)
  t.true(restored, 'the link carries traffic again after the interface was set down and up')

  // a malformed advert is rejected and counted once, however often plans are recomputed
  const bad = { nodeId: 'NodeBad', name: 'bad', state: 'alive', wireguard: { publicKey: 'not-a-key', endpoint: `${net}.9:51820` } }
  await a.send({ type: 'members', members: [bad] })
  await a.send({ type: 'members', members: [bad] })
  t.regex(String((await a.send({ type: 'metrics' }, 'metrics')).text), /vgrid_lcm_peers_rejected_total\{reason="bad-key"\} 1\n/)
  t.is(((await a.send({ type: 'net' }, 'net')).peers as unknown[]).length, 1, 'no peer for it')

  // B restarted at once (SIGKILL, started again): its new run is alive again before its
  // tunnel is up (no WireGuard in its first advert), then advertises it with no change of
  // state: A sets the peer again (a tester's links stayed down, the peer removed for good)
  await a.send({ type: 'members', members: [{ ...alive[1], wireguard: null }] })
  t.deepEqual((await a.send({ type: 'net' }, 'net')).peers, [], 'no tunnel advertised: no peer')
  await a.send({ type: 'members', members: [alive[1]] })
  t.deepEqual(((await a.send({ type: 'net' }, 'net')).peers as Array<{ node: string }>).map(x => x.node), [idB], 'the tunnel advertised again: the peer is back')
  let again = false
  for (let i = 0; i < 10 && !again; i++) again = await exchange(v1!, 'tcp', A2, 8080, 1500)
  t.true(again, 'the link carries traffic again')

  // B dead: A drops its peer, the link stops
  await a.send({ type: 'members', members: [{ ...alive[1], state: 'dead' }] })
  t.deepEqual((await a.send({ type: 'net' }, 'net')).peers, [])
  t.false(await exchange(v1!, 'tcp', A2, 8080), 'no tunnel to a dead member')

  await a.send({ type: 'stop' }, 'stopped')
  t.false(existsSync(`/run/wireguard/${interfaceName(idA)}.sock`), 'no control socket left')
  t.false((await ip(['-n', ha!, '-o', 'link'])).includes(interfaceName(idA)), 'no interface left')
  t.true((await nsRun(ha!, 'nft', ['list', 'tables'])).includes(tableName(idA)), 'the link rules stay while the agent is down (fail closed)')
  await b.send({ type: 'stop' }, 'stopped')
})

maybe('when WireGuard cannot start the service says why, advertises no tunnel, and still enforces links', async t => {
  const [h] = await makeNamespaces(t, ['hk'])
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const id = `NodeK${process.pid}`
  // forcing the kernel backend where there is no module makes the interface fail for real
  await ip(['-n', h!, 'link', 'add', 'vgkprobe', 'type', 'wireguard'], { allowFail: true })
  if ((await ip(['-n', h!, '-o', 'link'])).includes('vgkprobe')) { t.pass('kernel module present: nothing to fail'); return }
  const d = new Driver(t, h!, { dataDir: join(dir, 'k'), peerId: id, clusterId: 'c-k', port: 51820, vmInterfaces: {}, addressPollMs: 0, backend: 'kernel' })
  const ready = await d.next('ready')
  // checked before anything else: start reports ready only once the rules are in
  t.true((await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(id)), 'the link rules are applied all the same')
  const status = ready.status as { ok: boolean, error: string }
  t.false(status.ok)
  t.regex(status.error, /^WireGuard cannot start: .*type wireguard/)
  t.is((await d.next('advert')).wg, null)
  const net = await d.send({ type: 'net' }, 'net')
  t.deepEqual(net.peers, [])
  await d.send({ type: 'stop' }, 'stopped')
})

maybe('a plan that fails to apply is tried again by itself, later each time, until it applies', async t => {
  const [h] = await makeNamespaces(t, ['hr'])
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const id = `NodeR${process.pid}`
  // the first two plans fail (at 0 s and after 1 s); the third (after 2 s more) applies
  const d = new Driver(t, h!, { dataDir: join(dir, 'r'), peerId: id, clusterId: 'c-r', port: 51820, vmInterfaces: {}, addressPollMs: 0, failReads: 2 })
  const ready = await d.next('ready')
  t.false((await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(id)), 'the first plan failed: no rules yet')
  const st = ready.status as LcmStatus
  t.regex(st.applyError ?? '', /the document cannot be read \(test\)/, 'the status says the connections are not applied, and why')
  t.truthy(st.applyErrorSince)
  t.true(st.ok, 'WireGuard itself is up')
  // under the tunnel's route, from the start: the VM range is unreachable, never sent in clear
  t.regex(await nsRun(h!, 'ip', ['route', 'show', 'type', 'unreachable']), /metric 4294967295/)
  let applied = false
  for (let i = 0; i < 40 && !applied; i++) {
    await new Promise(resolve => setTimeout(resolve, 250))
    applied = (await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(id))
  }
  t.true(applied, 'the rules are in after the retries, with nothing else asking')
  // the table is made early in an apply, the status cleared at its end (under load, later)
  let after = (await d.send({ type: 'net' }, 'net')).status as LcmStatus
  for (let i = 0; i < 40 && after.applyError != null; i++) {
    await new Promise(resolve => setTimeout(resolve, 250))
    after = (await d.send({ type: 'net' }, 'net')).status as LcmStatus
  }
  t.is(after.applyError, null, 'and the status clears')
  await d.send({ type: 'stop' }, 'stopped')
})

maybe('when wireguard-go dies and cannot start again the status says why, links still apply; once it can, the status clears and the tunnel is advertised again', async t => {
  const [h, other] = await makeNamespaces(t, ['hg', 'hx'])
  // an address for the endpoint, so the service advertises one
  await veth({ ns: h!, dev: 'eth0', cidr: '192.0.2.1/24' }, { ns: other!, dev: 'eth0' })
  await ip(['-n', h!, 'link', 'add', 'vgkprobe', 'type', 'wireguard'], { allowFail: true })
  if ((await ip(['-n', h!, '-o', 'link'])).includes('vgkprobe')) { t.pass('kernel module present: wireguard-go is not needed'); return }
  const real = which('wireguard-go')
  if (real == null) { t.pass('no wireguard-go on this machine'); return }
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  // the service's wireguard-go is a link the test removes: a binary that stops working
  const go = join(dir, 'wireguard-go')
  symlinkSync(real, go)
  const id = `NodeG${process.pid}`
  const before = process.env[WIREGUARD_GO_ENV]
  process.env[WIREGUARD_GO_ENV] = go
  // the driver copies the environment now; the other tests' drivers never see it
  const d = new Driver(t, h!, { dataDir: join(dir, 'g'), peerId: id, clusterId: 'c-g', port: 51820, vmInterfaces: {}, addressPollMs: 0 })
  if (before == null) delete process.env[WIREGUARD_GO_ENV]
  else process.env[WIREGUARD_GO_ENV] = before
  const ready = await d.next('ready')
  t.true((ready.status as { ok: boolean }).ok, JSON.stringify(ready.status))
  const adv = (await d.next('advert')).wg as { publicKey: string, endpoint: string }
  t.is(adv.endpoint, '192.0.2.1:51820')

  const status = async (): Promise<{ ok: boolean, error: string | null, backend: string | null }> => (await d.send({ type: 'net' }, 'net')).status as { ok: boolean, error: string | null, backend: string | null }
  const waitStatus = async (ok: boolean): Promise<{ ok: boolean, error: string | null }> => {
    for (let i = 0; i < 200; i++) {
      const s = await status()
      if (s.ok === ok) return s
      await sleep(250)
    }
    throw new Error(`the status never became ok: ${String(ok)}`)
  }
  const goPids = await wireguardGoPids(h!)
  t.is(goPids.length, 1, `one wireguard-go: ${goPids.join(',')}`)
  rmSync(go)
  process.kill(goPids[0]!, 'SIGKILL')
  const down = await waitStatus(false)
  t.regex(down.error!, new RegExp(`^WireGuard cannot start: no kernel module \\(ip link add type wireguard: .+\\) and no wireguard-go \\(${WIREGUARD_GO_ENV}=${go.replace(/[.]/g, '\\.')}: ENOENT\\)$`))
  t.is((await d.next('advert')).wg, null, 'the tunnel is no longer advertised')
  t.deepEqual((await d.send({ type: 'net' }, 'net')).peers, [])

  // the rest of the plan still applies while the interface is down
  const spec = { driver: 'process', cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} }
  await d.send({
    type: 'doc',
    ops: [
      { op: 'put', kind: 'vms', draft: { id: 'web', name: 'web', app: null, desired: 'running', spec, overlayIndex: 10 } },
      { op: 'put', kind: 'vms', draft: { id: 'db', name: 'db', app: null, desired: 'running', spec, overlayIndex: 20 } },
      { op: 'put', kind: 'leases', draft: { vm: 'web', holder: id, epoch: 1, cpu: 0.1, memoryBytes: 1 << 20 } },
      { op: 'put', kind: 'leases', draft: { vm: 'db', holder: id, epoch: 1, cpu: 0.1, memoryBytes: 1 << 20 } },
      { op: 'put', kind: 'connections', draft: { id: 'web-db', app: null, from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 } }
    ]
  })
  t.is(((await d.send({ type: 'net' }, 'net')).flows as unknown[]).length, 1, 'the link declared while WireGuard was down is in the rules')
  t.true((await nsRun(h!, 'nft', ['list', 'table', 'inet', tableName(id)])).includes('8080'), 'and in the kernel')
  t.false((await status()).ok, 'still down: the retries keep failing')

  // the binary works again: the next try brings the interface up and the status clears
  symlinkSync(real, go)
  const up = await waitStatus(true)
  t.is(up.error, null)
  t.is((await status()).backend, 'userspace')
  t.deepEqual((await d.next('advert', 40_000)).wg, adv, 'the tunnel is advertised again, with the same key')
  // wireguard-go by name: the service's short-lived wg, nft and ip share the namespace
  // (CI once counted two processes here under load)
  const again = await wireguardGoPids(h!)
  t.is(again.length, 1, `one wireguard-go again: ${again.join(',')}`)
  await d.send({ type: 'stop' }, 'stopped')
})

maybe('a route inside the overlay range that vgrid did not make is a problem in the status until it is gone', async t => {
  const [h, other] = await makeNamespaces(t, ['hc', 'hy'])
  await veth({ ns: h!, dev: 'eth0', cidr: '192.0.2.1/24' }, { ns: other!, dev: 'eth0', cidr: '192.0.2.2/24' })
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const id = `NodeC${process.pid}`
  const clusterId = 'c-c'
  // as an ISP's carrier-grade NAT range on the LAN would be
  const foreign = `${overlayPrefix(clusterId).vmV4.replace(/\.0\/17$/, '.0/24')}`
  await ip(['-n', h!, 'route', 'add', foreign, 'via', '192.0.2.2'])
  const d = new Driver(t, h!, { dataDir: join(dir, 'c'), peerId: id, clusterId, port: 51820, vmInterfaces: {}, addressPollMs: 0 })
  const st = (await d.next('ready')).status as LcmStatus
  t.is(st.routeConflict, `routes inside the overlay range ${overlayPrefix(clusterId).v4} that vgrid did not make win over its tunnel (VM traffic may leave unencrypted): ${foreign} via 192.0.2.2 dev eth0`)
  t.truthy(st.routeConflictSince)
  // gone: the next plan (a document change) sees it
  await ip(['-n', h!, 'route', 'del', foreign])
  await d.send({ type: 'doc', ops: [{ op: 'put', kind: 'vms', draft: { id: 'web', name: 'web', app: null, desired: 'running', spec: { driver: 'process', cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} } } as never }] })
  t.is(((await d.send({ type: 'net' }, 'net')).status as LcmStatus).routeConflict, null)
  await d.send({ type: 'stop' }, 'stopped')
})

maybe('a tunnel a link needs that goes without handshakes past the bound is a health problem naming the node and the links, until a handshake is seen', async t => {
  const [ha, hb] = await makeNamespaces(t, ['ht', 'hu'])
  const net = await subnet()
  await veth({ ns: ha!, dev: 'eth0', cidr: `${net}.1/24` }, { ns: hb!, dev: 'eth0', cidr: `${net}.2/24` })
  const clusterId = `lcm-tun-${process.pid}`
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const idA = `NodeTA${process.pid}`
  const idB = `NodeTB${process.pid}`
  const idC = `NodeTC${process.pid}`
  const a = new Driver(t, ha!, { dataDir: join(dir, 'a'), peerId: idA, clusterId, port: 51820, vmInterfaces: {}, addressPollMs: 0 })
  const b = new Driver(t, hb!, { dataDir: join(dir, 'b'), peerId: idB, clusterId, port: 51820, vmInterfaces: {}, addressPollMs: 0 })
  await a.next('ready')
  await b.next('ready')
  const advA = (await a.next('advert')).wg as { publicKey: string, endpoint: string }
  const advB = (await b.next('advert')).wg as { publicKey: string, endpoint: string }
  // C: a member with a tunnel nobody answers (no agent behind its endpoint)
  const keyC = (generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' })).subarray(-32).toString('base64')
  const spec = { driver: 'process', cpu: 0.1, memoryBytes: 1 << 20, volumes: [], constraints: {} }
  const lease = (vm: string, holder: string): object => ({ op: 'put', kind: 'leases', draft: { vm, holder, epoch: 1, cpu: 0.1, memoryBytes: 1 << 20 } })
  const ops = [
    ...[[idA, 'a'], [idB, 'b'], [idC, 'c']].map(([node, name], i) => ({ op: 'put', kind: 'roll', draft: { node, name, joined: i + 1, overlayIndex: i + 1 } })),
    ...['web', 'db', 'x'].map((id, i) => ({ op: 'put', kind: 'vms', draft: { id, name: id, app: null, desired: 'running', spec, overlayIndex: 10 + i } })),
    lease('web', idA), lease('db', idB), lease('x', idC),
    { op: 'put', kind: 'connections', draft: { id: 'web-db', app: null, from: { vm: 'web', terminal: 'db' }, to: { vm: 'db', terminal: 'in' }, protocol: 'tcp', port: 8080 } },
    { op: 'put', kind: 'connections', draft: { id: 'x-web', app: null, from: { vm: 'x', terminal: 'o' }, to: { vm: 'web', terminal: 'i' }, protocol: 'tcp', port: 80 } }
  ]
  const members = [{ nodeId: idA, name: 'a', state: 'alive', wireguard: advA }, { nodeId: idB, name: 'b', state: 'alive', wireguard: advB }, { nodeId: idC, name: 'c', state: 'alive', wireguard: { publicKey: keyC, endpoint: `${net}.3:51820` } }]
  for (const d of [a, b]) {
    await d.send({ type: 'doc', ops })
    await d.send({ type: 'members', members })
  }
  // A and B shake hands by themselves (the driver's keepalive is 1 s)
  let shaken = false
  for (let i = 0; i < 50 && !shaken; i++) {
    const peers = (await a.send({ type: 'net' }, 'net')).peers as Array<{ node: string, latestHandshake: number }>
    shaken = (peers.find(p => p.node === idB)?.latestHandshake ?? 0) > 0
    if (!shaken) await sleep(200)
  }
  t.true(shaken, 'A and B had a handshake')
  type Down = Array<{ node: string, name: string, links: string[], reason: string }>
  const now = await a.send({ type: 'tunnels', aheadMs: 0 }, 'tunnels')
  t.deepEqual(now.down, [], 'fresh tunnels: nothing down')
  t.deepEqual(now.problems, [])

  // as if 181 s passed with no handshake: B's tunnel (web-db) and C's (x-web, never one) are down
  const later = await a.send({ type: 'tunnels', aheadMs: 181_000 }, 'tunnels')
  const down = later.down as Down
  t.deepEqual(down.map(d => [d.name, d.links]).sort(), [['b', ['web-db']], ['c', ['x-web']]])
  t.regex(down.find(d => d.name === 'b')!.reason, /^no WireGuard handshake for 18\d s$/)
  t.regex(down.find(d => d.name === 'c')!.reason, /^no WireGuard handshake since the peer was added 18\d s ago$/)
  const problems = later.problems as Array<{ service: string, cause: string, message: string }>
  t.deepEqual(problems.map(p => p.cause), ['tunnel-down', 'tunnel-down'])
  t.true(problems.some(p => /^tunnel to b is down: .*web-db \(web\.db -> db\.in\)/.test(p.message)), JSON.stringify(problems))
  t.deepEqual(((await a.send({ type: 'net' }, 'net')).status as LcmStatus).tunnelsDown?.map(d => d.name).sort(), ['b', 'c'], 'in the status until the next check')
  // B's own view: A is needed (web-db), C is not
  t.deepEqual(((await b.send({ type: 'tunnels', aheadMs: 181_000 }, 'tunnels')).down as Down).map(d => [d.name, d.links]), [['a', ['web-db']]])

  // the next check at the real time sees the handshakes as they are: cleared
  t.deepEqual((await a.send({ type: 'tunnels', aheadMs: 0 }, 'tunnels')).problems, [])
  t.deepEqual(((await a.send({ type: 'net' }, 'net')).status as LcmStatus).tunnelsDown, [])
  await a.send({ type: 'stop' }, 'stopped')
  await b.send({ type: 'stop' }, 'stopped')
})

maybe('an agent of a new identity on a host whose earlier agent was SIGKILLed (its wireguard-go gone with it) removes its table, and the interface and running wireguard-go an earlier release left, and comes up; a restart of the same identity keeps its own; a second agent beside a running one is refused', async t => {
  const [h, lan] = await makeNamespaces(t, ['hr', 'hrlan'])
  // an address for the endpoint: the host needs one besides loopback
  const net = await subnet()
  await veth({ ns: h!, dev: 'eth0', cidr: `${net}.1/24` }, { ns: lan!, dev: 'eth0', cidr: `${net}.2/24` })
  const dir = mkdtempSync(join(tmpdir(), 'lcm-svc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const cfg = (id: string): object => ({ dataDir: join(dir, id), peerId: id, clusterId: 'c-r', port: 51820, vmInterfaces: {}, addressPollMs: 0, backend: 'userspace' })
  const oldId = `NodeOld${process.pid}`
  const newId = `NodeNew${process.pid}`

  const a = new Driver(t, h!, cfg(oldId))
  t.true(((await a.next('ready')).status as LcmStatus).ok)
  const oldGo = await wireguardGoPids(h!)
  t.is(oldGo.length, 1)
  process.kill(a.pid!, 'SIGKILL')
  // its wireguard-go ends with it (setpriv --pdeathsig: bb45, it ran on for good when the
  // agent never came back); its table stays, as the kernel's state outlives the agent
  // (the leftover wireguard-go of an earlier release is removed: test/lcm/wireguard.test.ts)
  for (let i = 0; i < 150 && isAlive(oldGo[0]!); i++) await sleep(20)
  t.false(isAlive(oldGo[0]!), 'the killed agent\'s wireguard-go ended with it')
  t.true((await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(oldId)))
  // what an agent of an earlier release, whose wireguard-go was not tied to it, leaves: one
  // still running, holding its interface (its output into pipes nobody reads any more)
  const olderName = interfaceName(`NodeOlder${process.pid}`)
  const older = spawn(which('ip')!, ['netns', 'exec', h!, which('wireguard-go')!, '-f', olderName], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' } })
  t.teardown(() => { if (older.exitCode == null) older.kill('SIGKILL'); rmSync(`/run/wireguard/${olderName}.sock`, { force: true }) })
  for (let i = 0; i < 250 && !existsSync(`/run/wireguard/${olderName}.sock`); i++) await sleep(20)
  // read on: it must not die of SIGPIPE on its own (rv50), only of what the new agent does
  older.stdout.resume()
  older.stderr.resume()
  t.true(isAlive(older.pid!), 'an earlier release\'s wireguard-go runs')

  const b = new Driver(t, h!, cfg(newId))
  const status = (await b.next('ready')).status as LcmStatus
  t.true(status.ok, `the new agent's overlay is up: ${status.error ?? ''}`)
  t.is(status.routeConflict ?? null, null, 'no route of the old interface left in the overlay range')
  t.false(isAlive(oldGo[0]!), 'the old wireguard-go is gone')
  for (let i = 0; i < 150 && isAlive(older.pid!); i++) await sleep(20)
  t.false(isAlive(older.pid!), 'the earlier release\'s running wireguard-go is ended')
  const links = await ip(['-n', h!, '-o', 'link', 'show'])
  t.false(links.includes(olderName), 'and its interface is gone')
  t.false(existsSync(`/run/wireguard/${olderName}.sock`), 'and its control socket')
  t.false(links.includes(interfaceName(oldId)), 'the old interface is gone')
  t.true(links.includes(interfaceName(newId)))
  t.false(existsSync(`/run/wireguard/${interfaceName(oldId)}.sock`), 'and its control socket')
  const tables = await nsRun(h!, 'nft', ['list', 'tables'])
  t.false(tables.includes(tableName(oldId)), 'the old table is gone')
  t.true(tables.includes(tableName(newId)))

  // the same identity SIGKILLed and started again: its own interface replaced, its table kept, up
  process.kill(b.pid!, 'SIGKILL')
  await sleep(200)
  const c = new Driver(t, h!, cfg(newId))
  t.true(((await c.next('ready')).status as LcmStatus).ok)
  t.true((await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(newId)))
  const again = await wireguardGoPids(h!)
  t.is(again.length, 1, 'one wireguard-go: the restarted agent\'s')
  // a second agent (another data dir) in the namespace while this one runs: refused, nothing of the first touched
  const d = new Driver(t, h!, cfg(`NodeTwo${process.pid}`))
  await t.throwsAsync(d.next('ready'), { message: /^another vgrid agent runs the overlay in this network namespace: one per namespace .*start this one with --no-overlay$/ })
  t.deepEqual(await wireguardGoPids(h!), again, 'the running agent\'s wireguard-go untouched')
  t.true((await nsRun(h!, 'nft', ['list', 'tables'])).includes(tableName(newId)))
  await c.send({ type: 'stop' }, 'stopped')
})
