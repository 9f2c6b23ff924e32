// A grid of namespace hosts for e2e tests: each host is a network namespace on a
// shared bridge (node/netns/topology.ts) running a real `vgrid agent` with its own
// data dir, reached through its API bridge. The grid collects every agent's log,
// prints them when the test fails, and removes everything it made when the test
// ends, fails or the process is interrupted.
import { readFileSync, rmSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import { Topology, type NetHost } from '../../node/netns/topology.ts'
import { spawn } from 'node:child_process'
import { ApiBridge, NsAgent, VGRID } from '../../node/netns/processes.ts'
import { deleteNamespace, findStale, isAlive, linkNames, nsenterPath, nsRun, removeWireguardSockets, type RunOptions } from '../../node/netns/netns.ts'
import { generateClusterKey } from '../../protocol/cluster-key.ts'
import { writeClusterKey } from '../../node/cluster-key-store.ts'
import type { NodeView, StatusView } from '../../node/api/types.ts'
import { reapDataDir } from '../../node/dvmm/reap.ts'

/** Every namespace and temp dir of the harness starts with this, then the owner's PID. */
export const KIND = 'vgt'

export interface HostSpec {
  name: string
  /** which grid's key the agent gets: hosts with the same key group form one grid (default "grid") */
  key?: string
  /** start an agent on it (default true); false gives a bare host, e.g. for install.sh */
  agent?: boolean
  /** extra agent flags */
  args?: string[]
}

export interface GridOptions {
  /** a count (hosts h1..hN) or specs; default 3 */
  hosts?: number | Array<string | HostSpec>
  /** flags every agent gets */
  args?: string[]
}

export class Host {
  readonly grid: Grid
  readonly spec: HostSpec
  readonly net: NetHost
  readonly dir: string
  readonly bridge: ApiBridge
  readonly agent: NsAgent

  constructor (grid: Grid, spec: HostSpec, net: NetHost, dir: string, keyFile: string) {
    this.grid = grid
    this.spec = spec
    this.net = net
    this.dir = dir
    this.bridge = new ApiBridge(net.ns, join(dir, 'api.sock'))
    this.agent = new NsAgent({
      name: spec.name,
      ns: net.ns,
      dataDir: join(dir, 'data'),
      bridge: this.bridge,
      logFile: join(dir, 'agent.log'),
      args: ['--key', keyFile, ...grid.opts.args ?? [], ...spec.args ?? []]
    })
  }

  get name (): string { return this.spec.name }
  get ns (): string { return this.net.ns }
  get address (): string { return this.net.address }

  /** Runs a command inside this host's namespace. */
  async exec (cmd: string, args: string[], opts?: RunOptions): Promise<string> {
    return await nsRun(this.ns, cmd, args, opts)
  }

  /**
   * Runs `vgrid ARGS` inside this host's namespace against its agent's API (VGRID_API
   * set, so no default socket of this machine is used); resolves the exit code and
   * output, whatever the code (`vgrid ha` exits 1 when HA is not ok).
   */
  async vgrid (args: string[], timeoutMs = 30_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
    return await new Promise((resolve, reject) => {
      const p = spawn(nsenterPath(), [`--net=/run/netns/${this.ns}`, '--', VGRID, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, VGRID_API: `127.0.0.1:${this.bridge.port}` }
      })
      let stdout = ''
      let stderr = ''
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs)
      p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
      p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      p.on('error', err => { clearTimeout(timer); reject(err) })
      p.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    })
  }

  async api<T> (path: string, method = 'GET', body?: unknown): Promise<T> {
    const r = await this.bridge.request(method, path, body)
    if (r.status >= 400) throw new Error(`${this.name} ${method} ${path}: ${r.status} ${r.text}`)
    return (path === '/metrics' ? r.text : JSON.parse(r.text)) as T
  }

  async status (): Promise<StatusView> { return await this.api<StatusView>('/v1/status') }
  async nodes (): Promise<NodeView[]> { return (await this.api<{ nodes: NodeView[] }>('/v1/nodes')).nodes }

  /** Member name -> state, as this host sees it. */
  async view (): Promise<Record<string, string>> {
    return Object.fromEntries((await this.nodes()).map(n => [n.name, n.state]))
  }

  /** A metric's value (summed over series whose labels include `labels`). */
  async metric (name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await this.api<string>('/metrics')
    let sum = 0
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
      if (m == null || m[1] !== name) continue
      const have = m[2] ?? ''
      if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[3])
    }
    return sum
  }

  async start (): Promise<void> { await this.agent.start() }
  async stop (): Promise<void> { await this.agent.stop() }
  async kill (): Promise<void> { await this.agent.kill('SIGKILL') }
  async restart (): Promise<void> { await this.agent.restart() }

  /** the agent's data directory */
  get dataDir (): string { return join(this.dir, 'data') }

  /** how many times this host's VM watchdog fired (its record, dvmm/watchdog/fired.jsonl) */
  watchdogFired (): number {
    try {
      return readFileSync(join(this.dataDir, 'dvmm/watchdog/fired.jsonl'), 'utf8').split('\n').filter(l => l !== '').length
    } catch {
      return 0
    }
  }

  /**
   * SIGKILLs the agent right after it fed its VM watchdog, so the restart gets the
   * whole watchdog timeout, and starts it again; returns when it was killed.
   */
  async killAfterFeed (): Promise<number> {
    const feed = join(this.dataDir, 'dvmm/watchdog/feed.json')
    const fedAt = statSync(feed).mtimeMs
    for (let i = 0; i < 1000 && statSync(feed).mtimeMs === fedAt; i++) await new Promise(resolve => setTimeout(resolve, 5))
    const killedAt = Date.now()
    await this.kill()
    await this.start()
    return killedAt
  }
}

/** Something to remove when the test process is interrupted or exits. */
export interface Cleanup {
  stop: () => Promise<void>
  /** for the 'exit' handler, where nothing asynchronous runs */
  stopSync: () => void
}

const live = new Set<Cleanup>()
let handlersInstalled = false

/** Registers `c` to be removed if the process is interrupted (or exits) before it is. */
export function onInterrupt (c: Cleanup): void {
  installHandlers()
  live.add(c)
}

export function offInterrupt (c: Cleanup): void {
  live.delete(c)
}
let staleChecked = false

/**
 * On Ctrl-C or a kill, tear down every live grid, then die of the same signal; on
 * exit, whatever is left goes synchronously. Ava sends its workers SIGTERM right
 * after the terminal's SIGINT reached them: a second signal joins the cleanup under
 * way instead of cutting it short.
 */
function installHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  let cleaning: Promise<unknown> | undefined
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  const onSignal = (sig: NodeJS.Signals): void => {
    if (cleaning != null) return
    // the reader of our stderr (ava) may be gone already: a write error must not stop the cleanup
    process.stderr.on('error', () => {})
    try { process.stderr.write(`\nharness: ${sig}: removing ${live.size} grid(s) and what else tests made\n`) } catch {}
    cleaning = Promise.allSettled([...live].map(async g => await g.stop())).finally(() => {
      for (const s of signals) process.removeAllListeners(s)
      process.kill(process.pid, sig)
    })
  }
  for (const s of signals) process.on(s, onSignal)
  process.on('exit', () => { for (const g of live) g.stopSync() })
}

/** Leftovers of runs that died without cleaning up (their owner PID is gone): removed, and said so. */
async function removeStale (): Promise<void> {
  if (staleChecked) return
  staleChecked = true
  const stale = await findStale(KIND)
  if (stale.length > 0) {
    process.stderr.write(`harness: removing leftovers of an earlier run that did not clean up: ${stale.join(' ')}\n`)
    for (const ns of stale) await deleteNamespace(ns)
  }
  for (const d of await readdir(tmpdir()).catch(() => [])) {
    const m = new RegExp(`^${KIND}-(\\d+)-`).exec(d)
    if (m != null && !isAlive(Number(m[1]))) await rm(join(tmpdir(), d), { recursive: true, force: true })
  }
}

let gridCounter = 0

export class Grid implements Cleanup {
  readonly opts: GridOptions
  readonly topo: Topology
  readonly dir: string
  readonly hosts = new Map<string, Host>()
  private readonly keys = new Map<string, string>()
  private stopping?: Promise<void>

  private constructor (opts: GridOptions, topo: Topology, dir: string) {
    this.opts = opts
    this.topo = topo
    this.dir = dir
  }

  /**
   * Makes the hosts and starts their agents (all at once; they find each other by
   * mDNS unless told otherwise). With `t`, the grid is removed at the test's end
   * and the agents' logs are printed if it failed.
   */
  static async start (t: ExecutionContext | undefined, opts: GridOptions = {}): Promise<Grid> {
    installHandlers()
    await removeStale()
    const tag = `${gridCounter++}${Math.random().toString(36).slice(2, 4)}`
    const prefix = `${KIND}-${process.pid}-${tag}`
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
    let topo: Topology
    try {
      topo = await Topology.create({ prefix, seed: process.pid % 200 })
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      throw err
    }
    const grid = new Grid(opts, topo, dir)
    onInterrupt(grid)
    t?.teardown(async () => {
      if (!t.passed) process.stderr.write(`\n==== agent logs of failed test "${t.title}" ====\n${grid.logs()}\n==== end of logs ====\n`)
      await grid.stop()
    })
    const specs = typeof opts.hosts === 'number' || opts.hosts == null
      ? Array.from({ length: opts.hosts ?? 3 }, (_, i) => `h${i + 1}`)
      : opts.hosts
    try {
      const hosts = []
      for (const s of specs) hosts.push(await grid.addHost(s, { start: false }))
      await Promise.all(hosts.filter(h => h.spec.agent !== false).map(async h => await h.start()))
    } catch (err) {
      if (t == null) await grid.stop()
      throw err
    }
    return grid
  }

  host (name: string): Host {
    const h = this.hosts.get(name)
    if (h == null) throw new Error(`no host "${name}"`)
    return h
  }

  get list (): Host[] { return [...this.hosts.values()] }

  /** The key file of a key group (made on first use). */
  async keyFile (group: string): Promise<string> {
    let path = this.keys.get(group)
    if (path == null) {
      path = join(this.dir, `${group}.key`)
      await writeClusterKey(path, generateClusterKey())
      this.keys.set(group, path)
    }
    return path
  }

  /** A host made now (also after the grid started); its agent starts unless told not to. */
  async addHost (spec: string | HostSpec, opts: { start?: boolean } = {}): Promise<Host> {
    const s: HostSpec = typeof spec === 'string' ? { name: spec } : spec
    const net = await this.topo.addHost(s.name)
    const dir = join(this.dir, s.name)
    await mkdir(dir, { recursive: true })
    const h = new Host(this, s, net, dir, await this.keyFile(s.key ?? 'grid'))
    this.hosts.set(s.name, h)
    await h.bridge.start()
    if (opts.start !== false && s.agent !== false) await h.start()
    return h
  }

  /** Cuts a host off from `from` (default: all others), both ways; see Topology.cut. */
  async cut (name: string, opts: { from?: string[], how?: 'firewall' | 'link' } = {}): Promise<void> {
    await this.topo.cut(name, opts)
    const what = `cut off from ${opts.from?.join(',') ?? 'all'} (${opts.how ?? 'firewall'})`
    for (const h of this.list) h.agent.note(`${name} ${what}`)
  }

  async heal (name: string): Promise<void> {
    await this.topo.heal(name)
    for (const h of this.list) h.agent.note(`${name} healed`)
  }

  async changeAddress (name: string, to?: string): Promise<string> {
    const old = this.host(name).address
    const next = await this.topo.changeAddress(name, to)
    for (const h of this.list) h.agent.note(`${name} moved ${old} -> ${next}`)
    return next
  }

  /** Every host's view (name -> state of each member it knows). */
  async views (names?: string[]): Promise<Record<string, Record<string, string> | string>> {
    const hosts = names == null ? this.list.filter(h => h.agent.running) : names.map(n => this.host(n))
    const out: Record<string, Record<string, string> | string> = {}
    await Promise.all(hosts.map(async h => { out[h.name] = await h.view().catch((e: Error) => `unreachable: ${e.message}`) }))
    return out
  }

  /**
   * Waits until `check` holds on the views of `observers`; resolves the time it took.
   * On timeout the error shows the last views, so a failure says who saw what.
   */
  async waitViews (observers: string[], check: (views: Record<string, Record<string, string>>) => boolean, ms: number, what: string): Promise<number> {
    const start = Date.now()
    let last: Record<string, Record<string, string> | string> = {}
    for (;;) {
      last = await this.views(observers)
      if (Object.values(last).every(v => typeof v !== 'string') && check(last as Record<string, Record<string, string>>)) return Date.now() - start
      if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for: ${what}\nlast views: ${JSON.stringify(last)}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }

  /** Until every host in `names` (default: all) sees every one of them alive. */
  async waitAllAlive (ms: number, names = this.list.map(h => h.name)): Promise<number> {
    return await this.waitViews(names, v => names.every(o => names.every(n => v[o]![n] === 'alive')), ms,
      `${names.join(', ')} all alive on each other`)
  }

  /** Until each of `observers` sees `target` in `state`. */
  async waitState (observers: string[], target: string, state: string, ms: number): Promise<number> {
    return await this.waitViews(observers, v => observers.every(o => v[o]![target] === state), ms,
      `${target} ${state} on ${observers.join(', ')}`)
  }

  logs (): string {
    return this.list.map(h => `----- ${h.name} (${h.ns}, ${h.address}) -----\n${h.agent.log}`).join('\n')
  }

  /** Stops every agent (SIGKILL: tests do not need the goodbye) and removes everything; once. */
  async stop (): Promise<void> {
    this.stopping ??= (async () => {
      // an agent's wireguard-go goes with its kill (tied to it), and its interface with
      // it, but not its control socket in /run/wireguard, which the namespace's removal
      // finds by the interfaces left: named now, removed after
      const tunnels = (await Promise.all(this.list.map(async h => await linkNames(h.ns).catch(() => [])))).flat().filter(n => n.startsWith('vgw'))
      await Promise.all(this.list.map(async h => { await h.agent.kill('SIGKILL'); await h.bridge.kill('SIGKILL'); h.agent.closeLog() }))
      // VMs live in namespaces and cgroups of their own, outside the hosts' namespaces
      for (const h of this.list) await reapDataDir(join(h.dir, 'data')).catch(() => {})
      await this.topo.destroy()
      removeWireguardSockets(tunnels)
      await rm(this.dir, { recursive: true, force: true })
      offInterrupt(this)
    })()
    await this.stopping
  }

  /** For the 'exit' handler: synchronous, by PID and by namespace name. */
  stopSync (): void {
    // also when an async stop is under way: the process is exiting, it will not finish
    for (const p of this.list.flatMap(h => [h.agent, h.bridge])) {
      // only processes we know still run: a PID that exited may be someone else's by now
      if (p.running && p.pid != null) try { process.kill(p.pid, 'SIGKILL') } catch {}
    }
    this.topo.destroySync()
    rmSync(this.dir, { recursive: true, force: true })
  }
}
