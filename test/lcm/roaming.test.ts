// Roaming: a host's address changes under a running tunnel. The side that moved
// re-sets each peer's endpoint (WgInterface.refreshEndpoints, which the LCM service
// calls on the agent's address-change event); a ping stream through the tunnel
// and a TCP stream keep going with a gap of at most 2 s (the TCP connection is not
// reset), and the other side learns the new address.
import test from 'ava'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { replaceAddress, sleep } from '../../node/netns/netns.ts'
import { loadOrCreateKeypair, WgInterface } from '../../node/lcm/wireguard.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { makeNamespaces, pingOnce, pingStream, skipReason, subnet, veth } from './ns.ts'
import { echoServer, tcpStream } from './tcp.ts'

const reason = await skipReason()
if (reason != null) console.log(`lcm roaming test skipped: ${reason}`)
const maybe = reason == null ? test : test.skip

maybe('a tunnel keeps carrying pings across an address change of one host, gap at most 2 s', async t => {
  const [a, b] = await makeNamespaces(t, ['ra', 'rb'])
  const net = await subnet()
  await veth({ ns: a!, dev: 'eth0', cidr: `${net}.1/24` }, { ns: b!, dev: 'eth0', cidr: `${net}.2/24` })
  const dir = mkdtempSync(join(tmpdir(), 'lcm-roam-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const ka = await loadOrCreateKeypair(join(dir, 'a'))
  const kb = await loadOrCreateKeypair(join(dir, 'b'))
  const wa = await WgInterface.create({ name: interfaceName(`${a}-n`), netns: a!, privateKey: ka.privateKey, listenPort: 51820, addresses: ['100.98.0.1/24'] })
  t.teardown(async () => { await wa.destroy() })
  const wb = await WgInterface.create({ name: interfaceName(`${b}-n`), netns: b!, privateKey: kb.privateKey, listenPort: 51820, addresses: ['100.98.0.2/24'] })
  t.teardown(async () => { await wb.destroy() })
  await wa.setPeer({ publicKey: kb.publicKey, endpoint: `${net}.2:51820`, allowedIps: ['100.98.0.2/32'] })
  await wb.setPeer({ publicKey: ka.publicKey, endpoint: `${net}.1:51820`, allowedIps: ['100.98.0.1/32'] })
  t.true(await pingOnce(a!, '100.98.0.2', 5), 'the tunnel is up before the move')

  await echoServer(t, b!, [7000])
  const tcp = tcpStream(a!, '100.98.0.2', 7000, 6000)
  const stream = pingStream(t, a!, '100.98.0.2', 0.1)
  await sleep(1500)
  await replaceAddress(a!, 'eth0', `${net}.1/24`, `${net}.11/24`)
  const touched = await wa.refreshEndpoints()
  t.deepEqual(touched, [kb.publicKey])
  await sleep(3500)
  const r = await stream.stop()
  t.log(`replies ${r.replies.length} of ${r.sent} sent, longest gap ${r.maxGapMs} ms`)
  t.true(r.replies.length >= 30, `the stream ran (${r.replies.length} replies)`)
  t.true(r.maxGapMs <= 2000, `longest gap ${r.maxGapMs} ms`)
  // replies kept coming after the move, not only before it
  t.true(r.replies.at(-1)! > Date.now() - 1500, 'replies still arrive at the end')
  t.is((await wb.show()).peers[0]!.endpoint, `${net}.11:51820`, 'the other side roamed to the new address')
  const s = await tcp
  t.log(`TCP stream: ${s.echoes} echoes of ${s.sent} lines, longest gap ${s.maxGapMs} ms, error ${s.error ?? 'none'}`)
  t.is(s.error, null, 'the TCP connection was not reset')
  t.is(s.echoes, s.sent, 'every line came back')
  t.true(s.maxGapMs <= 2000, `longest TCP gap ${s.maxGapMs} ms`)
})
