// A request that fails a route's schema is answered in the API's words, naming the field
// as a client sends it (bb24: `vm show ""` said "params/id must NOT have fewer than 1
// characters").
import test from 'ava'
import { Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import { ApiService } from '../../node/api/server.ts'
import { silentLogger } from '../../node/log.ts'

test('schema failures name the field and say what it must be, in plain words', async t => {
  const api = new ApiService({ config: { api: { host: '127.0.0.1', port: 0 }, apiSocket: null, dataDir: '/nonexistent' }, log: silentLogger, registry: new Registry() }, {
    services: [{
      routes: (app: FastifyInstance) => {
        app.get('/v1/things/:id', { schema: { params: { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 5 } } } } }, async () => ({}))
        app.post('/v1/things', { config: { access: 'open' }, schema: { body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string' }, spec: { type: 'object', properties: { mode: { enum: ['a', 'b'] }, tags: { type: 'array', maxItems: 2 } } } } } } }, async () => ({}))
      }
    }]
  })
  const said = async (method: 'GET' | 'POST', url: string, payload?: unknown): Promise<string> => {
    const r = await api.app.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) })
    t.is(r.statusCode, 400, r.body)
    return r.json<{ error: { message: string } }>().error.message
  }
  t.is(await said('GET', '/v1/things/'), 'id (in the path) must not be empty')
  t.is(await said('GET', '/v1/things/abcdefg'), 'id (in the path) must have at most 5 characters')
  t.is(await said('POST', '/v1/things', {}), 'name is missing')
  t.is(await said('POST', '/v1/things', { name: 1 }), 'name must be a string')
  t.is(await said('POST', '/v1/things', { name: 'x', spec: { mode: 'c' } }), 'spec.mode must be one of: "a", "b"')
  t.is(await said('POST', '/v1/things', { name: 'x', spec: { tags: [1, 2, 3] } }), 'spec.tags must have at most 2 items')
  t.is(await said('POST', '/v1/things', { name: 'x', spec: 1 }), 'spec must be an object')
  t.is(await said('POST', '/v1/things', []), 'the request body must be an object')
})
