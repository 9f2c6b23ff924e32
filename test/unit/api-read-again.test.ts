// A read whose document reader went stale while it waited is asked again, not answered
// as an internal error; a change is never run twice.
import test from 'ava'
import { Registry } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import { ApiService } from '../../node/api/server.ts'
import { silentLogger } from '../../node/log.ts'
import { StaleReaderError } from '../../crdt/index.ts'

test('a read that finds its reader stale is asked again (up to 3 times); a change is not', async t => {
  let reads = 0
  let always = 0
  let changes = 0
  const api = new ApiService({ config: { api: { host: '127.0.0.1', port: 0 }, apiSocket: null, dataDir: '/nonexistent' }, log: silentLogger, registry: new Registry() }, {
    services: [{
      routes: (app: FastifyInstance) => {
        app.get('/v1/once-stale', async () => { if (reads++ === 0) throw new StaleReaderError('this Reader is for an older version of the document'); return { reads } })
        app.get('/v1/always-stale', async () => { always++; throw new StaleReaderError('this Reader is for an older version of the document') })
        app.post('/v1/change', { config: { access: 'open' } }, async () => { changes++; throw new StaleReaderError('this Reader is for an older version of the document') })
      }
    }]
  })
  const once = await api.app.inject({ method: 'GET', url: '/v1/once-stale' })
  t.is(once.statusCode, 200)
  t.deepEqual(once.json(), { reads: 2 })
  // a reader stale every time: three tries, then the error
  t.is((await api.app.inject({ method: 'GET', url: '/v1/always-stale' })).statusCode, 500)
  t.is(always, 3)
  await api.app.inject({ method: 'POST', url: '/v1/change', payload: {} })
  t.is(changes, 1, 'a change runs once')
})
