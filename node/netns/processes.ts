// Processes inside namespace hosts: the agent (`vgrid agent` started with
// `ip netns exec`, so its PID is the agent's own: `ip` and bin/vgrid both exec) and
// the API bridge that makes the agent's loopback-only API reachable from the root
// namespace through a unix socket. Shared by the e2e harness and `vgrid demo`.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, createWriteStream, type WriteStream } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { nsenterPath, sleep } from './netns.ts'
import { ROOT, scriptPath } from '../paths.ts'

export { ROOT }
export const VGRID = join(ROOT, 'bin/vgrid')
/** Where each agent listens inside its own namespace (every namespace has its own ports). */
export const P2P_PORT = 7400
export const API_PORT = 7401

/** Node 24 as bin/vgrid picks it: the one the package brings, else the running one. */
export function nodeBin (): string {
  const bundled = join(ROOT, 'node_modules/node/bin/node')
  try {
    accessSync(bundled, constants.X_OK)
    return bundled
  } catch {
    return process.execPath
  }
}

export interface ApiResponse { status: number, text: string }

/** One HTTP request to an agent's API through its bridge's unix socket. */
export async function apiRequest (socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 5000): Promise<ApiResponse> {
  return await new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request({
      socketPath,
      method,
      path,
      headers: { host: '127.0.0.1', ...(payload == null ? {} : { 'content-type': 'application/json' }) },
      timeout: timeoutMs
    }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`API ${method} ${path}: timed out after ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** A process started inside a namespace, tracked by PID. */
class NsProcess {
  proc?: ChildProcess
  protected exited?: Promise<number | null>

  get pid (): number | undefined { return this.proc?.pid }
  get running (): boolean { return this.proc != null && this.proc.exitCode == null && this.proc.signalCode == null }
  /** the signal that ended the process (it then has no exit code), or null */
  get exitSignal (): NodeJS.Signals | null { return this.proc?.signalCode ?? null }

  protected launch (ns: string, cmd: string, args: string[], onOutput: (d: Buffer) => void, env?: Record<string, string>): ChildProcess {
    // detached: a Ctrl-C in the terminal reaches only the owner, which then stops
    // these in order instead of everything dying at once. nsenter, not `ip netns
    // exec`: that one remounts /sys for the namespace, which hides /sys/fs/cgroup, and
    // an agent there could not give its VMs cgroup limits
    const proc = spawn(nsenterPath(), [`--net=/run/netns/${ns}`, '--', cmd, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, ...env }
    })
    this.proc = proc
    proc.stdout?.on('data', onOutput)
    proc.stderr?.on('data', onOutput)
    proc.on('error', () => {})
    proc.stdin?.on('error', () => {})
    this.exited = new Promise(resolve => proc.once('exit', code => resolve(code)))
    return proc
  }

  /** Sends a signal and waits (up to `ms`, then SIGKILL) for the process to exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL', ms = 10_000): Promise<number | null> {
    const pid = this.proc?.pid
    if (!this.running || pid == null) return this.proc?.exitCode ?? null
    try { process.kill(pid, signal) } catch {}
    let t: NodeJS.Timeout | undefined
    const timer = new Promise<'timeout'>(resolve => { t = setTimeout(() => resolve('timeout'), ms) })
    const r = await Promise.race([this.exited!, timer]).finally(() => clearTimeout(t))
    if (r !== 'timeout') return r
    try { process.kill(pid, 'SIGKILL') } catch {}
    return await this.exited!
  }

  async waitExit (): Promise<number | null> { return await (this.exited ?? Promise.resolve(null)) }
}

export class ApiBridge extends NsProcess {
  readonly ns: string
  readonly socketPath: string
  readonly port: number
  /** the agent sees this bridge's connections as user nobody's (see api-bridge-main.ts) */
  readonly unprivileged: boolean

  constructor (ns: string, socketPath: string, port = API_PORT, opts: { unprivileged?: boolean } = {}) {
    super()
    this.ns = ns
    this.socketPath = socketPath
    this.port = port
    this.unprivileged = opts.unprivileged === true
  }

  async start (): Promise<void> {
    let out = ''
    const ready = new Promise<void>((resolve, reject) => {
      const proc = this.launch(this.ns, nodeBin(), ['--disable-warning=ExperimentalWarning',
        scriptPath('node/netns/api-bridge-main'), this.socketPath, String(this.port), ...(this.unprivileged ? ['--unprivileged'] : [])], d => {
        out += d.toString()
        if (out.includes('ready')) resolve()
      })
      proc.once('exit', code => reject(new Error(`API bridge in ${this.ns} exited (${code}): ${out}`)))
    })
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      t = setTimeout(() => reject(new Error(`API bridge in ${this.ns} not ready after 10 s: ${out}`)), 10_000)
    })
    await Promise.race([ready, timeout]).finally(() => clearTimeout(t))
  }

  async request (method: string, path: string, body?: unknown, timeoutMs?: number): Promise<ApiResponse> {
    return await apiRequest(this.socketPath, method, path, body, timeoutMs)
  }
}

export interface NsAgentOptions {
  name: string
  ns: string
  dataDir: string
  /** how to reach its API from here */
  bridge: ApiBridge
  /** extra flags, e.g. --key FILE, --token T, --no-mdns, --join MA */
  args?: string[]
  /** every line the agent prints is also appended here */
  logFile?: string
  /** keep all of the log in memory (default true; a long-running demo says false and keeps a tail) */
  memoryLog?: boolean
  env?: Record<string, string>
}

/** A `vgrid agent` in a namespace: listens on 0.0.0.0 (so address changes are seen), API on the namespace's loopback. */
export class NsAgent extends NsProcess {
  readonly opts: NsAgentOptions
  /** everything it printed, across restarts */
  log = ''
  private file?: WriteStream

  constructor (opts: NsAgentOptions) {
    super()
    this.opts = opts
  }

  get name (): string { return this.opts.name }

  /** Starts it and waits for its API; `signal` aborts the wait (the process stays, for the caller to kill). */
  async start (timeoutMs = 60_000, signal?: AbortSignal): Promise<void> {
    if (this.running) throw new Error(`agent ${this.name} is already running (pid ${this.pid})`)
    if (this.opts.logFile != null && this.file == null) this.file = createWriteStream(this.opts.logFile, { flags: 'a' })
    const args = ['agent', '--name', this.name, '--data-dir', this.opts.dataDir,
      '--listen', `/ip4/0.0.0.0/tcp/${P2P_PORT}`, '--api', `127.0.0.1:${this.opts.bridge.port}`, ...(this.opts.args ?? [])]
    this.note(`starting: vgrid ${args.join(' ')}`)
    const proc = this.launch(this.opts.ns, VGRID, args, d => {
      const s = d.toString()
      this.append(s)
      this.file?.write(s)
    }, this.opts.env)
    proc.once('exit', (code, sig) => this.note(`exited (${sig ?? code})`))
    const start = Date.now()
    for (;;) {
      signal?.throwIfAborted()
      if (!this.running) throw new Error(`agent ${this.name} exited during start:\n${this.log}`)
      const ok = await this.opts.bridge.request('GET', '/healthz', undefined, 1000).then(r => r.status === 200, () => false)
      if (ok) return
      if (Date.now() - start > timeoutMs) throw new Error(`agent ${this.name}: API not up after ${timeoutMs} ms:\n${this.log}`)
      await sleep(100)
    }
  }

  /** Graceful stop and leave (SIGINT: the agent announces it is leaving, and its VMs stop). */
  async stop (): Promise<void> { await this.kill('SIGINT') }

  async restart (): Promise<void> {
    await this.stop()
    await this.start()
  }

  /** Marks harness events in the log, so a failed test's log reads as one story. */
  note (text: string): void {
    const line = `${new Date().toISOString()} ---- ${this.name}: ${text}\n`
    this.append(line)
    this.file?.write(line)
  }

  private append (text: string): void {
    this.log += text
    // without memoryLog only the tail is kept: enough to say why a start failed
    if (this.opts.memoryLog === false && this.log.length > 8192) this.log = this.log.slice(-4096)
  }

  closeLog (): void {
    this.file?.end()
    this.file = undefined
  }
}
