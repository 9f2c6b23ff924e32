// The HTTP API (fastify, JSON-schema validated). Services add their own routes
// through `routes`; this file owns the server, the error shape and the core views.
import Fastify, { type FastifyInstance, type FastifyError, type FastifyReply } from 'fastify'
import type { Agent } from '../agent.ts'
import type { AgentMetrics } from '../metrics.ts'
import type { Logger } from '../log.ts'
import { ApiError, errorBody } from './errors.ts'

export type RouteModule = (app: FastifyInstance, agent: Agent) => void

export interface ApiServerInit {
  agent: Agent
  metrics: AgentMetrics
  log: Logger
  routes?: RouteModule[]
}

const isLoopback = (ip: string): boolean => ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')

export class ApiServer {
  readonly app: FastifyInstance
  private readonly init: ApiServerInit
  private bound?: { host: string, port: number }

  constructor (init: ApiServerInit) {
    this.init = init
    this.app = Fastify({
      logger: false,
      bodyLimit: 1024 * 1024,
      // router-level failures (bad URL encoding, over-long ids) get the same error shape
      frameworkErrors: (err, _req, reply) => {
        init.metrics.apiErrors.inc({ code: 'bad_request' })
        void (reply as FastifyReply).status(err.statusCode ?? 400).send(errorBody('bad_request', err.message))
      }
    })
    this.registerCore()
    for (const r of init.routes ?? []) r(this.app, init.agent)
  }

  get address (): { host: string, port: number } {
    if (this.bound == null) throw new Error('API server not started')
    return this.bound
  }

  async start (at: { host: string, port: number }): Promise<void> {
    await this.app.listen({ host: at.host, port: at.port })
    const addr = this.app.server.address()
    this.bound = { host: at.host, port: typeof addr === 'object' && addr != null ? addr.port : at.port }
  }

  async stop (): Promise<void> {
    await this.app.close()
  }

  private registerCore (): void {
    const { app } = this
    const { agent, metrics } = this.init

    app.setErrorHandler((err: FastifyError | ApiError, _req, reply) => {
      let status: number
      let code: string
      if (err instanceof ApiError) {
        status = err.status
        code = err.code
      } else if (err.validation != null) {
        status = 400
        code = 'bad_request'
      } else if (typeof err.statusCode === 'number' && err.statusCode < 500) {
        status = err.statusCode
        code = err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'unsupported_media_type' : 'bad_request'
      } else {
        status = 500
        code = 'internal'
        this.init.log.error('request failed', { error: err.message })
      }
      metrics.apiErrors.inc({ code })
      void reply.status(status).send(errorBody(code, err.message))
    })
    app.setNotFoundHandler((req, reply) => {
      metrics.apiErrors.inc({ code: 'not_found' })
      void reply.status(404).send(errorBody('not_found', `no route ${req.method} ${req.url}`))
    })

    app.get('/healthz', async () => ({ ok: true }))

    app.get('/v1/status', async () => agent.status())

    app.get('/v1/nodes', async () => ({ nodes: agent.nodes() }))

    app.get<{ Params: { id: string } }>('/v1/nodes/:id', {
      schema: { params: { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 128 } }, required: ['id'] } }
    }, async (req) => {
      const n = agent.node(req.params.id)
      if (n == null) throw new ApiError(404, 'not_found', `no member with id or name "${req.params.id}"`)
      return n
    })

    // the token holds the cluster key: only for callers on this machine
    app.get('/v1/token', async (req) => {
      if (!isLoopback(req.ip)) throw new ApiError(403, 'forbidden', 'the join token is only given to callers on this machine')
      return { token: agent.token() }
    })

    app.get('/metrics', async (_req, reply) => {
      void reply.header('content-type', metrics.registry.contentType)
      return await metrics.registry.metrics()
    })
  }
}
