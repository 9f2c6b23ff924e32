// A flood of connections to the API (any local user may open them) must not take the
// agent's file descriptors (bb24: 22,000 half-sent requests, held 30 s each, used up all
// 20,000 and the agent exited). Each listener serves MAX_API_CONNECTIONS at once and
// closes more as they come; half-sent requests are cut off after the request timeout
// (10 s); the unix socket, an admin's way in, answers all the while.
import test from 'ava'
import { connect, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'node:http'
import { Registry } from 'prom-client'
import { ApiService, MAX_API_CONNECTIONS } from '../../node/api/server.ts'
import { silentLogger } from '../../node/log.ts'

/** a connection that sends half a request and waits; resolves once the server closed it, with what it answered */
function halfRequest (port: number): { opened: Promise<void>, closed: Promise<{ answer: string, at: number }>, sock: Socket } {
  const sock = connect(port, '127.0.0.1')
  let answer = ''
  sock.on('data', d => { answer += d.toString() })
  sock.on('error', () => {})
  const opened = new Promise<void>(resolve => sock.once('connect', () => { sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); resolve() }))
  const closed = new Promise<{ answer: string, at: number }>(resolve => sock.once('close', () => resolve({ answer, at: Date.now() })))
  return { opened, closed, sock }
}

async function viaUnix (path: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const r = request({ socketPath: path, path: '/healthz' }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    r.on('error', reject)
    r.end()
  })
}

test('connections past the cap are closed as they come; half-sent requests are cut off after 10 s; the unix socket answers meanwhile', async t => {
  t.timeout(60_000)
  const dir = await mkdtemp(join(tmpdir(), 'api-flood-'))
  const registry = new Registry()
  const socketPath = join(dir, 'api.sock')
  const api = new ApiService({ config: { api: { host: '127.0.0.1', port: 0 }, apiSocket: socketPath, dataDir: dir }, log: silentLogger, registry }, { services: [] })
  await api.start()
  const conns: Array<ReturnType<typeof halfRequest>> = []
  t.teardown(async () => { for (const c of conns) c.sock.destroy(); await api.stop(); await rm(dir, { recursive: true, force: true }) })
  const { port } = api.address
  const t0 = Date.now()
  for (let i = 0; i < MAX_API_CONNECTIONS + 40; i++) conns.push(halfRequest(port))
  await Promise.all(conns.map(async c => await c.opened))
  // those past the cap: closed at once, unanswered
  const early = await Promise.race([Promise.all(conns.slice(MAX_API_CONNECTIONS).map(async c => await c.closed)), new Promise<null>(resolve => setTimeout(() => resolve(null), 5000))])
  t.not(early, null, 'the connections past the cap were closed within 5 s')
  t.true(early!.every(c => c.answer === ''))
  t.is(await viaUnix(socketPath), 200, 'the unix socket answers while the TCP listener is full')
  const dropped = (await registry.getSingleMetric('vgrid_api_connections_dropped_total')!.get()).values.find(v => v.labels.listener === 'tcp')?.value ?? 0
  t.true(dropped >= 40, `drops counted (${dropped})`)
  // the half-sent ones: answered 408 and closed after the request timeout (not Node's 30 s check)
  const held = await Promise.all(conns.slice(0, MAX_API_CONNECTIONS).map(async c => await c.closed))
  const last = Math.max(...held.map(c => c.at)) - t0
  t.true(last < 20_000, `every half-sent request closed within 20 s (the last after ${last} ms)`)
  t.true(held.filter(c => c.answer.startsWith('HTTP/1.1 408')).length > MAX_API_CONNECTIONS / 2, 'answered 408 request timeout')
  // and new connections are served again
  const again = halfRequest(port)
  conns.push(again)
  await again.opened
  again.sock.write('\r\n')
  const answered = await again.closed.catch(() => null)
  t.regex(answered?.answer ?? '', /^HTTP\/1.1 200/)
})
