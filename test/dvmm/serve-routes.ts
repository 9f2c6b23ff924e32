// A node's DVMM routes served on loopback as the agent's API server serves them (its
// path parameters and error shape: node/api/server.ts), for the CLI tests.
import type { ExecutionContext } from 'ava'
import Fastify from 'fastify'
import { toApiError, errorBody } from '../../node/api/errors.ts'
import { MAX_PARAM_LENGTH } from '../../node/api/server.ts'

/** serves `dvmm`'s routes until the test ends; its address as VGRID_API takes it */
export async function serveDvmmRoutes (t: ExecutionContext, dvmm: { routes: (app: ReturnType<typeof Fastify>) => void }): Promise<string> {
  const app = Fastify({ routerOptions: { maxParamLength: MAX_PARAM_LENGTH } })
  app.setErrorHandler(async (err, _req, reply) => {
    const e = toApiError(err)
    return await reply.code(e.status).send(errorBody(e.code, e.message))
  })
  dvmm.routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => { await app.close() })
  return `127.0.0.1:${(app.server.address() as { port: number }).port}`
}
