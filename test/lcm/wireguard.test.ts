// The WireGuard wrapper for real: two namespaces joined by a veth pair, a tunnel
// between them built only through node/lcm/wireguard.ts, a ping through it, the
// dump parsed, and a teardown that leaves no interface, process or socket.
import test, { type ExecutionContext } from 'ava'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { ip, isAlive, sleep, which } from '../../node/netns/netns.ts'
import { DATA_PLANE_NICE, loadOrCreateKeypair, probeBackend, WgInterface, WireguardUnavailableError } from '../../node/lcm/wireguard.ts'
import { interfaceName } from '../../node/lcm/wireguard-format.ts'
import { makeNamespaces, pingOnce, skipReason, subnet, veth } from './ns.ts'

const reason = await skipReason()
if (reason != null) console.log(`lcm wireguard tests skipped: ${reason}`)
const maybe = reason == null ? test.serial : test.skip

/** a data dir for a keypair, removed after the test (it holds a private key) */
function keyDir (t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'lcm-wg-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

maybe('a tunnel between two namespaces comes up, carries a ping, reports handshake and bytes, and leaves nothing behind', async t => {
  const [a, b] = await makeNamespaces(t, ['a', 'b'])
  const net = await subnet()
  await veth({ ns: a!, dev: 'eth0', cidr: `${net}.1/24` }, { ns: b!, dev: 'eth0', cidr: `${net}.2/24` })
  const dir = mkdtempSync(join(tmpdir(), 'lcm-wg-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const ka = await loadOrCreateKeypair(join(dir, 'a'))
  const kb = await loadOrCreateKeypair(join(dir, 'b'))
  t.is(statSync(join(dir, 'a', 'wireguard.key')).mode & 0o777, 0o600)
  t.deepEqual(await loadOrCreateKeypair(join(dir, 'a')), ka, 'the keypair is kept, not remade')

  const backend = await probeBackend(a!)
  t.log(`backend: ${backend}`)
  const nameA = interfaceName(`${a}-node`)
  const nameB = interfaceName(`${b}-node`)
  const wa = await WgInterface.create({ name: nameA, netns: a!, privateKey: ka.privateKey, listenPort: 51820, addresses: ['100.99.0.1/24'] })
  t.teardown(async () => { await wa.destroy() })
  const wb = await WgInterface.create({ name: nameB, netns: b!, privateKey: kb.privateKey, listenPort: 51820, addresses: ['100.99.0.2/24'] })
  t.teardown(async () => { await wb.destroy() })
  await wa.setPeer({ publicKey: kb.publicKey, endpoint: `${net}.2:51820`, allowedIps: ['100.99.0.2/32'] })
  await wb.setPeer({ publicKey: ka.publicKey, endpoint: `${net}.1:51820`, allowedIps: ['100.99.0.1/32'], persistentKeepalive: 25 })

  t.true(await pingOnce(a!, '100.99.0.2', 5), 'a ping through the tunnel is answered')

  const sa = await wa.show()
  t.is(sa.name, nameA)
  t.is(sa.publicKey, ka.publicKey)
  t.is(sa.listenPort, 51820)
  t.is(sa.peers.length, 1)
  const pa = sa.peers[0]!
  t.is(pa.publicKey, kb.publicKey)
  t.is(pa.endpoint, `${net}.2:51820`)
  t.deepEqual(pa.allowedIps, ['100.99.0.2/32'])
  t.true(pa.latestHandshake > Date.now() - 60_000 && pa.latestHandshake <= Date.now() + 1000, `handshake time ${pa.latestHandshake}`)
  t.true(pa.rxBytes > 0 && pa.txBytes > 0, `bytes rx ${pa.rxBytes} tx ${pa.txBytes}`)
  t.is(pa.persistentKeepalive, 0)
  t.is((await wb.show()).peers[0]!.persistentKeepalive, 25)

  // removing the peer stops the tunnel
  await wa.removePeer(kb.publicKey)
  t.is((await wa.show()).peers.length, 0)
  t.false(await pingOnce(a!, '100.99.0.2', 1))

  const pids = [wa.pid, wb.pid]
  await wa.destroy()
  await wb.destroy()
  for (const [ns, name] of [[a!, nameA], [b!, nameB]] as const) {
    const links = await ip(['-n', ns, '-o', 'link', 'show'])
    t.false(links.includes(name), `no ${name} in ${ns}`)
    t.false(existsSync(`/run/wireguard/${name}.sock`), `no socket for ${name}`)
  }
  for (const pid of pids) if (pid != null) t.false(isAlive(pid), `wireguard-go ${pid} is gone`)
})

maybe('a second interface with a name in use on this machine is refused with a clear error', async t => {
  const [a, b] = await makeNamespaces(t, ['c', 'd'])
  const kp = await loadOrCreateKeypair(keyDir(t))
  const name = interfaceName(`${a}-dup`)
  const w = await WgInterface.create({ name, netns: a!, privateKey: kp.privateKey, listenPort: 51820 })
  t.teardown(async () => { await w.destroy() })
  if (w.backend === 'userspace') {
    await t.throwsAsync(WgInterface.create({ name, netns: b!, privateKey: kp.privateKey, listenPort: 51820 }), { message: /in use on this machine/ })
  } else {
    t.pass('kernel interfaces are per namespace')
  }
})

maybe('wireguard-go ends with the agent that started it, however that ends: SIGKILL left it running for good (bb45)', async t => {
  const [a] = await makeNamespaces(t, ['k'])
  const dir = keyDir(t)
  const name = interfaceName(`${a}-tied`)
  const mod = new URL('../../node/lcm/wireguard.ts', import.meta.url).href
  // an agent in miniature: its own process starts the interface, then is killed
  const agent = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e',
    `const w = await import(${JSON.stringify(mod)}); const kp = await w.loadOrCreateKeypair(${JSON.stringify(dir)}); const i = await w.WgInterface.create({ name: ${JSON.stringify(name)}, netns: ${JSON.stringify(a)}, privateKey: kp.privateKey, listenPort: 51820, backend: 'userspace' }); console.log(String(i.pid)); setInterval(() => {}, 1000)`],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  const started: number[] = []
  t.teardown(() => {
    if (agent.exitCode == null) agent.kill('SIGKILL')
    for (const p of started) if (isAlive(p)) process.kill(p, 'SIGKILL')
    rmSync(`/run/wireguard/${name}.sock`, { force: true })
  })
  const pid = await new Promise<number>((resolve, reject) => {
    agent.stdout.once('data', (d: Buffer) => { resolve(Number(d.toString().trim())) })
    agent.once('exit', code => { reject(new Error(`the agent process exited (${String(code)}) before its interface was up`)) })
  })
  started.push(pid)
  t.true(Number.isInteger(pid) && isAlive(pid), `wireguard-go ${pid} runs`)
  agent.kill('SIGKILL')
  const until = Date.now() + 3000
  while (isAlive(pid) && Date.now() < until) await sleep(20)
  t.false(isAlive(pid), 'wireguard-go ended with its agent')
  // the kernel removes its tun device a moment after the process is gone
  const linked = async (): Promise<boolean> => (await ip(['-n', a!, '-o', 'link', 'show'])).includes(name)
  const gone = Date.now() + 3000
  while (await linked() && Date.now() < gone) await sleep(50)
  t.false(await linked(), 'and its interface with it')
})

maybe('an interface left by a killed run in the same namespace is replaced, its wireguard-go ends', async t => {
  const [a] = await makeNamespaces(t, ['e'])
  const kp = await loadOrCreateKeypair(keyDir(t))
  const name = interfaceName(`${a}-left`)
  // what a killed agent leaves: a wireguard-go nobody will stop, its output into pipes
  // nobody reads any more (so it dies of SIGPIPE on its last words, its socket left behind)
  const orphan = spawn(which('ip')!, ['netns', 'exec', a!, which('wireguard-go')!, '-f', name], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' } })
  t.teardown(() => { if (orphan.exitCode == null) orphan.kill('SIGKILL') })
  const until = Date.now() + 5000
  while (!existsSync(`/run/wireguard/${name}.sock`) && Date.now() < until) await sleep(20)
  t.true(existsSync(`/run/wireguard/${name}.sock`))
  await ip(['-n', a!, 'link', 'set', name, 'up'])
  orphan.stdout.destroy()
  orphan.stderr.destroy()
  const t0 = Date.now()
  const w = await WgInterface.create({ name, netns: a!, privateKey: kp.privateKey, listenPort: 51820, backend: 'userspace' })
  t.teardown(async () => { await w.destroy() })
  // not held until a timeout by the dead one's socket file (3 s: a restart after a crash
  // came too late for its VMs' watchdog); here it takes about 0.1 s
  t.true(Date.now() - t0 < 2500, `replacing it took ${Date.now() - t0} ms`)
  t.not(w.pid, orphan.pid)
  t.false(isAlive(orphan.pid!), 'the leftover wireguard-go exited')
  // the data plane: in a session of its own, every thread at DATA_PLANE_NICE, and so is its autogroup where there is one
  const stat = (task: string): string[] => readFileSync(task, 'utf8').replace(/^.*\) /s, '').split(' ')
  t.is(Number(stat(`/proc/${w.pid!}/stat`)[3]), w.pid!, 'its own session')
  const threads = readdirSync(`/proc/${w.pid!}/task`)
  t.true(threads.length > 1)
  t.deepEqual(threads.map(id => Number(stat(`/proc/${w.pid!}/task/${id}/stat`)[16])), threads.map(() => DATA_PLANE_NICE), 'every thread niced')
  if (existsSync(`/proc/${w.pid!}/autogroup`)) t.regex(readFileSync(`/proc/${w.pid!}/autogroup`, 'utf8'), new RegExp(`nice ${DATA_PLANE_NICE}\\b`))
  t.is((await w.show()).publicKey, kp.publicKey)
})

maybe('an interface left under the name earlier versions gave it ("vg" + 13) is removed: it held the listen port', async t => {
  const [a] = await makeNamespaces(t, ['l'])
  const kp = await loadOrCreateKeypair(keyDir(t))
  const name = interfaceName(`${a}-legacy`)
  t.regex(name, /^vgw[a-z2-7]{12}$/)
  // the old interfaceName: "vg" + the first 13 base32 characters of the same hash
  const old = `vg${name.slice(3)}q`
  const backend = await probeBackend(a!)
  const orphan = backend === 'userspace'
    ? spawn(which('ip')!, ['netns', 'exec', a!, which('wireguard-go')!, '-f', old], { stdio: 'ignore', env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' } })
    : null
  t.teardown(async () => {
    if (orphan != null && orphan.exitCode == null) orphan.kill('SIGKILL')
    await ip(['-n', a!, 'link', 'del', old], { allowFail: true })
  })
  if (orphan == null) await ip(['-n', a!, 'link', 'add', old, 'type', 'wireguard'])
  const until = Date.now() + 5000
  while (!(await ip(['-n', a!, 'link', 'show', old], { allowFail: true })).includes(old) && Date.now() < until) await sleep(20)
  // what the killed agent had set: its key and listen port
  const sh = which('sh')!
  await ip(['netns', 'exec', a!, sh, '-c', 'cat > /tmp/.k.$$ && "$0" set "$1" private-key /tmp/.k.$$ listen-port 51820; r=$?; rm -f /tmp/.k.$$; exit $r', which('wg')!, old], { input: kp.privateKey })
  const w = await WgInterface.create({ name, netns: a!, privateKey: kp.privateKey, listenPort: 51820, backend })
  t.teardown(async () => { await w.destroy() })
  t.is((await w.show()).listenPort, 51820, 'the port is the new interface\'s')
  t.false((await ip(['-n', a!, '-o', 'link', 'show'])).includes(old), 'the old one is gone')
  if (orphan != null) {
    const gone = Date.now() + 3000
    while (isAlive(orphan.pid!) && Date.now() < gone) await sleep(20)
    t.false(isAlive(orphan.pid!), 'its wireguard-go exited')
    t.false(existsSync(`/run/wireguard/${old}.sock`))
  }
})

maybe('without a kernel module and without wireguard-go the probe says exactly that', async t => {
  const [a] = await makeNamespaces(t, ['f'])
  const backend = await probeBackend(a!)
  if (backend === 'kernel') {
    t.pass('this machine has the kernel module: the probe takes it')
    return
  }
  const err = await t.throwsAsync(probeBackend(a!, { wireguardGo: null }), { instanceOf: WireguardUnavailableError })
  t.regex(err!.message, /^WireGuard cannot start: no kernel module \(ip link add type wireguard: .+\) and no wireguard-go \(install wireguard-go\)$/)
})
