// LCM benchmark: iperf3 throughput between two namespace hosts, in one run,
//   raw   over the veth between them,
//   bare  through a wireguard-go tunnel set up by hand with wg and ip,
//   vgrid through a vgrid connection: VM namespace -> node -> WireGuard tunnel made by
//         node/lcm/wireguard.ts -> node -> VM namespace, with the link rules of
//         node/lcm/rules.ts applied on both nodes (forwarding plus nftables),
// and the ratios vgrid/bare (target >= 0.9) and bare/raw. Also how long an address
// change stops a ping stream through the wrapper's tunnel with and without
// refreshEndpoints (the roaming fix), unless --no-roam.
// Run as root: node bench/lcm.ts [--seconds 5] [--no-roam]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { checkSupport, createNamespace, deleteNamespace, ip, nsRun, pickSubnet, replaceAddress, sleep, which } from '../node/netns/netns.ts'
import { generateKeypair, WgInterface } from '../node/lcm/wireguard.ts'
import { interfaceName } from '../node/lcm/wireguard-format.ts'
import { computeRuleset, tableName } from '../node/lcm/rules.ts'
import { applyRuleset } from '../node/lcm/nft.ts'

const { values: opts } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, 'no-roam': { type: 'boolean', default: false } } })
const SECONDS = Number(opts.seconds)
const support = checkSupport({ nft: true })
if (!support.ok) { console.error(`bench/lcm: ${support.reason}`); process.exit(2) }
for (const p of ['iperf3', 'wireguard-go', 'wg', 'busybox']) {
  if (which(p) == null) { console.error(`bench/lcm: ${p} not found`); process.exit(2) }
}

const tag = `lcmb-${process.pid}`
const made: string[] = []
const cleanups: Array<() => Promise<void>> = []
async function ns (name: string): Promise<string> {
  const n = `${tag}-${name}`
  made.push(n)
  await createNamespace(n)
  return n
}
async function veth (a: string, da: string, b: string, db: string, ca?: string, cb?: string): Promise<void> {
  await ip(['-n', a, 'link', 'add', da, 'type', 'veth', 'peer', 'name', db, 'netns', b])
  if (ca != null) await ip(['-n', a, 'addr', 'add', ca, 'dev', da])
  if (cb != null) await ip(['-n', b, 'addr', 'add', cb, 'dev', db])
  await ip(['-n', a, 'link', 'set', da, 'up'])
  await ip(['-n', b, 'link', 'set', db, 'up'])
}

/** iperf3 from `client` to `addr` (server in `server`); Gbit/s received. */
async function iperf (server: string, client: string, addr: string): Promise<number> {
  const srv = spawn(which('ip')!, ['netns', 'exec', server, which('iperf3')!, '-s', '-1', '-p', '5201'], { stdio: 'ignore' })
  await sleep(300)
  try {
    const out = await nsRun(client, 'iperf3', ['-c', addr, '-p', '5201', '-t', String(SECONDS), '-J'], { timeoutMs: (SECONDS + 20) * 1000 })
    const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }
    return j.end.sum_received.bits_per_second / 1e9
  } finally {
    if (srv.exitCode == null) srv.kill('SIGKILL')
  }
}

/** Longest gap (ms) between ping replies across an address change of `moving`. */
async function roamGap (moving: string, dev: string, from: string, to: string, target: string, wg: WgInterface | null): Promise<number> {
  const p = spawn(which('ip')!, ['netns', 'exec', moving, which('busybox')!, 'ping', '-i', '0.1', target], { stdio: ['ignore', 'pipe', 'ignore'] })
  const times: number[] = []
  p.stdout.on('data', (d: Buffer) => { for (const _ of d.toString().matchAll(/seq=/g)) times.push(Date.now()) })
  await sleep(1000)
  await replaceAddress(moving, dev, from, to)
  if (wg != null) await wg.refreshEndpoints()
  const until = Date.now() + 25_000
  // wait for replies to come back (or give up after 25 s)
  const n = times.length
  while (Date.now() < until && times.length < n + 10) await sleep(100)
  p.kill('SIGKILL')
  let gap = 0
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!)
  return times.length < n + 10 ? Number.POSITIVE_INFINITY : gap
}

async function main (): Promise<void> {
  const net = await pickSubnet(process.pid % 200)
  const [ha, hb, v1, v2] = [await ns('ha'), await ns('hb'), await ns('v1'), await ns('v2')]
  await veth(ha, 'eth0', hb, 'eth0', `${net}.1/24`, `${net}.2/24`)
  const results: Record<string, number> = {}
  results.raw = await iperf(hb, ha, `${net}.2`)
  console.log(`raw veth:            ${results.raw.toFixed(2)} Gbit/s`)

  // bare wireguard-go, by hand: keys in files, wg set, ip addr
  const dir = mkdtempSync(join(tmpdir(), 'lcmb-'))
  cleanups.push(async () => { rmSync(dir, { recursive: true, force: true }) })
  const kA = await generateKeypair()
  const kB = await generateKeypair()
  writeFileSync(join(dir, 'a.key'), kA.privateKey, { mode: 0o600 })
  writeFileSync(join(dir, 'b.key'), kB.privateKey, { mode: 0o600 })
  const bare = [`${tag}a`.slice(0, 15), `${tag}b`.slice(0, 15)]
  for (const [i, host] of [ha, hb].entries()) {
    const name = bare[i]!
    const p = spawn(which('ip')!, ['netns', 'exec', host, which('wireguard-go')!, '-f', name], { stdio: 'ignore', env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' } })
    cleanups.push(async () => { await ip(['-n', host, 'link', 'del', name], { allowFail: true }); await sleep(200); if (p.exitCode == null) p.kill('SIGKILL') })
    for (let k = 0; k < 100; k++) { if ((await ip(['-n', host, 'link', 'show', name], { allowFail: true })).includes(name)) break; await sleep(20) }
    const peer = i === 0 ? kB : kA
    await nsRun(host, 'wg', ['set', name, 'listen-port', '51900', 'private-key', join(dir, i === 0 ? 'a.key' : 'b.key'), 'peer', peer.publicKey, 'endpoint', `${net}.${2 - i}:51900`, 'allowed-ips', `10.99.0.${2 - i}/32`])
    await ip(['-n', host, 'addr', 'add', `10.99.0.${i + 1}/24`, 'dev', name])
    await ip(['-n', host, 'link', 'set', name, 'up'])
  }
  results.bare = await iperf(hb, ha, '10.99.0.2')
  console.log(`bare wireguard-go:   ${results.bare.toFixed(2)} Gbit/s`)
  for (const [i, host] of [ha, hb].entries()) await ip(['-n', host, 'link', 'del', bare[i]!], { allowFail: true })

  // vgrid: the wrapper's tunnel, VMs behind nodes, link rules on both nodes
  const VM1 = '100.77.128.1'
  const VM2 = '100.77.128.2'
  const wa = await WgInterface.create({ name: interfaceName(`${ha}-bench`), netns: ha, privateKey: kA.privateKey, listenPort: 51820, addresses: ['100.77.0.1/17'] })
  cleanups.push(async () => { await wa.destroy() })
  const wb = await WgInterface.create({ name: interfaceName(`${hb}-bench`), netns: hb, privateKey: kB.privateKey, listenPort: 51820, addresses: ['100.77.0.2/17'] })
  cleanups.push(async () => { await wb.destroy() })
  await wa.setPeer({ publicKey: kB.publicKey, endpoint: `${net}.2:51820`, allowedIps: ['100.77.0.2/32', `${VM2}/32`] })
  await wb.setPeer({ publicKey: kA.publicKey, endpoint: `${net}.1:51820`, allowedIps: ['100.77.0.1/32', `${VM1}/32`] })
  const vms = [{ vm: 'c', address: VM1, node: 'A' }, { vm: 's', address: VM2, node: 'B' }]
  const links = [{ id: 'iperf', from: { vm: 'c', terminal: 'out' }, to: { vm: 's', terminal: 'in' }, protocol: 'tcp' as const, port: 5201 }]
  for (const [host, vm, addr, wg, node] of [[ha, v1, VM1, wa, 'A'], [hb, v2, VM2, wb, 'B']] as const) {
    await veth(vm, 'eth0', host, 'vm', `${addr}/32`)
    await ip(['-n', vm, 'route', 'add', 'default', 'dev', 'eth0'])
    await ip(['-n', host, 'route', 'add', `${addr}/32`, 'dev', 'vm'])
    await ip(['-n', host, 'route', 'replace', '100.77.128.0/17', 'dev', wg.name])
    await nsRun(host, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/conf/vm/proxy_arp; echo 0 > /proc/sys/net/ipv4/neigh/vm/proxy_delay; echo 1 > /proc/sys/net/ipv4/ip_forward'])
    await applyRuleset(host, computeRuleset({ node, table: tableName(node), vmPrefix: '100.77.128.0/17', vms, links }))
  }
  results.vgrid = await iperf(v2, v1, VM2)
  console.log(`vgrid connection:    ${results.vgrid.toFixed(2)} Gbit/s`)
  console.log(`ratio vgrid/bare:    ${(results.vgrid / results.bare).toFixed(2)} (target >= 0.9)`)
  console.log(`ratio bare/raw:      ${(results.bare / results.raw).toFixed(3)}`)

  if (opts['no-roam'] !== true) {
    const without = await roamGap(ha, 'eth0', `${net}.1/24`, `${net}.11/24`, '100.77.0.2', null)
    console.log(`address change, endpoints not re-set: longest ping gap ${Number.isFinite(without) ? `${without} ms` : 'over 25 s (no recovery)'}`)
    const withFix = await roamGap(ha, 'eth0', `${net}.11/24`, `${net}.21/24`, '100.77.0.2', wa)
    console.log(`address change, refreshEndpoints():   longest ping gap ${withFix} ms`)
  }
}

try {
  await main()
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {})
  for (const n of made) await deleteNamespace(n, 500)
}
