// Declared connections between VMs that DVMM runs, across real agents in network
// namespaces: the LCM gives each VM its overlay address and terminal names, routes
// it on its holder, carries it to other hosts through WireGuard and lets exactly the
// declared flows through. Checked from inside the VMs' own namespaces (`ip netns exec`
// shows the VM's own /etc/hosts, as the VM sees it).
import { nodeBin } from '../../node/netns/processes.ts'
import { nsRun } from '../../node/netns/netns.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import type { LinkView } from '../../node/lcm/links.ts'
import type { NetView } from '../../node/lcm/routes.ts'
import { e2e, Grid, guestImage, secs, type Host } from '../harness/index.ts'
import { until } from '../harness/vm-runs.ts'
import { exchange, tcpStream } from '../lcm/tcp.ts'

// the echo server of test/lcm/tcp.ts, as a VM's program
const ECHO = "const net = require('node:net'); for (const p of process.argv.slice(1)) net.createServer(s => s.pipe(s)).listen(Number(p), '0.0.0.0'); console.log('echo ready')"


/** The VM as its holder shows it, once it runs (asked through h1, never killed here): its runtime has the namespace and address. */
async function running (grid: Grid, vm: string, ms = 60_000, notOn?: string): Promise<VmDetail & { holder: Host }> {
  return await until(`${vm} to run${notOn != null ? ` elsewhere than ${notOn}` : ''}`, ms, async () => {
    const row = await grid.host('h1').api<VmDetail>(`/v1/vms/${vm}`)
    if (row.state !== 'running' || row.node == null || row.node === notOn) return undefined
    const holder = grid.host(row.node)
    const d = await holder.api<VmDetail>(`/v1/vms/${vm}`)
    return d.runtime?.state === 'running' ? { ...d, holder } : undefined
  })
}

const netnsOf = (d: VmDetail): string => d.runtime!.network!.netns!

e2e('process VMs on different hosts talk over a declared link by terminal name; everything else is dropped and counted; the link survives an address change and a move', async t => {
  const grid = await Grid.start(t, {
    hosts: [{ name: 'h1', args: ['--label', 'role=web'] }, { name: 'h2', args: ['--label', 'role=db'] }, { name: 'h3', args: ['--label', 'role=db'] }],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  await grid.waitAllAlive(20_000)
  const h1 = grid.host('h1')
  // every node says how it runs VMs (vgrid nodes' VM HOST column)
  const hostsSay = await until('every node to advertise its VM host probe', 30_000, async () => { const n = await h1.nodes(); return n.every(x => x.vmHost != null) ? n : undefined })
  for (const n of hostsSay) {
    t.true(['v1', 'v2'].includes(n.vmHost!.cgroup), `${n.name}: cgroup ${n.vmHost!.cgroup}`)
    t.true(n.vmHost!.accel === 'kvm' || n.vmHost!.accel === 'tcg', `${n.name}: accel ${String(n.vmHost!.accel)}`)
    t.true(n.vmHost!.drivers.includes('process'))
  }
  t.log(`VM hosts: ${hostsSay.map(n => `${n.name} ${n.vmHost!.accel ?? '-'} cgroup-${n.vmHost!.cgroup} ${n.vmHost!.drivers.join('+')}`).join(', ')}`)
  const vm = (name: string, role: string, command: string[], terminals: { inputs?: string[], outputs?: string[] }) => ({ name, driver: 'process', cpu: 0.25, memory: '96M', constraints: { role }, command, ...terminals })
  await h1.api('/v1/vms', 'POST', vm('db', 'db', [nodeBin(), '-e', ECHO, '5432', '6000'], { inputs: ['in'] }))
  await h1.api('/v1/vms', 'POST', vm('web', 'web', ['/bin/sleep', '100000'], { outputs: ['db'] }))
  await h1.api('/v1/vms', 'POST', vm('other', 'web', ['/bin/sleep', '100000'], { outputs: ['db'] }))
  const [db, web, other] = [await running(grid, 'db'), await running(grid, 'web'), await running(grid, 'other')]
  t.log(`db on ${db.node} at ${db.address}, web on ${web.node} at ${web.address}, other on ${other.node} at ${other.address}`)
  t.truthy(db.address)
  t.is(db.runtime?.network?.overlayAddress, db.address!, 'the VM holds its overlay address')

  // through the CLI, as an operator would: a terminal db does not have is refused, naming what it has
  const bad = await h1.vgrid(['link', 'create', 'web.db', 'db.nope', '--protocol', 'tcp', '--port', '5432'])
  t.not(bad.code, 0)
  t.regex(bad.stderr, /VM "db" has no input terminal "nope" \(its inputs: in\)/)
  // the link is made after web started: web's /etc/hosts learns the name
  const made = Date.now()
  const created = await h1.vgrid(['link', 'create', 'web.db', 'db.in', '--protocol', 'tcp', '--port', '5432', '--json'])
  t.is(created.code, 0, created.stderr)
  const link = JSON.parse(created.stdout) as LinkView
  t.is(link.to.address, db.address)
  await until('web to reach db:5432 by its terminal name', 20_000, async () => await exchange(netnsOf(web), 'tcp', 'db', 5432) || undefined)
  t.log(`link carried traffic ${secs(Date.now() - made)} after it was made`)
  const hosts = await nsRun(web.holder.ns, 'ip', ['netns', 'exec', netnsOf(web), 'cat', '/etc/hosts'])
  t.regex(hosts, new RegExp(`^${db.address!.replace(/\./g, '\\.')}\\tdb$`, 'm'))

  // undeclared: another port of the same pair, and a VM with no link at all
  t.false(await exchange(netnsOf(web), 'tcp', db.address!, 6000), 'an undeclared port is dropped')
  t.false(await exchange(netnsOf(other), 'tcp', db.address!, 5432), 'a VM without a link cannot reach db')
  const drops = (await h1.api<NetView>('/v1/net')).drops
  t.log(`drops on h1: ${JSON.stringify(drops)}`)
  t.true(drops.some(d => d.srcVm === 'web' && d.dstVm === 'db' && d.packets > 0), 'the web -> db:6000 drop is counted with its source and destination')
  t.true(drops.some(d => d.srcVm === 'other' && d.dstVm === 'db' && d.packets > 0), 'and the other -> db one')
  // sent from web's link address (its end of the /30 to h1: the same few addresses on
  // every node, which named no VM): counted as web's, from that address
  const webLink = web.runtime!.network!.vmAddress
  await nsRun(web.holder.ns, 'ip', ['netns', 'exec', netnsOf(web), 'busybox', 'ping', '-c', '1', '-W', '1', '-I', webLink, db.address!]).catch(() => '')
  const fromLink = (await h1.api<NetView>('/v1/net')).drops.find(d => d.src === webLink)
  t.is(fromLink?.srcLink, 'web', `a drop from web's link address ${webLink} names web: ${JSON.stringify(fromLink)}`)
  t.is(fromLink?.dstVm, 'db')
  const shown = await h1.api<LinkView>(`/v1/links/${link.id}`)
  t.true(shown.packets > 0, 'the link counts what it let through')
  // asked on a node that holds neither end: the counts of web's node, not its own zero
  const third = grid.list.find(h => h.name !== web.node && h.name !== db.node)!
  const elsewhere = await third.api<LinkView>(`/v1/links/${link.id}`)
  t.is(elsewhere.path, 'elsewhere')
  t.like(elsewhere.counts, { name: 'h1', error: null })
  t.true(elsewhere.packets >= shown.packets, `${third.name} shows h1's count: ${elsewhere.packets} >= ${shown.packets}`)
  t.is(shown.tunnel?.node, db.nodeId ?? undefined, 'carried by the tunnel to db\'s host')
  // vgrid link ls and vgrid net, as the operator reads them
  const ls = await h1.vgrid(['link', 'ls'])
  t.is(ls.code, 0, ls.stderr)
  t.regex(ls.stdout, new RegExp(`${link.id}.*web\\.db@${web.holder.name}.*db\\.in@${db.node}`), 'ends by node name')
  // and under each of its VMs (bb42: vm show listed no links)
  for (const name of ['web', 'db']) {
    const show = await h1.vgrid(['vm', 'show', name])
    t.is(show.code, 0, show.stderr)
    t.regex(show.stdout, new RegExp(`^ {2}links:\\n {4}${link.id} web\\.db@${web.holder.name} -> db\\.in@${db.node} tcp port 5432`, 'm'), show.stdout)
  }
  const net = await web.holder.vgrid(['net', '--json'])
  t.is(net.code, 0, net.stderr)
  const peer = (JSON.parse(net.stdout) as NetView).peers.find(p => p.node === db.nodeId)
  t.truthy(peer?.endpoint, 'the tunnel peer to db\'s host has an endpoint')
  t.truthy(peer?.latestHandshake, 'and a handshake')
  t.true((peer?.rxBytes ?? 0) > 0 && (peer?.txBytes ?? 0) > 0, 'and carried bytes both ways')
  const netText = await web.holder.vgrid(['net'])
  t.is(netText.code, 0, netText.stderr)
  t.true(netText.stdout.includes(peer!.endpoint!), `vgrid net shows the peer's endpoint:\n${netText.stdout}`)

  // a host that is not a member (no agent, no key) routes to db's host directly: dropped there
  const outsider = await grid.addHost({ name: 'x1', agent: false })
  const vmPrefix = (await h1.api<NetView>('/v1/net')).status.prefix.vmV4
  await nsRun(outsider.ns, 'ip', ['route', 'replace', vmPrefix, 'via', db.holder.address])
  t.false(await exchange(outsider.ns, 'tcp', db.address!, 5432), 'a non-member reaches no VM')
  // nor does an agent of another grid (another key): not a member, so no WireGuard peer of ours either
  const stranger = await grid.addHost({ name: 'x2', key: 'other' })
  await nsRun(stranger.ns, 'ip', ['route', 'replace', vmPrefix, 'via', db.holder.address])
  t.false(await exchange(stranger.ns, 'tcp', db.address!, 5432), 'an agent of another grid reaches no VM')
  t.false((await db.holder.api<NetView>('/v1/net')).peers.some(p => p.name === 'x2'), 'and is no peer of the grid\'s tunnels')

  // web's host changes its address while a TCP stream runs through the link
  const stream = tcpStream(netnsOf(web), 'db', 5432, 8000)
  await new Promise(resolve => setTimeout(resolve, 2000))
  const moved = await grid.changeAddress(web.holder.name)
  const s = await stream
  t.log(`address change of ${web.holder.name} to ${moved}: ${s.echoes}/${s.sent} echoes, longest gap ${s.maxGapMs} ms, error ${String(s.error)}`)
  t.is(s.error, null, 'no reset')
  t.true(s.echoes >= s.sent - 1, 'every line came back')
  // the tunnel follows the new address at the moved side's next packet; a fresh-clone CI
  // on a loaded 2-core machine saw 3.4 s once (2 s was the bound): what counts is no reset
  // and no line lost, and a gap of seconds, not the minutes of a handshake timeout
  t.true(s.maxGapMs <= 5000, `gap ${s.maxGapMs} ms`)

  // a partial partition: web's host and db's new host cut from each other on the
  // underlay, both still reaching the third (membership keeps both alive): nothing
  // passes on the link, and web's host says so within about half a minute
  // (tunnel-health.ts: 32 s of nothing received, checked every 5 s)
  type Problem = { cause: string, message: string }
  const problems = async (h: Host): Promise<Problem[]> => (await h.api<{ health: { problems: Problem[] } }>('/v1/status')).health.problems
  // the third host (the other db host) drained first: db cannot move off the cut yet
  const drained = await h1.vgrid(['node', 'drain', third.name])
  t.is(drained.code, 0, drained.stderr)
  await grid.cut(db.holder.name, { from: [web.holder.name] })
  const cutAt = Date.now()
  // (with WireGuard's usual 25 s keepalive it took 62-82 s)
  // membership holds everyone alive meanwhile: the third host vouches for each side
  // (protocol/indirect-probe.ts), where before both were declared dead for seconds at
  // a time, everywhere, and the tunnel was taken down and set up again each time
  const doubted = new Set<string>()
  let outOfReach: { ms: number, message: string } | undefined
  const down = await until(`${web.holder.name} to report the tunnel to ${db.holder.name} down`, 60_000, async () => {
    for (const [at, v] of Object.entries(await grid.views(['h1', 'h2', 'h3']))) {
      if (typeof v !== 'string') for (const [who, state] of Object.entries(v)) if (state !== 'alive') doubted.add(`${at} held ${who} ${state}`)
    }
    const now = await problems(web.holder)
    const o = now.find(p => p.cause === 'members-out-of-reach')
    if (o != null) outOfReach ??= { ms: Date.now() - cutAt, message: o.message }
    return now.find(p => p.cause === 'tunnel-down')
  })
  const tookMs = Date.now() - cutAt
  // membership says it first: the watcher's silence, vouched for by the third host
  t.log(`members-out-of-reach reported ${outOfReach == null ? 'never' : secs(outOfReach.ms)} after the cut: ${outOfReach?.message ?? ''}`)
  t.regex(outOfReach?.message ?? '', new RegExp(`^this server cannot reach ${db.holder.name} \\(for \\d+ s; h\\d reaches it\\)`))
  t.log(`tunnel-down reported ${secs(tookMs)} after the cut: ${down.message}`)
  t.regex(down.message, new RegExp(`^tunnel to ${db.holder.name} is down: .*web\\.db -> db\\.in`))
  t.false(await exchange(netnsOf(web), 'tcp', 'db', 5432), 'nothing passes meanwhile')
  // and the host that holds neither end says so too, in web's host's words
  const far = await third.api<LinkView>(`/v1/links/${link.id}`)
  t.like(far, { path: 'elsewhere', counts: { name: web.holder.name } })
  t.regex(far.counts.tunnelDown ?? '', /no WireGuard handshake|nothing received/, `${third.name} shows the tunnel down: ${JSON.stringify(far.counts)}`)
  t.deepEqual([...doubted], [], 'every host held every other alive through the cut')
  // the third host back: db moves off the cut to it, which reaches both ends, and the
  // link carries again while the cut lasts (bb42: broken until the cut healed)
  const undrained = await h1.vgrid(['node', 'undrain', third.name])
  t.is(undrained.code, 0, undrained.stderr)
  const undrainedAt = Date.now()
  const db2 = await running(grid, 'db', 60_000, db.node!)
  t.is(db2.node, third.name)
  t.is(db2.address, db.address, 'the same overlay address after the move')
  const why = db2.history.find(e => e.node === db.node && /partial cut/.test(e.detail ?? ''))?.detail ?? ''
  t.regex(why, new RegExp(`^stopped on ${db.node}: this node has not reached ${web.holder.name}, where web runs, for \\d+ s while others do \\(a partial cut\\): their link carries nothing; moved to a node that reaches both \\(${third.name} ranks best\\)$`), JSON.stringify(db2.history))
  await until('web to reach db across the cut', 30_000, async () => await exchange(netnsOf(web), 'tcp', 'db', 5432) || undefined)
  t.log(`db moved off the cut to ${db2.node} and the link carried traffic ${secs(Date.now() - undrainedAt)} after ${third.name} was undrained`)
  await grid.heal(db.holder.name)
  await until('the tunnel-down and out-of-reach problems to clear after the heal', 30_000, async () =>
    !(await problems(web.holder)).some(p => p.cause === 'tunnel-down' || p.cause === 'members-out-of-reach') || undefined)
  await until('web to reach db still after the heal', 20_000, async () => await exchange(netnsOf(web), 'tcp', 'db', 5432) || undefined)

  // db's holder dies: db runs again on the other db host, at the same address, and web reaches it by the same name
  await db2.holder.kill()
  const killed = Date.now()
  t.log(`killed ${db2.holder.name} at ${new Date(killed).toISOString()}`)
  // within 30 s as h1 sees it: h1 moved, and its peers' connections to its old address
  // must not swallow the news of the death (they did, for a keep-alive's 30 s)
  const db3 = await running(grid, 'db', 30_000, db2.node!)
  const upAt = Date.now()
  t.is(db3.address, db.address, 'the same overlay address after the move')
  await until('web to reach the moved db', 20_000, async () => await exchange(netnsOf(web), 'tcp', 'db', 5432) || undefined)
  t.log(`db ran on ${db3.node} ${secs(upAt - killed)} after its holder was killed; the link carried traffic ${secs(Date.now() - upAt)} after that`)
  t.log(db3.history.map(e => `${e.at} ${e.event} ${e.node ?? ''} ${e.detail ?? ''}`).join('\n'))

  // the link removed through the CLI: the flow is dropped again
  const rm = await h1.vgrid(['link', 'rm', link.id])
  t.is(rm.code, 0, rm.stderr)
  await until('the removed link to stop carrying traffic', 20_000, async () => !(await exchange(netnsOf(web), 'tcp', db.address!, 5432)) || undefined)
  t.deepEqual((await h1.api<{ links: LinkView[] }>('/v1/links')).links, [])
})

e2e('a process VM reaches a qemu guest on another host by its terminal name', async t => {
  const image = guestImage(t)
  if (image == null) return
  const grid = await Grid.start(t, {
    hosts: [{ name: 'h1', args: ['--label', 'role=web'] }, { name: 'h2', args: ['--label', 'role=guest'] }],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  await grid.waitAllAlive(20_000)
  const h1 = grid.host('h1')
  // both made stopped, so that the links exist before either boots: the guest takes its
  // terminal names from its kernel command line at boot, and later ones from its names port
  await h1.api('/v1/vms', 'POST', { name: 'site', driver: 'qemu', cpu: 1, memory: '128M', constraints: { role: 'guest' }, kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline, inputs: ['http'], outputs: ['back'], desired: 'stopped' })
  await h1.api('/v1/vms', 'POST', { name: 'client', driver: 'process', cpu: 0.25, memory: '64M', constraints: { role: 'web' }, command: ['/bin/sleep', '100000'], inputs: ['in'], outputs: ['www'], desired: 'stopped' })
  await h1.api('/v1/links', 'POST', { from: 'client.www', to: 'site.http', protocol: 'tcp', port: 80 })
  await h1.api('/v1/links', 'POST', { from: 'site.back', to: 'client.in', protocol: 'tcp', port: 7000 })
  for (const v of ['site', 'client']) await h1.api(`/v1/vms/${v}/start`, 'POST')
  const [site, client] = [await running(grid, 'site', 120_000), await running(grid, 'client')]
  t.is(site.runtime?.network?.overlayAddress, site.address!)
  const page = await until('the guest\'s page through the link', 90_000, async () => {
    const out = await nsRun(client.holder.ns, 'ip', ['netns', 'exec', netnsOf(client), 'curl', '-s', '-m', '3', 'http://www/'], { allowFail: true })
    return out.includes('vgrid guest') ? out : undefined
  })
  t.log(`client on ${client.node} got from site on ${site.node}: ${page.trim()}`)
  t.is(page.trim(), `vgrid guest site at ${site.address!}`, 'the guest answers from its overlay address')
  // the guest resolves its own terminal: its /etc/hosts, from the kernel command line, names the client
  const c = await site.holder.api<{ console: string }>(`/v1/vms/${site.id}/console`)
  t.true(c.console.includes('vgrid-guest: ready'), 'the guest\'s ready line')
  t.true(c.console.includes(`vgrid-guest: terminal back is ${client.address!}`), `the guest's terminal back resolves to the client (${client.address!}):\n${c.console}`)
  // a link removed and made again while the guest runs: its names follow, through its names port
  const consoleHas = async (text: string): Promise<true | undefined> => (await site.holder.api<{ console: string }>(`/v1/vms/${site.id}/console`)).console.includes(text) || undefined
  const back = (await h1.api<{ links: Array<{ id: string, from: { vm: string } }> }>('/v1/links')).links.find(l => l.from.vm === 'site')!
  await h1.api(`/v1/links/${back.id}`, 'DELETE')
  await until('the running guest to drop its terminal back', 30_000, async () => await consoleHas('vgrid-guest: terminals now none'))
  await h1.api('/v1/links', 'POST', { from: 'site.back', to: 'client.in', protocol: 'tcp', port: 7000 })
  await until('the running guest to learn its terminal back again', 30_000, async () => await consoleHas(`vgrid-guest: terminals now back=${client.address!}`))
})
