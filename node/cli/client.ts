// The CLI's client for the local agent's HTTP API: over loopback TCP (--api or
// VGRID_API as HOST:PORT) or the agent's unix socket (VGRID_API=unix:/path; with
// neither set, the default socket when this user may open it, else 127.0.0.1:7401). A token in
// VGRID_API_TOKEN is presented as the API token. Every failure becomes a CliError
// with a one-line message; nothing here prints a stack trace.
import { request as httpRequest } from 'node:http'
import { accessSync, constants } from 'node:fs'
import { DEFAULT_API, DEFAULT_API_SOCKET, parseHostPort } from '../config.ts'
import { connect as netConnect, type Socket } from 'node:net'
import { serverSideUid } from './listener-owner.ts'

/** how long the CLI waits for an answer (no byte of it) before it gives up */
const ANSWER_TIMEOUT_MS = 30_000

export class CliError extends Error {
  override name = 'CliError'
  readonly exitCode: number
  /** what kind of error, for `--json` (an API error's own code; `usage` for exit code 2, else `error`) */
  readonly code: string
  /** the API's message alone (without the code the text form appends), for `--json` */
  readonly detail: string
  constructor (message: string, exitCode = 1, opts: { code?: string, detail?: string } = {}) {
    super(message)
    this.exitCode = exitCode
    this.code = opts.code ?? (exitCode === 2 ? 'usage' : 'error')
    this.detail = opts.detail ?? message
  }
}

/** `--json` asked for anywhere before a `--` (after it, the words are a VM's command) */
export const wantsJson = (argv: readonly string[]): boolean => {
  const end = argv.indexOf('--')
  return (end < 0 ? argv : argv.slice(0, end)).some(a => a === '--json' || a === '--json=true')
}

/** an error as `--json` prints it, on stdout: the API's error shape, with the exit code */
export const jsonError = (code: string, message: string, exitCode: number): string =>
  JSON.stringify({ error: { code, message, exitCode } }, null, 2) + '\n'

/** a quoted value longer than this is clipped where an error echoes it (valid names are at most 128) */
export const ECHO_MAX = 128

/**
 * An error message with every quoted value over ECHO_MAX characters clipped to its
 * first 64 and its length (pure): a 5,000-character path or name given by mistake was
 * echoed whole, by the CLI and by the agent. Quoted means between two double quotes on
 * one line, backslash escapes inside taken as JSON.stringify writes them.
 */
export function clipEchoes (message: string): string {
  return message.replace(/"((?:[^"\\\n]|\\.)*)"/g, (whole, inner: string) => {
    if (inner.length <= ECHO_MAX) return whole
    // not cut inside an escape (\"): its lone backslash would take the closing quote
    const head = inner.slice(0, 64).replace(/(?<!\\)((?:\\\\)*)\\$/, '$1')
    return `"${head}..." (${inner.length} characters)`
  })
}

/**
 * What the CLI says when an answer is not one a vgrid agent gives: another server at
 * that address, or an agent whose answer this CLI cannot read (pure).
 */
export function notAgentAnswer (from: string, method: string, path: string, what: string): string {
  return `the answer from ${from} to ${method} ${path} is not what a vgrid agent answers (${what}): is --api pointing at a vgrid agent?`
}

/**
 * The last answer this process read from an agent: a command that then fails reading
 * it (a TypeError: a field it needs is missing) read an answer of another shape, which
 * main.ts says in those words rather than JavaScript's.
 */
let lastAnswer: { from: string, method: string, path: string } | undefined
export const lastAnswerRead = (): { from: string, method: string, path: string } | undefined => lastAnswer

type Target = { socketPath: string } | { host: string, port: number }

/** whether this user may connect to the unix socket at `path` (it exists, and may be written: what a connect needs) */
function socketUsable (path: string): boolean {
  try { accessSync(path, constants.W_OK); return true } catch { return false }
}

/**
 * Where the CLI talks to: an explicit --api / VGRID_API, else the default socket if this
 * user may open it, else the default address (reading is open there: a user outside the
 * vgrid group reads status over loopback and is told what a change needs).
 */
export function apiTarget (api: string | undefined, env: NodeJS.ProcessEnv = process.env, usable = socketUsable): Target {
  // an empty --api is a mistake (an unset variable in a script), not a wish for the default (bb19)
  if (api === '') throw new CliError('--api: empty (give HOST:PORT, unix:/path, or leave --api out for this node\'s agent)', 2)
  // so is a VGRID_API set empty (bb49: `VGRID_API="$TARGET" vgrid vm rm web` with $TARGET empty acted on this node's grid); unset it for the default
  if (api == null && env.VGRID_API === '') throw new CliError('VGRID_API: set but empty (give HOST:PORT, unix:/path, or unset it for this node\'s agent)', 2)
  const raw = api ?? env.VGRID_API
  // what the user set is named in errors: the flag, or the variable (bb30 read "--api" for a VGRID_API it had set)
  const what = api != null ? '--api' : 'VGRID_API'
  if (raw == null || raw === '') {
    if (usable(DEFAULT_API_SOCKET)) return { socketPath: DEFAULT_API_SOCKET }
    return parseHostPort(DEFAULT_API, '--api')
  }
  if (raw.startsWith('unix:')) return { socketPath: raw.slice(5) }
  if (raw.startsWith('/')) return { socketPath: raw }
  return parseHostPort(raw, what)
}

/** a loopback address (IPv4, IPv6, or IPv4 mapped into IPv6) */
const isLoopback = (ip: string): boolean => /^(::ffff:)?127\./i.test(ip) || ip === '::1'

export class ApiClient {
  private readonly target: Target
  private readonly display: string
  private readonly token?: string

  private readonly answerTimeoutMs: number

  constructor (api: string | undefined, opts: { answerTimeoutMs?: number } = {}) {
    this.answerTimeoutMs = opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS
    try {
      this.target = apiTarget(api)
    } catch (err) {
      throw new CliError((err as Error).message, 2)
    }
    const t = this.target
    this.display = 'socketPath' in t ? `unix:${t.socketPath}` : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`
    const token = process.env.VGRID_API_TOKEN?.trim()
    this.token = token === '' ? undefined : token
  }

  async request<T> (method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    let res: { status: number, text: string }
    try {
      const socket = await this.connect()
      if (socket != null) this.servedByRoot(socket)
      res = await this.send(method, path, payload, socket)
    } catch (err) {
      if (err instanceof CliError) throw err
      const e = err as NodeJS.ErrnoException & { answering?: boolean }
      // connected, then no answer: the agent runs, but this request waits on something (a
      // node it cannot reach, say); "is it running?" would send the user the wrong way
      if (e.answering === true && e.code === 'ETIMEDOUT') throw new CliError(`the vgrid agent at ${this.display} took the request (${method} ${path}) but did not answer within ${this.answerTimeoutMs / 1000} s; it may be waiting on a node it cannot reach: see \`vgrid status\` and its log${method === 'GET' ? '' : `; the ${method} may or may not have been done: see before asking again`}`, 1, { code: 'agent_timeout' })
      // connected, then closed unanswered: an agent holding as many connections as it takes
      if (e.answering === true) throw new CliError(`the vgrid agent at ${this.display} closed the connection without an answer (${e.code ?? e.message}): it may have stopped meanwhile, or hold as many API connections as it takes (see its log)${'socketPath' in this.target ? '' : '; an admin\'s CLI can go through its unix socket'}${method === 'GET' ? '' : `; the ${method} may or may not have been done: see before asking again`}`, 1, { code: 'agent_unreachable' })
      // the socket is there, and this user may not open it: the API's own rule, said as such (bb30)
      if ((e.code === 'EACCES' || e.code === 'EPERM') && 'socketPath' in this.target) throw new CliError(`permission denied: the vgrid agent's API socket ${this.display} is for root and the "vgrid" group only (run as root, or add this user to the group)`, 1, { code: 'forbidden' })
      throw new CliError(`cannot reach the vgrid agent at ${this.display} (${e.code ?? e.message}); is it running? (set --api or VGRID_API)`, 1, { code: 'agent_unreachable' })
    }
    let data: unknown
    try {
      data = res.text === '' ? undefined : JSON.parse(res.text)
    } catch {
      throw new CliError(notAgentAnswer(this.display, method, path, `status ${res.status}, not JSON`), 1, { code: 'bad_answer' })
    }
    if (res.status >= 400) {
      // every error of an agent is {"error": {"code", "message"}}; anything else is another server's
      const e = (data as { error?: { code?: unknown, message?: unknown } } | undefined)?.error
      if (typeof e?.message !== 'string') throw new CliError(notAgentAnswer(this.display, method, path, `status ${res.status}${res.text === '' ? ' with nothing in it' : ' without a vgrid error in it'}`), 1, { code: 'bad_answer' })
      const message = e.message
      const code = typeof e.code === 'string' ? e.code : undefined
      // a bad value is a usage error (2) whether the CLI or the agent found it
      throw new CliError(`${message}${code == null ? '' : ` (${code})`}`, res.status === 400 ? 2 : 1, { code: code ?? `http_${res.status}`, detail: message })
    }
    lastAnswer = { from: this.display, method, path }
    return data as T
  }

  get<T> (path: string): Promise<T> { return this.request<T>('GET', path) }

  /** a TCP target's connection, made before the request (undefined: the unix socket) */
  private async connect (): Promise<Socket | undefined> {
    if ('socketPath' in this.target) return undefined
    const { host, port } = this.target
    return await new Promise((resolve, reject) => {
      const s = netConnect({ host, port })
      const timer = setTimeout(() => { s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })) }, this.answerTimeoutMs)
      s.once('connect', () => { clearTimeout(timer); s.removeAllListeners('error'); resolve(s) })
      s.once('error', err => { clearTimeout(timer); reject(Object.assign(err, { answering: false })) })
    })
  }

  /**
   * A connection served on this machine is served by root, as an agent is: while the
   * agent is down any local user may listen on its unprivileged port, answer with a grid
   * of its making and take the API token (bb48). The connection's own server side is
   * judged, before anything is written on it (rv48: a look at the listeners beforehand
   * could be raced, and blocked by a user's IPv6-only listener); an agent run by this
   * very user (from a checkout, unprivileged) is its own. Checked at each request (a
   * long copy's renewals span an agent's restart: rv47).
   */
  private servedByRoot (socket: Socket): void {
    const ends = socket.localAddress == null || socket.localPort == null || socket.remoteAddress == null || socket.remotePort == null
      ? undefined
      : { client: { address: socket.localAddress, port: socket.localPort }, server: { address: socket.remoteAddress, port: socket.remotePort } }
    // a loopback connection's server side is on this machine: not found, the tables are
    // read once more, then nothing is sent (rv49: it failed open); one elsewhere is not judged
    // (tables that cannot be read, a /proc that hides them, tell nothing: not judged, rv50)
    const first = ends == null ? null : serverSideUid(ends.client, ends.server)
    const uid = first !== undefined || !isLoopback(ends!.server.address) ? first : serverSideUid(ends!.client, ends!.server) ?? -1
    if (uid == null || uid === 0 || uid === process.getuid?.()) return
    socket.destroy()
    if (uid === -1) throw new CliError(`${this.display}: the program serving this connection could not be found in /proc/net/tcp: nothing was sent to it${this.token != null ? ' (nor the API token)' : ''}`, 1, { code: 'not_agent' })
    throw new CliError(`${this.display} is served by a program of uid ${uid}, not by root as a vgrid agent is: nothing was sent to it${this.token != null ? ' (nor the API token)' : ''}; is this node's agent down and another program listening on its port?`, 1, { code: 'not_agent' })
  }

  private async send (method: string, path: string, payload: string | undefined, socket?: Socket): Promise<{ status: number, text: string }> {
    const headers: Record<string, string> = {}
    if (payload !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(payload))
    }
    if (this.token != null) headers.authorization = `Bearer ${this.token}`
    return await new Promise((resolve, reject) => {
      // over the connection judged above (a TCP target), never a new one
      const req = httpRequest({ ...this.target, method, path, headers, timeout: this.answerTimeoutMs, ...socket != null ? { createConnection: () => socket } : {} }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      })
      let connected = false
      req.on('socket', s => { if (!s.connecting) connected = true; else s.once('connect', () => { connected = true }) })
      // (the `timeout` option is not applied to a socket given by createConnection)
      req.setTimeout(this.answerTimeoutMs)
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT', answering: connected })))
      req.on('error', err => { reject(Object.assign(err, { answering: (err as { answering?: boolean }).answering ?? connected })) })
      req.end(payload)
    })
  }
}
