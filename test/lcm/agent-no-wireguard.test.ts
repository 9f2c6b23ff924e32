// A real `vgrid agent` with the overlay on, in a namespace host, on a machine where
// WireGuard cannot start: no kernel module (these machines have none; checked) and no
// wireguard-go ($VGRID_WIREGUARD_GO=none, since the lookup also finds /usr/bin). The
// agent still becomes ready, says exactly why in /v1/status, `vgrid status --json`,
// `vgrid net` and its log (once, however often it tries again: /metrics counts the
// tries), advertises no tunnel, and runs everything else: VMs start, a declared link
// between two of its own VMs carries traffic and an undeclared port is dropped. Once a
// node whose overlay is up joins, the other node's health names the one that is down,
// and the VMs with connections move there (the others stay), their link with them.
import { nodeBin } from '../../node/netns/processes.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import type { LinkView } from '../../node/lcm/links.ts'
import type { NetView } from '../../node/lcm/routes.ts'
import type { StatusView } from '../../node/api/types.ts'
import { WIREGUARD_GO_ENV } from '../../node/lcm/wireguard.ts'
import { join } from 'node:path'
import { e2e, Grid, type Host } from '../harness/index.ts'
import { until } from '../harness/vm-runs.ts'
import { exchange } from './tcp.ts'

// the echo server of test/lcm/tcp.ts, as a VM's program
const ECHO = "const net = require('node:net'); for (const p of process.argv.slice(1)) net.createServer(s => s.pipe(s)).listen(Number(p), '0.0.0.0'); console.log('echo ready')"
const CAUSE = new RegExp(`^WireGuard cannot start: no kernel module \\(ip link add type wireguard: .+\\) and no wireguard-go \\(${WIREGUARD_GO_ENV}=none\\)$`)
const LOGGED = 'WireGuard cannot start; connections to other nodes are down, everything else runs error='

async function running (h: Host, vm: string): Promise<VmDetail> {
  return await until(`${vm} to run`, 60_000, async () => {
    const d = await h.api<VmDetail>(`/v1/vms/${vm}`)
    return d.state === 'running' && d.runtime?.state === 'running' ? d : undefined
  })
}

e2e('an agent where WireGuard cannot start says exactly why (status, CLI, log once) and runs VMs and links all the same', async t => {
  const grid = await Grid.start(t, { hosts: [{ name: 'h1', agent: false }], args: ['--no-mdns', '--capacity', 'cpu=2,mem=2G,disk=10G'] })
  const h1 = grid.host('h1')
  await h1.exec('ip', ['link', 'add', 'vgkprobe', 'type', 'wireguard'], { allowFail: true })
  if ((await h1.exec('ip', ['-o', 'link'])).includes('vgkprobe')) { t.pass('this machine has the kernel module: WireGuard can start'); return }
  h1.agent.opts.env = { ...h1.agent.opts.env, [WIREGUARD_GO_ENV]: 'none' }
  await h1.start()

  // ready, and saying why the overlay is down, exactly
  const st = await h1.status()
  t.false(st.health.ok)
  const problem = st.health.problems.find(p => p.service === 'lcm')
  t.is(problem?.cause, 'overlay-down', JSON.stringify(st.health))
  t.regex(problem!.message, CAUSE)
  const cliStatus = await h1.vgrid(['status', '--json'])
  t.is(cliStatus.code, 0, cliStatus.stderr)
  t.deepEqual((JSON.parse(cliStatus.stdout) as StatusView).health.problems.find(p => p.service === 'lcm'), problem)
  const statusText = (await h1.vgrid(['status'])).stdout
  t.regex(statusText, /^health {3}degraded: 1 problem\(s\)$/m)
  t.truthy(problem!.since, 'the problem says since when')
  t.true(statusText.includes(`  lcm overlay-down since ${problem!.since!}: ${problem!.message}`), statusText)
  const net = await h1.vgrid(['net'])
  t.is(net.code, 0, net.stderr)
  t.true(net.stdout.includes(`WireGuard is not running: ${problem!.message}`), net.stdout)
  t.truthy((await h1.api<NetView>('/v1/net')).status.publicKey, 'the keypair is made all the same')
  t.true(h1.agent.log.includes(`${LOGGED}${JSON.stringify(problem!.message)}`), 'the log says exactly that')
  t.regex(h1.agent.log, /agent started/)
  const self = (await h1.nodes()).find(n => n.self)
  t.is(self?.wireguard, null, 'no tunnel advertised')
  // no tunnel: the VM range is unreachable, not sent in clear along the default route
  const vmRange = (await h1.api<NetView>('/v1/net')).status.prefix.vmV4
  t.regex(await h1.exec('ip', ['route', 'show', vmRange]), /^unreachable /m)

  // everything else runs: VMs (state writes, the process driver), links, their rules
  const vm = (name: string, command: string[], terminals: { inputs?: string[], outputs?: string[] }): object => ({ name, driver: 'process', cpu: 0.25, memory: '96M', command, ...terminals })
  await h1.api('/v1/vms', 'POST', vm('db', [nodeBin(), '-e', ECHO, '5432', '6000'], { inputs: ['in'] }))
  await h1.api('/v1/vms', 'POST', vm('web', ['/bin/sleep', '100000'], { outputs: ['db'] }))
  const [db, web] = [await running(h1, 'db'), await running(h1, 'web')]
  t.truthy(db.address, 'db has its overlay address')
  const made = await h1.vgrid(['link', 'create', 'web.db', 'db.in', '--protocol', 'tcp', '--port', '5432', '--json'])
  t.is(made.code, 0, made.stderr)
  const link = JSON.parse(made.stdout) as LinkView
  const webNs = web.runtime!.network!.netns!
  await until('web to reach db:5432 by its terminal name', 20_000, async () => await exchange(webNs, 'tcp', 'db', 5432) || undefined)
  t.false(await exchange(webNs, 'tcp', db.address!, 6000), 'an undeclared port is dropped')
  t.deepEqual((await h1.api<{ links: LinkView[] }>('/v1/links')).links.map(l => l.id), [link.id])

  // tried again by itself meanwhile (after 1 s, 2 s, 4 s, ...): still down, and said once
  const FAILURES = 'vgrid_lcm_wireguard_start_failures_total'
  await until('three tries to start WireGuard', 30_000, async () => await h1.metric(FAILURES) >= 3 || undefined)
  t.regex((await h1.status()).health.problems.find(p => p.service === 'lcm')?.message ?? '', CAUSE)
  t.is(h1.agent.log.split('\n').filter(l => l.includes(LOGGED)).length, 1, 'said once, not on every try')
})

e2e('a node joining a grid whose only node has no overlay takes over its VMs with connections, says the other is down, and their link carries traffic there', async t => {
  const grid = await Grid.start(t, { hosts: [{ name: 'h1', agent: false }, { name: 'h2', agent: false }], args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  const [h1, h2] = [grid.host('h1'), grid.host('h2')]
  await h1.exec('ip', ['link', 'add', 'vgkprobe', 'type', 'wireguard'], { allowFail: true })
  if ((await h1.exec('ip', ['-o', 'link'])).includes('vgkprobe')) { t.pass('this machine has the kernel module: WireGuard can start'); return }
  h1.agent.opts.env = { ...h1.agent.opts.env, [WIREGUARD_GO_ENV]: 'none' }
  await h1.start()
  const vm = (name: string, command: string[], terminals: { inputs?: string[], outputs?: string[] } = {}): object => ({ name, driver: 'process', cpu: 0.25, memory: '96M', command, ...terminals })
  await h1.api('/v1/vms', 'POST', vm('db', [nodeBin(), '-e', ECHO, '5432'], { inputs: ['in'] }))
  await h1.api('/v1/vms', 'POST', vm('web', ['/bin/sleep', '100000'], { outputs: ['db'] }))
  await h1.api('/v1/vms', 'POST', vm('batch', ['/bin/sleep', '100000']))
  for (const name of ['db', 'web', 'batch']) await running(h1, name)
  t.is((await h1.vgrid(['link', 'create', 'web.db', 'db.in', '--protocol', 'tcp', '--port', '5432'])).code, 0)

  // h2 (its overlay up) joins: its health names h1, and the linked VMs move to it
  await h2.start()
  await grid.waitAllAlive(30_000)
  const said = await until('h2 to say h1\'s overlay is down', 30_000, async () => (await h2.status()).health.problems.find(p => p.cause === 'members-overlay-down'))
  t.is(said.service, 'lcm')
  t.regex(said.message, /^the overlay \(WireGuard\) of 1 member\(s\) is down: h1 \(WireGuard cannot start: .+\); the connections of their VMs/)
  const moved = await until('db and web to run on h2', 120_000, async () => {
    const [db, web] = [await h2.api<VmDetail>('/v1/vms/db'), await h2.api<VmDetail>('/v1/vms/web')]
    return db.node === 'h2' && web.node === 'h2' && db.state === 'running' && web.state === 'running' && db.runtime?.state === 'running' && web.runtime?.state === 'running' ? { db, web } : undefined
  })
  t.true(moved.db.history.some(e => e.node === 'h1' && /^stopped on h1: this node's overlay has been down for \d+ s \(WireGuard cannot start: .+\): its connections carry nothing here; moved to a node whose overlay is up \(h2 ranks best\)$/.test(e.detail ?? '')), JSON.stringify(moved.db.history))
  t.is((await h1.api<VmDetail>('/v1/vms/batch')).node, 'h1', 'a VM without connections stays')
  const webNs = moved.web.runtime!.network!.netns!
  await until('web to reach db:5432 on h2 by its terminal name', 20_000, async () => await exchange(webNs, 'tcp', 'db', 5432) || undefined)
})

e2e('a second agent with the overlay in a host\'s namespace is refused before it joins the grid: no member of it anywhere, the first one untouched', async t => {
  const grid = await Grid.start(t, { hosts: ['h1'], args: ['--capacity', 'cpu=2,mem=2G,disk=10G'] })
  const h1 = grid.host('h1')
  const token = (await h1.vgrid(['token'])).stdout.trim()
  const dir = join(h1.dir, 'second')
  const second = await h1.vgrid(['agent', '--data-dir', dir, '--name', 'intruder', '--token', token, '--wg-port', '51821', '--api', '127.0.0.1:7499', '--listen', '/ip4/0.0.0.0/tcp/7498'], 60_000)
  t.is(second.code, 1, second.stderr)
  t.regex(second.stderr, /^vgrid: another vgrid agent runs the overlay in this network namespace: one per namespace .*start this one with --no-overlay\n$/)
  t.false(second.stderr.includes('member alive'), 'it never joined')
  await new Promise(resolve => setTimeout(resolve, 3000))
  t.deepEqual((await h1.nodes()).map(n => n.name), ['h1'], 'no member of it on the first agent')
  t.is((await h1.api<NetView>('/v1/net')).status.error, null, 'the first agent\'s overlay is up')
})
