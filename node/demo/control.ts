// Acting on one host of a running demo from another shell, as a failure would: its
// agent killed (SIGKILL, a crash), stopped (SIGTERM: a restart; SIGINT: it leaves),
// frozen (SIGSTOP, SIGCONT) or started again, and the host cut off from some or all
// of the others (a partition, nftables in its namespace) and healed. The running demo
// serves one JSON request per connection on a unix socket in its root-only directory;
// `vgrid demo --kill|--start|--cut|--heal HOST` asks it.
import { createServer, connect, type Server } from 'node:net'
import { readFileSync, rmSync } from 'node:fs'

export const SIGNALS = ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGSTOP', 'SIGCONT'] as const
export type DemoSignal = typeof SIGNALS[number]

export type ControlRequest =
  | { op: 'kill', host: string, signal: DemoSignal }
  | { op: 'start', host: string }
  | { op: 'cut', host: string, from?: string[] }
  | { op: 'heal', host: string }

/** `usage`: the request named something the demo does not have (the CLI exits 2, as for a bad flag) */
export type ControlAnswer = { ok: true, message: string } | { ok: false, error: string, usage?: true }

/** a host name the running demo does not have */
class UnknownHost extends Error {}

const MAX_REQUEST = 4096
const HOST = /^host[1-9][0-9]*$/

/** A request as the socket gets it, or what is wrong with it (pure). */
export function parseControl (raw: unknown): ControlRequest | { error: string } {
  const r = raw as Record<string, unknown> | null
  if (r == null || typeof r !== 'object') return { error: 'expected a JSON object' }
  if (typeof r.host !== 'string' || !HOST.test(r.host)) return { error: `host: expected a demo host's name (host1, host2, ...), got ${JSON.stringify(r.host)}` }
  switch (r.op) {
    case 'kill': {
      const signal = r.signal ?? 'SIGKILL'
      if (!(SIGNALS as readonly unknown[]).includes(signal)) return { error: `signal: one of ${SIGNALS.join(', ')}, got ${JSON.stringify(signal)}` }
      return { op: 'kill', host: r.host, signal: signal as DemoSignal }
    }
    case 'start': case 'heal': return { op: r.op, host: r.host }
    case 'cut': {
      if (r.from === undefined) return { op: 'cut', host: r.host }
      if (!Array.isArray(r.from) || r.from.length === 0 || !r.from.every(h => typeof h === 'string' && HOST.test(h))) return { error: 'from: expected a list of demo host names (host1, host2, ...)' }
      if (r.from.includes(r.host)) return { error: `from: ${r.host} cannot be cut off from itself` }
      return { op: 'cut', host: r.host, from: [...new Set(r.from as string[])] }
    }
    default: return { error: `op: one of kill, start, cut, heal, got ${JSON.stringify(r.op)}` }
  }
}

/** Serves requests on `path` (answered by `handle`) until closed. */
export async function serveControl (path: string, handle: (r: ControlRequest) => Promise<string>): Promise<Server> {
  rmSync(path, { force: true })
  const server = createServer(c => {
    let buf = ''
    const answer = (a: ControlAnswer): void => { c.end(JSON.stringify(a) + '\n') }
    c.on('error', () => {})
    c.on('data', d => {
      buf += d.toString()
      if (buf.length > MAX_REQUEST) { answer({ ok: false, error: 'request too large' }); return }
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      c.removeAllListeners('data')
      let raw: unknown
      try { raw = JSON.parse(buf.slice(0, nl)) } catch { answer({ ok: false, error: 'not JSON' }); return }
      const req = parseControl(raw)
      if ('error' in req) { answer({ ok: false, error: req.error }); return }
      handle(req).then(message => { answer({ ok: true, message }) }, (err: unknown) => { answer({ ok: false, error: (err as Error).message, ...(err instanceof UnknownHost ? { usage: true as const } : {}) }) })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  return server
}

/** Sends one request to the demo serving `path`; its answer. */
export async function askDemo (path: string, req: ControlRequest, timeoutMs = 90_000): Promise<ControlAnswer> {
  return await new Promise((resolve, reject) => {
    const c = connect(path)
    let buf = ''
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`the demo did not answer within ${timeoutMs / 1000} s`)) }, timeoutMs)
    c.on('connect', () => { c.write(JSON.stringify(req) + '\n') })
    c.on('data', d => { buf += d.toString() })
    c.on('error', err => { clearTimeout(timer); reject(err) })
    c.on('end', () => {
      clearTimeout(timer)
      try { resolve(JSON.parse(buf) as ControlAnswer) } catch { reject(new Error(`the demo answered something unreadable: ${buf.slice(0, 200)}`)) }
    })
  })
}

/** what the requests act on: the demo's hosts (their agents) and its network */
export interface ControlTargets {
  hosts: ReadonlyArray<{ name: string, agent: { readonly pid: number | undefined, readonly running: boolean, readonly exitSignal?: NodeJS.Signals | null, kill: (signal: NodeJS.Signals, ms: number) => Promise<number | null>, start: (timeoutMs: number) => Promise<void> } }>
  /** `cutFrom`: the hosts a host is cut off from now (a cut adds to the one it has) */
  network: { cut: (name: string, opts: { from?: string[], how: 'firewall' }) => Promise<void>, heal: (name: string) => Promise<void>, isCut?: (name: string) => boolean, cutFrom?: (name: string) => string[] }
  /** an agent started again: watch it as the first was (its exit said in the demo's output) */
  started?: (host: string) => void
}

/** whether process `pid` is stopped (SIGSTOP: state T in /proc/PID/stat) */
export function frozen (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3))
  } catch {
    return false
  }
}

/** how long a stop for a restart or a leave may take before the agent is killed (the client waits longer) */
const GRACEFUL_MS = 45_000

/** Carries out one request at a time (a kill and a start of one host must not cross); the answer's message. */
export function controlHandler (t: ControlTargets): (r: ControlRequest) => Promise<string> {
  let queue: Promise<unknown> = Promise.resolve()
  const hostOf = (name: string): ControlTargets['hosts'][number] => {
    const h = t.hosts.find(x => x.name === name)
    if (h == null) throw new UnknownHost(`no host ${name} in this demo (it has ${t.hosts.map(x => x.name).join(', ')})`)
    return h
  }
  const act = async (r: ControlRequest): Promise<string> => {
    const h = hostOf(r.host)
    switch (r.op) {
      case 'kill': {
        const pid = h.agent.pid
        if (!h.agent.running || pid == null) throw new Error(`${h.name}'s agent is not running (vgrid demo --start ${h.name} starts it)`)
        const isFrozen = frozen(pid)
        if (r.signal === 'SIGCONT' && !isFrozen) throw new Error(`${h.name}'s agent (pid ${pid}) is not frozen: nothing to resume`)
        if (r.signal === 'SIGSTOP' && isFrozen) throw new Error(`${h.name}'s agent (pid ${pid}) is frozen already (\`vgrid demo --kill ${h.name} --signal SIGCONT\` resumes it)`)
        // a frozen agent takes SIGTERM or SIGINT only once resumed: waiting would end in a SIGKILL
        if ((r.signal === 'SIGTERM' || r.signal === 'SIGINT') && isFrozen) throw new Error(`${h.name}'s agent (pid ${pid}) is frozen (SIGSTOP): it handles ${r.signal} only once resumed (\`vgrid demo --kill ${h.name} --signal SIGCONT\`), or kill it (SIGKILL)`)
        if (r.signal === 'SIGSTOP' || r.signal === 'SIGCONT') {
          process.kill(pid, r.signal)
          return r.signal === 'SIGSTOP'
            ? `${h.name}: its agent (pid ${pid}) is frozen (SIGSTOP): its VMs' watchdog fences them, and the others take them over; \`vgrid demo --kill ${h.name} --signal SIGCONT\` resumes it`
            : `${h.name}: its agent (pid ${pid}) resumed (SIGCONT)`
        }
        // a stop for a restart (SIGTERM) or a leave (SIGINT) asks the other members first: seconds
        const t0 = Date.now()
        const code = await h.agent.kill(r.signal, r.signal === 'SIGKILL' ? 5000 : GRACEFUL_MS)
        if (r.signal !== 'SIGKILL' && Date.now() - t0 >= GRACEFUL_MS) return `${h.name}: its agent (pid ${pid}) did not stop within ${GRACEFUL_MS / 1000} s of ${r.signal} and was killed (SIGKILL, as a crash); \`vgrid demo --start ${h.name}\` starts it again`
        const what = r.signal === 'SIGKILL'
          ? 'killed (SIGKILL, as a crash): its watchdog kills its VMs within the watchdog timeout, and the others start them after the fence timeout'
          : r.signal === 'SIGTERM'
            ? 'stopped for a restart (SIGTERM): its VMs run on under its restart grace where every member it sees confirmed it, else only for its watchdog\'s timeout (its log says which: "no restart grace")'
            : 'stopped and left the grid (SIGINT): its VMs run again elsewhere'
        // killed by a signal: no exit code, the signal says how
        return `${h.name}: its agent (pid ${pid}) ${what}; it exited (${String(h.agent.exitSignal ?? code)}); \`vgrid demo --start ${h.name}\` starts it again`
      }
      case 'start': {
        if (h.agent.running) throw new Error(`${h.name}'s agent already runs (pid ${String(h.agent.pid)}${h.agent.pid != null && frozen(h.agent.pid) ? `, frozen: \`vgrid demo --kill ${h.name} --signal SIGCONT\` resumes it` : ''})`)
        await h.agent.start(30_000)
        t.started?.(h.name)
        return `${h.name}: its agent started again (pid ${String(h.agent.pid)})`
      }
      case 'cut': {
        for (const f of r.from ?? []) hostOf(f)
        const before = t.network.cutFrom?.(h.name) ?? []
        await t.network.cut(h.name, { how: 'firewall', ...(r.from != null ? { from: r.from } : {}) })
        const now = t.network.cutFrom?.(h.name) ?? []
        // a second cut adds to the first: say what the host is cut off from in all
        const all = before.length > 0 && now.length > (r.from?.length ?? now.length) ? ` (now from ${now.join(', ')})` : ''
        return `${h.name}: cut off from ${r.from?.join(', ') ?? 'every other host'}${all}, both ways (nftables in its namespace); \`vgrid demo --heal ${h.name}\` undoes all of it`
      }
      case 'heal': {
        if (t.network.isCut?.(h.name) === false) throw new Error(`${h.name} is not cut off: nothing to heal`)
        await t.network.heal(h.name)
        return `${h.name}: reaches every host again`
      }
    }
  }
  return async r => {
    const next = queue.then(async () => await act(r))
    queue = next.catch(() => {})
    return await next
  }
}
