// The HTTP API (fastify, JSON-schema validated), as a service: it serves the routes
// every other service brings, on loopback TCP (--api) and on a unix socket
// (--api-socket, mode 0660, group vgrid). It owns the error shape (errors.ts), who
// may change the grid (access.ts), /healthz and /metrics.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { chmod, chown, lstat, mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.ts'
import type { Service } from '../service.ts'
import { parseJsonBody } from './json-body.ts'
import { StaleReaderError } from '../../crdt/index.ts'
import { API_BODY_LIMIT, ApiError, errorBody, toApiError } from './errors.ts'
import { onlyQuery } from '../errors.ts'
import { AdminCache, ADMIN_GROUP, SocketTableCache, denial, isLoopback, loadOrCreateApiToken, tokenMatches, type Caller } from './access.ts'
import { processRegistry } from '../health-metrics.ts'
import { groupId } from '../groups.ts'

export interface ApiComponents {
  config: { api: { host: string, port: number }, apiSocket: string | null, dataDir: string }
  log: Logger
  registry: Registry
}

export interface ApiInit {
  /** the services whose routes to serve (their `routes`, in order) */
  services: ReadonlyArray<{ routes?: (app: FastifyInstance) => void }>
  /** why changes are refused for now (503 not_joined), or null (membership/views.ts notJoined) */
  refuseChanges?: () => string | null
  /** connections served at once on each listener (default MAX_API_CONNECTIONS; a test's flood is smaller) */
  maxConnections?: number
}

/** Route option `config: { access }`: reads are open, changes need an admin; 'admin' marks a read that needs one too. */
export type Access = 'open' | 'admin'
declare module 'fastify' {
  /** `query`: the query parameters the route takes (absent: none, and any is refused) */
  interface FastifyContextConfig { access?: Access, query?: readonly string[] }
}

/** how long the rest of a refused body is read and dropped before the connection is cut */
const LINGER_MS = 5_000
/** a path parameter, as sent (percent-encoded): above any route's own bound */
export const MAX_PARAM_LENGTH = 8192
/** a request (headers and body) that has not arrived in this long is cut off */
const REQUEST_TIMEOUT_MS = 10_000
/**
 * Connections served at once on each listener; more are closed as they come. Any local
 * user may connect to read, and 22,000 half-sent requests held for 30 s took every file
 * descriptor the agent had, which then could not start its watchdog and exited (bb24).
 * An admin's CLI goes through the unix socket, which has its own count.
 */
export const MAX_API_CONNECTIONS = 1024
/**
 * Connections one user (a uid, on loopback; a remote address otherwise) may hold at once
 * on the TCP listener: one user's flood leaves the rest to others and to admins (root
 * and the vgrid group, not held to it). A CLI command holds one.
 */
export const MAX_USER_CONNECTIONS = 64
/** how long an idle kept-alive connection stays open (fastify's own default is 72 s) */
const KEEP_ALIVE_MS = 5_000

export class ApiService implements Service {
  readonly name = 'api'
  readonly app: FastifyInstance
  private readonly c: ApiComponents
  private readonly errors: Counter<'code'>
  private readonly unixSockets = new WeakSet<Socket>()
  /** TCP connections: when accepted, and the caller once known (callerOf) */
  private readonly acceptedAt = new WeakMap<Socket, number>()
  private readonly callers = new WeakMap<Socket, Caller>()
  private readonly sockets = new SocketTableCache()
  /** connections answered with a client error (clientError) */
  private readonly answered = new WeakSet<Socket>()
  private readonly admins = new AdminCache()
  private unixServer?: Server
  private token = ''
  private bound?: { host: string, port: number }
  private readonly init: ApiInit
  private readonly dropped: Counter<'listener' | 'why'>
  private get maxConnections (): number { return this.init.maxConnections ?? MAX_API_CONNECTIONS }
  /** when a drop was last logged: once a minute at most */
  private droppedSaidAt = -Infinity
  /** TCP connections open per user (a uid, or a remote address), admins not counted */
  private readonly perUser = new Map<string, number>()

  constructor (components: ApiComponents, init: ApiInit) {
    this.c = components
    this.init = init
    this.errors = new Counter({ name: 'vgrid_api_errors_total', help: 'API requests answered with an error, by code', labelNames: ['code'] as const, registers: [components.registry] })
    this.app = Fastify({
      logger: false,
      bodyLimit: API_BODY_LIMIT,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_MS,
      // headers that trickle in are cut off at the same time as a body, and looked for
      // every second (Node looks every 30 s by default: half-sent requests piled up)
      http: { headersTimeout: REQUEST_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
      // the router's own cap (100) answered a 414 for volume paths of a few segments
      // (an encoded path reaches 2,100 characters and more) and for over-long label keys.
      // A parameter is then bounded by the route's schema where it has one (naming the
      // field), and by Node's 16 KB header limit on the whole URL
      routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
      // input is taken as sent: a number is not a string, null is not a value
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
      // router-level failures (bad URL encoding, over-long ids) get the same error shape
      frameworkErrors: (err, _req, reply) => { this.fail(reply as FastifyReply, toApiError(err)) },
      // failures before a request exists (headers too large, a body that trickles in)
      clientErrorHandler: (err, socket) => { this.clientError(err as NodeJS.ErrnoException, socket) }
    })
    // the API takes JSON only: a text/plain body would reach a route as a string and be
    // refused as "not a JSON object"; without this parser it is a 415 naming the type
    this.app.removeContentTypeParser('text/plain')
    // JSON with a depth bound and named refusals (json-body.ts)
    this.app.removeContentTypeParser('application/json')
    this.app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
      // a body sent compressed, or in a charset other than UTF-8, would be read as other
      // bytes than were meant (bb30: both taken as plain JSON): refused, naming which
      const enc = req.headers['content-encoding']?.trim().toLowerCase()
      if (enc != null && enc !== '' && enc !== 'identity') { done(new ApiError(415, 'unsupported_media_type', `content-encoding "${enc.slice(0, 40)}" is not taken: send the JSON body as it is`), undefined); return }
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase()
      if (charset != null && charset !== 'utf-8' && charset !== 'utf8') { done(new ApiError(415, 'unsupported_media_type', `charset "${charset.slice(0, 40)}" is not taken: JSON bodies are UTF-8`), undefined); return }
      try { done(null, parseJsonBody(body as string)) } catch (err) { done(err as Error, undefined) }
    })
    this.app.server.on('connection', (sock: Socket) => { this.acceptedAt.set(sock, performance.now()) })
    this.dropped = new Counter({ name: 'vgrid_api_connections_dropped_total', help: `API connections closed as they came: ${this.maxConnections} were open on their listener (why="full"), or ${MAX_USER_CONNECTIONS} of their user's on the TCP listener (why="user")`, labelNames: ['listener', 'why'] as const, registers: [components.registry] })
    this.app.server.maxConnections = this.maxConnections
    this.app.server.on('drop', () => { this.onDrop('tcp', 'full') })
    this.app.server.on('connection', (sock: Socket) => { if (!this.unixSockets.has(sock)) void this.holdToShare(sock) })
    this.registerCore()
    for (const s of init.services) s.routes?.(this.app)
  }

  get address (): { host: string, port: number } {
    if (this.bound == null) throw new Error('API server not started')
    return this.bound
  }

  async start (): Promise<void> {
    const { api, apiSocket, dataDir } = this.c.config
    this.token = await loadOrCreateApiToken(dataDir, this.c.log)
    await this.app.listen({ host: api.host, port: api.port })
    const addr = this.app.server.address()
    this.bound = { host: api.host, port: typeof addr === 'object' && addr != null ? addr.port : api.port }
    if (apiSocket != null) await this.listenUnix(apiSocket)
  }

  async stop (): Promise<void> {
    const path = this.c.config.apiSocket
    if (this.unixServer != null) {
      await new Promise<void>(resolve => this.unixServer!.close(() => resolve()))
      if (path != null) await rm(path, { force: true })
    }
    await this.app.close()
  }

  /** The unix socket feeds the same HTTP server; its connections are marked as admin's (the file mode let them in). */
  private async listenUnix (path: string): Promise<void> {
    if (Buffer.byteLength(path) > 107) {
      this.c.log.warn('API socket path is too long for a unix socket; serving TCP only', { path })
      return
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o755 })
    await removeStaleSocket(path)
    const server = createServer(sock => {
      this.unixSockets.add(sock)
      this.app.server.emit('connection', sock)
    })
    server.maxConnections = this.maxConnections
    server.on('drop', () => { this.onDrop('unix', 'full') })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(path, () => { server.off('error', reject); resolve() })
    })
    this.unixServer = server
    await chmod(path, 0o660)
    const gid = groupId(ADMIN_GROUP)
    if (gid != null) await chown(path, 0, gid).catch(err => { this.c.log.warn('could not give the API socket to the vgrid group', { path, error: (err as Error).message }) })
  }

  private async callerOf (req: FastifyRequest): Promise<Caller> {
    const s = req.socket
    if (this.unixSockets.has(s)) return { via: 'unix' }
    const client = { address: s.remoteAddress ?? '', port: s.remotePort ?? 0 }
    const loopback = isLoopback(client.address)
    // only connections made on this machine are in its socket table
    // a connection's caller does not change: asked once per connection, from a table read
    // once for every connection accepted before it
    const known = this.callers.get(s)
    if (known != null) return known
    const uid = loopback ? await this.sockets.uidOfClient(client, { address: s.localAddress ?? '', port: s.localPort ?? 0 }, this.acceptedAt.get(s) ?? performance.now()) : null
    const caller: Caller = { via: 'tcp', uid, loopback }
    this.callers.set(s, caller)
    return caller
  }

  private onDrop (listener: 'tcp' | 'unix', why: 'full' | 'user', who?: string): void {
    this.dropped.inc({ listener, why })
    const now = performance.now()
    if (now - this.droppedSaidAt < 60_000) return
    this.droppedSaidAt = now
    if (why === 'user') this.c.log.warn(`API connections refused: ${who ?? 'a user'} holds ${MAX_USER_CONNECTIONS} open on the TCP listener, a user's most`, { listener })
    else this.c.log.warn(`API connections refused: ${this.maxConnections} are open on the ${listener === 'tcp' ? 'TCP listener' : 'unix socket'}`, { listener })
  }

  /**
   * Holds a TCP connection's user to MAX_USER_CONNECTIONS: its uid (from the socket
   * table, as for access) on loopback, its address otherwise; admins are not held. One
   * whose user cannot be told is not held either (the listener's own cap still is).
   */
  private async holdToShare (sock: Socket): Promise<void> {
    const remote = sock.remoteAddress ?? ''
    let who: string
    if (isLoopback(remote)) {
      const uid = await this.sockets.uidOfClient({ address: remote, port: sock.remotePort ?? 0 }, { address: sock.localAddress ?? '', port: sock.localPort ?? 0 }, this.acceptedAt.get(sock) ?? performance.now()).catch(() => null)
      if (uid == null) return
      // asked once per connection: access (callerOf) reads this
      if (!this.callers.has(sock)) this.callers.set(sock, { via: 'tcp', uid, loopback: true })
      if (this.admins.isAdmin(uid)) return
      const name = this.admins.nameOf(uid)
      who = `uid ${uid}${name != null ? ` (${name})` : ''}`
    } else {
      who = `address ${remote}`
    }
    if (sock.destroyed) return
    const n = this.perUser.get(who) ?? 0
    if (n >= MAX_USER_CONNECTIONS) {
      sock.destroy()
      this.onDrop('tcp', 'user', who)
      return
    }
    this.perUser.set(who, n + 1)
    sock.once('close', () => {
      const left = (this.perUser.get(who) ?? 1) - 1
      if (left <= 0) this.perUser.delete(who)
      else this.perUser.set(who, left)
    })
  }

  private fail (reply: FastifyReply, e: ApiError): void {
    this.errors.inc({ code: e.code })
    if (e.status >= 500 && e.code === 'internal') this.c.log.error('request failed', { error: e.message })
    if (e.code === 'body_too_large') lingerForBody(reply)
    void reply.status(e.status).send(errorBody(e.code, e.message))
  }

  private clientError (err: NodeJS.ErrnoException, socket: Socket): void {
    const [status, code, text] = err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'Request Header Fields Too Large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'request_timeout', 'Request Timeout'] : [400, 'bad_request', 'Bad Request']
    // once per connection: the end of a connection already answered (and being drained
    // below) can raise a second parser error, which is no second bad request
    if (this.answered.has(socket)) return
    this.answered.add(socket)
    this.errors.inc({ code })
    if (!socket.writable) { socket.destroy(); return }
    const body = JSON.stringify(errorBody(code, code === 'headers_too_large' ? 'the request headers are too large' : code === 'request_timeout' ? `the request did not arrive within ${REQUEST_TIMEOUT_MS / 1000} s` : `malformed request: ${err.message}`))
    socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    // the client may still be sending (a header far over the limit): as for a refused
    // body (lingerForBody), its bytes are read and dropped until it ends, LINGER_MS at most
    socket.removeAllListeners('data')
    socket.on('data', () => {})
    const timer = setTimeout(() => socket.destroy(), LINGER_MS)
    timer.unref()
    socket.once('end', () => { socket.destroy() })
    socket.once('close', () => { clearTimeout(timer) })
    socket.resume()
  }

  private registerCore (): void {
    const { app } = this
    app.setErrorHandler((err, req, reply) => { this.fail(reply, toApiError(err, req.headers['content-type'])) })
    // a path that exists with other methods is a 405 naming them (and the Allow header)
    const routes: Array<{ method: string, path: RegExp }> = []
    app.addHook('onRoute', r => {
      const path = new RegExp(`^${r.url.split('/').map(seg => seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('/')}$`)
      for (const m of [r.method].flat()) routes.push({ method: m, path })
      if ([r.method].flat().every(m => m === 'GET' || m === 'HEAD')) r.handler = readAgain(r.handler)
    })
    app.setNotFoundHandler((req, reply) => {
      const path = req.url.split('?')[0] ?? ''
      const allowed = [...new Set(routes.filter(r => r.path.test(path)).map(r => r.method))].filter(m => m !== 'HEAD').sort()
      if (allowed.length > 0) {
        void reply.header('allow', allowed.join(', '))
        this.fail(reply, new ApiError(405, 'method_not_allowed', `${req.method} is not allowed on ${path} (allowed: ${allowed.join(', ')})`))
        return
      }
      this.fail(reply, new ApiError(404, 'not_found', `no route ${req.method} ${req.url}`))
    })

    // a body that trickles in is cut off: Node's own request timeout let one byte a
    // second hold a request open indefinitely
    app.addHook('onRequest', async (req) => {
      const t = setTimeout(() => {
        if (req.raw.complete) return
        this.clientError(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), req.socket)
        req.socket.destroySoon()
      }, REQUEST_TIMEOUT_MS)
      t.unref()
      req.raw.once('end', () => clearTimeout(t))
      req.raw.once('close', () => clearTimeout(t))
    })

    refuseUnknownQueries(app)

    // changes, and reads marked admin, need an admin caller (access.ts)
    app.addHook('onRequest', async (req) => {
      const access = req.routeOptions.config?.access ?? (req.method === 'GET' || req.method === 'HEAD' ? 'open' : 'admin')
      if (access === 'open') return
      const caller = await this.callerOf(req)
      const tokenOk = tokenMatches(req.headers.authorization, this.token)
      if (req.headers.authorization != null && !tokenOk) throw new ApiError(401, 'unauthorized', 'the API token presented is not this agent\'s')
      const why = denial(caller, tokenOk, this.admins.isAdmin, this.admins.nameOf)
      if (why != null) throw new ApiError(caller.via === 'tcp' && caller.uid != null ? 403 : 401, caller.via === 'tcp' && caller.uid != null ? 'forbidden' : 'unauthorized', why)
      if (req.method === 'GET' || req.method === 'HEAD') return
      const refused = this.init.refuseChanges?.() ?? null
      if (refused != null) throw new ApiError(503, 'not_joined', refused)
    })

    app.get('/healthz', async () => ({ ok: true }))
    app.get('/metrics', async (_req, reply) => {
      void reply.header('content-type', this.c.registry.contentType)
      // the agent's, then the process's (health-metrics.ts processRegistry)
      return `${await this.c.registry.metrics()}\n${await processRegistry().metrics()}`
    })
  }
}

/**
 * A query parameter a route does not take (its `config.query`) is a 400 naming it, on
 * every route (bb19: GET /v1/vms?bogus=1 answered 200, as if it had been heard, where
 * /v1/volumes refused it). Routes check no query of their own.
 */
export function refuseUnknownQueries (app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    if (req.routeOptions.url == null) return
    onlyQuery(req.query, req.routeOptions.config?.query ?? [])
  })
}

/** A socket file left by an agent that died is removed; one that answers belongs to a running agent. */
async function removeStaleSocket (path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (st == null) return
  if (!st.isSocket()) throw new Error(`API socket path ${path} exists and is not a socket`)
  const alive = await new Promise<boolean>(resolve => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
  if (alive) throw Object.assign(new Error(`listen EADDRINUSE: address already in use ${path}`), { code: 'EADDRINUSE' })
  await rm(path, { force: true })
}

/**
 * A body refused as too large is still arriving. Closing at once (fastify asks for
 * `connection: close`) leaves it unread, the kernel answers with a reset, and the client
 * may lose the 413 with it (seen in CI as "fetch failed"). So the rest is read and dropped,
 * as Node does for any unread body, for at most LINGER_MS; then the connection is cut.
 */
function lingerForBody (reply: FastifyReply): void {
  reply.removeHeader('connection')
  const req = reply.request.raw
  if (req.complete) return
  const socket = req.socket
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  const done = (): void => { clearTimeout(timer) }
  req.once('end', done)
  socket.once('close', done)
}

/**
 * A read that took the document's reader, then waited (on another node's answer, a
 * volume's health) while the document moved on, finds its reader stale: asked again
 * from the start, up to 3 times (a tester's `vm ls` failed as an internal error just
 * after another agent came back). Only for reads: they change nothing.
 */
function readAgain<H extends (...args: never[]) => unknown> (handler: H): H {
  return (async function (this: unknown, ...args: Parameters<H>) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await handler.apply(this, args)
      } catch (err) {
        if (!(err instanceof StaleReaderError) || attempt >= 2 || (args[1] as { sent?: boolean } | undefined)?.sent === true) throw err
      }
    }
  }) as unknown as H
}
