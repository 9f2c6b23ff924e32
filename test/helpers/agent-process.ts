// Test helper: runs real `vgrid agent` processes on loopback, each with its own
// data dir, and talks to them through their HTTP API. Every process is tracked by
// PID and killed by PID when the test ends.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createServer } from 'node:net'

export const ROOT = resolve(import.meta.dirname, '../..')
export const VGRID = join(ROOT, 'bin/vgrid')

/**
 * A free port below Linux's ephemeral range (32768 and up): a port the kernel hands
 * out was taken by some test's outgoing connection between this check and the
 * agent's bind, or while an agent restarted on it ("address already in use").
 */
export async function freePort (): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if (await canListen(port)) return port
  }
  throw new Error('no free port between 20000 and 31999')
}

async function canListen (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = createServer()
    s.once('error', () => { resolve(false) })
    s.listen(port, '127.0.0.1', () => { s.close(() => { resolve(true) }) })
  })
}

export async function tempDir (prefix = 'vgrid-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export interface AgentProcessOptions {
  name: string
  dataDir: string
  /** extra flags (e.g. --key, --join, --capacity) */
  args?: string[]
  p2pPort?: number
  apiPort?: number
  env?: Record<string, string>
}

export class AgentProcess {
  readonly opts: AgentProcessOptions
  p2pPort = 0
  apiPort = 0
  proc?: ChildProcess
  log = ''
  private exited?: Promise<number | null>

  constructor (opts: AgentProcessOptions) {
    this.opts = opts
  }

  get api (): string { return `127.0.0.1:${this.apiPort}` }
  get listen (): string { return `/ip4/127.0.0.1/tcp/${this.p2pPort}` }

  async start (): Promise<void> {
    // a port freePort found free can be taken by another test before the agent binds it:
    // a first start then tries other ones for the ports it picked (a restart keeps its
    // ports, which peers know; a port the test gave stays); the agent says it "address
    // already in use" (its CLI words EADDRINUSE so). CI once lost a test to an API port so.
    const fresh = this.p2pPort === 0 && this.apiPort === 0
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce()
        return
      } catch (err) {
        const picked = fresh && (this.opts.p2pPort == null || this.opts.apiPort == null)
        if (!picked || attempt >= 3 || !/EADDRINUSE|address already in use/.test((err as Error).message)) throw err
        await this.exited
        this.p2pPort = 0
        this.apiPort = 0
        this.log = ''
      }
    }
  }

  private async startOnce (): Promise<void> {
    this.p2pPort = this.opts.p2pPort ?? (this.p2pPort !== 0 ? this.p2pPort : await freePort())
    this.apiPort = this.opts.apiPort ?? (this.apiPort !== 0 ? this.apiPort : await freePort())
    const args = ['agent', '--name', this.opts.name, '--data-dir', this.opts.dataDir,
      // agents on loopback share one network namespace: one WireGuard port, one firewall
      '--listen', this.listen, '--api', this.api, '--no-mdns', '--no-overlay', ...(this.opts.args ?? [])]
    const proc = spawn(VGRID, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.opts.env } })
    this.proc = proc
    const onData = (d: Buffer): void => { this.log += d.toString() }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', onData)
    this.exited = new Promise(resolve => proc.once('exit', code => resolve(code)))
    await waitFor(async () => (await this.tryGet('/healthz')) != null, 20_000, `${this.opts.name} API up`,
      () => this.proc?.exitCode != null ? `agent exited early:\n${this.log}` : undefined)
  }

  get running (): boolean { return this.proc != null && this.proc.exitCode == null && this.proc.signalCode == null }

  /** Sends a signal and waits for the process to exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (!this.running || this.proc?.pid == null) return null
    process.kill(this.proc.pid, signal)
    return await this.exited!
  }

  async restart (): Promise<void> {
    await this.kill('SIGTERM')
    await this.start()
  }

  async get<T = unknown> (path: string): Promise<T> {
    const res = await fetch(`http://${this.api}${path}`, { signal: AbortSignal.timeout(5000) })
    return await res.json() as T
  }

  async request (method: string, path: string, body?: unknown): Promise<{ status: number, body: unknown }> {
    const res = await fetch(`http://${this.api}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(5000)
    })
    const text = await res.text()
    let parsed: unknown = text
    try { parsed = JSON.parse(text) } catch {}
    return { status: res.status, body: parsed }
  }

  async tryGet<T = unknown> (path: string): Promise<T | undefined> {
    try { return await this.get<T>(path) } catch { return undefined }
  }

  async metrics (): Promise<string> {
    const res = await fetch(`http://${this.api}/metrics`, { signal: AbortSignal.timeout(5000) })
    return await res.text()
  }
}

/** Polls `check` until it returns true; fails with `what` (and `detail()`) after `ms`. */
export async function waitFor (check: () => boolean | Promise<boolean>, ms: number, what: string, detail?: () => string | undefined): Promise<number> {
  const start = Date.now()
  for (;;) {
    try {
      if (await check()) return Date.now() - start
    } catch {}
    const d = detail?.()
    if (d != null) throw new Error(`${what}: ${d}`)
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** A set of agent processes that is torn down (by PID) and whose data dirs are removed. */
export class AgentGroup {
  readonly agents: AgentProcess[] = []
  readonly dirs: string[] = []

  async add (opts: Omit<AgentProcessOptions, 'dataDir'> & { dataDir?: string }): Promise<AgentProcess> {
    const dataDir = opts.dataDir ?? await tempDir()
    this.dirs.push(dataDir)
    const a = new AgentProcess({ ...opts, dataDir })
    this.agents.push(a)
    await a.start()
    return a
  }

  logs (): string {
    return this.agents.map(a => `----- ${a.opts.name} -----\n${a.log}`).join('\n')
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.agents.map(async a => await a.kill('SIGKILL')))
    await Promise.all(this.dirs.map(async d => await rm(d, { recursive: true, force: true })))
  }
}
