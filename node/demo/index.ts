// `vgrid demo`: a grid of N hosts on this machine, each a network namespace on a
// bridge (node/netns, the same plumbing the e2e tests use) running a real agent.
// Each agent's API is made reachable from this shell at 127.0.0.1:PORT: a listener
// here pipes into a unix socket served by a small bridge inside the host's
// namespace. So the root namespace gets no interface, route or address, and
// `VGRID_API=127.0.0.1:PORT vgrid status` works as on a real server.
// The demo runs in the foreground; Ctrl-C, SIGTERM or `vgrid demo --stop` remove
// everything it made. Anything that fails half-way is undone the same way.
import { createServer, connect, type Server } from 'node:net'
import { AdminCache, readSocketTable, uidOfClient } from '../api/access.ts'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { checkSupport, sleep } from '../netns/netns.ts'
import { Topology } from '../netns/topology.ts'
import { ApiBridge, NsAgent, apiRequest } from '../netns/processes.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { writeClusterKey } from '../cluster-key-store.ts'
import { claimState, demoNamespaces, removeDemo, stopDemo, writeState, DEMO_DIR, PREFIX, type DemoState } from './state.ts'
import { controlHandler, serveControl } from './control.ts'

/** the running demo's control socket (`vgrid demo --kill|--start|--cut|--heal HOST`) */
export const CONTROL_SOCKET = join(DEMO_DIR, 'control.sock')

export { stopDemo }

export const MIN_HOSTS = 1
export const MAX_HOSTS = 8
/** first port tried for host1's API on this machine's loopback */
const BASE_PORT = 7411

export class DemoError extends Error {
  override name = 'DemoError'
}

export interface DemoOptions {
  hosts: number
  /** where lines for the user go (default stdout) */
  say?: (line: string) => void
}

interface DemoHost { name: string, agent: NsAgent, bridge: ApiBridge, readBridge: ApiBridge, server?: Server, api: string, address: string }

/** Checks that run before anything is made; each says how to fix what it finds. */
export async function preflight (hosts: number, say: (line: string) => void): Promise<void> {
  if (!Number.isInteger(hosts) || hosts < MIN_HOSTS || hosts > MAX_HOSTS) {
    throw new DemoError(`--hosts must be a whole number from ${MIN_HOSTS} to ${MAX_HOSTS}, got ${hosts}`)
  }
  const s = checkSupport()
  if (!s.ok) throw new DemoError(`the demo cannot run here: ${s.reason}`)
  let claim = claimState()
  if (claim === 'stale') {
    say(`found leftovers of an earlier demo that did not clean up; removing them first`)
    await removeDemo(say)
    claim = claimState()
  }
  if (claim === 'stale') throw new DemoError(`could not take ${DEMO_DIR}/state.json; remove it with: vgrid demo --stop`)
  if (!claim.ok) {
    throw new DemoError(`a demo is already running (pid ${claim.running.pid}, since ${claim.running.started}); ` +
      'use it, or stop it with: vgrid demo --stop')
  }
  const strays = await demoNamespaces()
  if (strays.length > 0) {
    say(`found namespaces of an earlier demo (${strays.join(' ')}); removing them first`)
    await removeDemo(say)
    claimState()
  }
}

/**
 * Listens on 127.0.0.1, preferring `port`, and pipes each connection into
 * `adminSocket` if its user may change the grid (root, the vgrid group: the same
 * check as the agent's, by the kernel's socket table), else into `readSocket`, whose
 * bridge the agent sees as an ordinary user: the demo gives no one more than the
 * agent itself would.
 */
async function forward (port: number, adminSocket: string, readSocket: string): Promise<Server> {
  const admins = new AdminCache()
  const server = createServer(c => {
    const uid = uidOfClient(readSocketTable(), { address: c.remoteAddress ?? '', port: c.remotePort ?? 0 }, { address: c.localAddress ?? '', port: c.localPort ?? 0 })
    const u = connect(uid != null && admins.isAdmin(uid) ? adminSocket : readSocket)
    c.pipe(u).pipe(c)
    const close = (): void => { c.destroy(); u.destroy() }
    for (const s of [c, u]) s.on('error', close)
    c.on('close', close)
    // the bridge's side ended: what it sent still goes out (destroy would drop it: bb46's
    // "no agent answers" became a reset), then the end; the caller's side, unpiped and so
    // paused, is read on to its end, or its socket stays open (rv45)
    u.on('close', () => { c.end(); c.resume(); setTimeout(() => c.destroy(), 10_000).unref() })
  })
  const listen = async (p: number): Promise<void> => await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(p, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  // a port taken by something else: let the kernel pick one
  await listen(port).catch(async () => { await listen(0) })
  return server
}

export async function runDemo (opts: DemoOptions): Promise<void> {
  // whoever read our output may be gone (terminal closed, parent killed): a write
  // error must not end the demo before it has removed what it made
  for (const s of [process.stdout, process.stderr]) s.on('error', () => {})
  const say = opts.say ?? ((l: string) => { process.stdout.write(l + '\n') })
  const ac = new AbortController()
  let signals = 0
  const onSignal = (sig: string): void => {
    signals++
    if (signals === 1) {
      say(`\n${sig}: stopping the demo and removing everything it made...`)
      ac.abort(new DemoError(`interrupted by ${sig}`))
    } else {
      say(`${sig} again: still cleaning up, one moment`)
    }
  }
  // installed before anything exists, so an interrupt during setup also cleans up
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGHUP', () => onSignal('SIGHUP'))

  await preflight(opts.hosts, say)
  const hosts: DemoHost[] = []
  let topo: Topology | undefined
  let control: Server | undefined
  let failure: unknown
  try {
    topo = await Topology.create({ prefix: PREFIX })
    ac.signal.throwIfAborted()
    const keyFile = join(DEMO_DIR, 'cluster.key')
    await writeClusterKey(keyFile, generateClusterKey())
    for (let i = 1; i <= opts.hosts; i++) {
      const name = `host${i}`
      const net = await topo.addHost(name)
      ac.signal.throwIfAborted()
      const dir = join(DEMO_DIR, name)
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const bridge = new ApiBridge(net.ns, join(dir, 'api.sock'))
      await bridge.start()
      const readBridge = new ApiBridge(net.ns, join(dir, 'api-read.sock'), undefined, { unprivileged: true })
      await readBridge.start()
      const agent = new NsAgent({
        name, ns: net.ns, dataDir: join(dir, 'data'), bridge, logFile: join(dir, 'agent.log'), memoryLog: false, args: ['--key', keyFile]
      })
      hosts.push({ name, agent, bridge, readBridge, api: '', address: net.address })
    }
    // every agent starts at once: they find each other by mDNS, as real servers on a LAN would
    const launchedAt = Date.now()
    await Promise.all(hosts.map(async h => {
      await h.agent.start(30_000, ac.signal).catch((err: unknown) => {
        if (ac.signal.aborted) throw ac.signal.reason
        throw new DemoError(`the agent of ${h.name} did not start: ${(err as Error).message.trim()}`)
      })
    }))
    for (const [i, h] of hosts.entries()) {
      h.server = await forward(BASE_PORT + i, h.bridge.socketPath, h.readBridge.socketPath)
      const a = h.server.address()
      h.api = `127.0.0.1:${typeof a === 'object' && a != null ? a.port : 0}`
    }
    const state: DemoState = { pid: process.pid, started: new Date().toISOString(), hosts: hosts.map(h => ({ name: h.name, ns: `${PREFIX}-${h.name}`, address: h.address, api: h.api })) }
    writeState(state)
    const formedMs = await waitFormed(hosts, ac.signal, launchedAt)

    say(`vgrid demo: ${hosts.length} host(s) on this machine, each a network namespace (${PREFIX}-host1...) on one bridge, subnet ${topo.subnet}.0/24`)
    for (const h of hosts) say(`${h.name} ${h.api}`)
    say(formedMs == null
      ? 'warning: the hosts have not all seen each other yet; check the agent logs'
      : `the grid formed by mDNS: every host sees all ${hosts.length} alive ${(formedMs / 1000).toFixed(1)} s after the agents were launched`)
    say('')
    say(`try:   VGRID_API=${hosts[0]!.api} vgrid status`)
    say(`       VGRID_API=${hosts[0]!.api} vgrid nodes`)
    say(`logs:  ${DEMO_DIR}/HOST/agent.log     shell on a host: nsenter --net=/run/netns/${PREFIX}-host1 bash`)
    say('fail:  vgrid demo --kill host2 [--signal SIGKILL|SIGTERM|SIGINT|SIGSTOP|SIGCONT], --start host2, --cut host2 [--from host1], --heal host2')
    say('stop:  Ctrl-C here, or `vgrid demo --stop` from another shell (both remove everything)')

    const watch = (h: DemoHost): void => {
      h.agent.proc?.once('exit', (code, sig) => {
        if (!ac.signal.aborted) say(`${h.name}: its agent exited (${sig ?? code}); see ${join(DEMO_DIR, h.name, 'agent.log')}`)
      })
    }
    for (const h of hosts) watch(h)
    const network = topo
    control = await serveControl(CONTROL_SOCKET, controlHandler({
      hosts,
      network: { cut: async (name, o) => { await network.cut(name, o) }, heal: async name => { await network.heal(name) }, isCut: name => network.host(name).cut != null, cutFrom: name => network.cutFrom(name) },
      started: name => {
        const h = hosts.find(x => x.name === name)
        if (h != null) { watch(h); say(`${name}: its agent started again (pid ${String(h.agent.pid)})`) }
      }
    }))
    await new Promise<void>(resolve => ac.signal.addEventListener('abort', () => resolve(), { once: true }))
  } catch (err) {
    failure = err
  }
  // the one way out: stop agents (gracefully, briefly), close listeners, remove namespaces and files
  control?.close()
  for (const h of hosts) h.server?.close()
  // a frozen agent (--kill --signal SIGSTOP) takes its SIGINT only once resumed
  for (const h of hosts) if (h.agent.running && h.agent.pid != null) { try { process.kill(h.agent.pid, 'SIGCONT') } catch {} }
  // SIGINT: each host leaves (its VMs stop); SIGTERM would leave them to the watchdog
  await Promise.all(hosts.map(async h => { await h.agent.kill('SIGINT', 3000); h.agent.closeLog() }))
  await Promise.all(hosts.flatMap(h => [h.bridge, h.readBridge]).map(async b => await b.kill('SIGTERM', 1000)))
  await topo?.destroy(1000)
  await removeDemo(() => {})
  if (failure != null && !(ac.signal.aborted && failure === ac.signal.reason)) {
    throw failure instanceof DemoError ? failure : new DemoError(`the demo failed and was removed: ${(failure as Error).message}`)
  }
  say('demo stopped; everything it made is removed')
}

/** Until every host sees all hosts alive; undefined if that takes longer than 20 s. */
/** ms from `since` (the agents' launch) until every host sees all alive; undefined if not within 20 s of now */
async function waitFormed (hosts: DemoHost[], signal: AbortSignal, since: number): Promise<number | undefined> {
  const start = Date.now()
  while (Date.now() - start < 20_000) {
    signal.throwIfAborted()
    const ok = await Promise.all(hosts.map(async h => {
      const r = await apiRequest(h.bridge.socketPath, 'GET', '/v1/status', undefined, 2000).catch(() => undefined)
      return r?.status === 200 && (JSON.parse(r.text) as { members: { alive: number } }).members.alive === hosts.length
    }))
    if (ok.every(Boolean)) return Date.now() - since
    await sleep(200)
  }
  return undefined
}
