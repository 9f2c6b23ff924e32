// Who may change the grid, against a real agent: an unprivileged local user reads
// status but gets 403 naming what is missing for a change and for the join token;
// root succeeds over loopback TCP (identified by the kernel's socket table) and over
// the unix socket; the API token from the data dir lets anyone in. And input is taken
// as sent: wrong types, unknown fields, control characters and lone surrogates get a
// 400 naming the field; oversized bodies and headers get the one error shape.
import test from 'ava'
import { execFile } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { AgentGroup, AgentProcess } from './helpers/agent-process.ts'
import { NODE_LABELS_MAX } from '../node/api/state-routes.ts'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

interface Curl { code: number, status: number, body: string }
/** curl as some user: the request's socket is that user's, as the agent sees it */
async function curl (args: string[], uid?: number): Promise<Curl> {
  return await new Promise(resolve => {
    execFile('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', ...args], { uid, gid: uid, timeout: 20_000 }, (err, stdout) => {
      const i = stdout.lastIndexOf('\n')
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) })
    })
  })
}
const errorOf = (c: Curl): { code: string, message: string } => (JSON.parse(c.body) as { error: { code: string, message: string } }).error

const group = new AgentGroup()
let agent: AgentProcess
let url: string
test.before(async () => {
  agent = await group.add({ name: 'acc0' })
  url = `http://${agent.api}`
})
test.after.always(async () => { await group.cleanup() })

const check = isRoot ? test : test.skip
// each test its own label key: the tests of this file run at the same time
const labelUrl = (key: string): string => `${url}/v1/nodes/acc0/labels/${key}`

check('an unprivileged user reads status, and is refused a change and the token with 403 naming what is missing', async t => {
  const status = await curl([`${url}/v1/status`], NOBODY)
  t.is(status.status, 200, status.body)
  t.is((await curl([`${url}/metrics`], NOBODY)).status, 200)

  const put = await curl(['-X', 'PUT', '-H', 'content-type: application/json', '-d', '{"value":"r1"}', labelUrl('zone')], NOBODY)
  t.is(put.status, 403, put.body)
  t.is(errorOf(put).code, 'forbidden')
  t.regex(errorOf(put).message, /user nobody \(uid 65534\) is neither root nor in the "vgrid" group/)
  t.regex(errorOf(put).message, /API token/)
  const tok = await curl([`${url}/v1/token`], NOBODY)
  t.is(tok.status, 403, tok.body)
  t.regex(errorOf(tok).message, /neither root nor in the "vgrid" group/)
  // a VM's console is what its guest prints (secrets included): refused before the VM is even looked up
  const con = await curl([`${url}/v1/vms/any-vm/console`], NOBODY)
  t.is(con.status, 403, con.body)
  t.regex(errorOf(con).message, /neither root nor in the "vgrid" group/)
  // nothing changed
  const node = await agent.get<{ labels: Record<string, string> }>('/v1/nodes/acc0')
  t.is(node.labels.zone, undefined)
  t.regex(await agent.metrics(), /vgrid_api_errors_total\{code="forbidden"\} 3/)
})

check('root changes the grid over loopback TCP and over the unix socket; the socket is 0660', async t => {
  const put = await curl(['-X', 'PUT', '-H', 'content-type: application/json', '-d', '{"value":"r1"}', labelUrl('rack')])
  t.is(put.status, 200, put.body)
  const tok = await curl([`${url}/v1/token`])
  t.is(tok.status, 200, tok.body)
  t.regex((JSON.parse(tok.body) as { token: string }).token, /^vgrid1\./)

  const sock = join(agent.opts.dataDir, 'api.sock')
  t.is((await stat(sock)).mode & 0o777, 0o660)
  const viaSocket = await curl(['--unix-socket', sock, '-X', 'DELETE', 'http://agent/v1/nodes/acc0/labels/rack'])
  t.is(viaSocket.status, 200, viaSocket.body)
  // another user cannot even connect to it
  const denied = await curl(['--unix-socket', sock, 'http://agent/v1/status'], NOBODY)
  t.is(denied.code, 7, 'curl: failed to connect')
})

check('the API token from the data dir lets any user in; a wrong one is a 401', async t => {
  const token = (await readFile(join(agent.opts.dataDir, 'api.token'), 'utf8')).trim()
  t.is((await stat(join(agent.opts.dataDir, 'api.token'))).mode & 0o777, 0o600)
  const ok = await curl(['-X', 'PUT', '-H', 'content-type: application/json', '-H', `authorization: Bearer ${token}`, '-d', '{"value":"r2"}', labelUrl('row')], NOBODY)
  t.is(ok.status, 200, ok.body)
  const bad = await curl(['-X', 'PUT', '-H', 'content-type: application/json', '-H', 'authorization: Bearer 00', '-d', '{"value":"r3"}', labelUrl('row')])
  t.is(bad.status, 401, bad.body)
  t.is(errorOf(bad).code, 'unauthorized')
})

test('bodies are taken as sent: wrong types, unknown fields, control characters and lone surrogates are a 400 naming the field', async t => {
  for (const [body, field] of [
    ['{"value":null}', /value/], ['{"value":7}', /value/], ['{"value":true}', /value/], ['{"value":["a"]}', /value/],
    ['{}', /value/], ['{"value":"a","extra":1}', /extra|additional/], ['[]', /body/]
  ] as const) {
    const r = await agent.request('PUT', '/v1/nodes/acc0/labels/k', JSON.parse(body))
    t.is(r.status, 400, body)
    t.regex((r.body as { error: { message: string } }).error.message, field, body)
    // the code every route's bad field has (bb30: the label route said bad_request)
    t.is((r.body as { error: { code: string } }).error.code, 'invalid', body)
  }
  // a volume path of a few segments is longer than the router's default cap (100): it reaches its route
  const path = encodeURIComponent(`/${'a'.repeat(60)}/${'b'.repeat(60)}`)
  const vol = await agent.request('GET', `/v1/volumes/${path}`)
  t.is(vol.status, 404, JSON.stringify(vol.body))
  t.regex((vol.body as { error: { message: string } }).error.message, /aaaa\/bbbb/)
  // a key far over its limit is named as the key, not as the router's "max param length"
  const long = await agent.request('PUT', `/v1/nodes/acc0/labels/${'k'.repeat(300)}`, { value: 'v' })
  t.is(long.status, 400)
  t.regex((long.body as { error: { message: string } }).error.message, /^label key "k{64}\.\.\." \(300 characters\) must be 1-63 letters/)
  // a volume list by a prefix that is no path is refused, not answered empty
  const prefix = await agent.request('GET', '/v1/volumes?prefix=shop')
  t.is(prefix.status, 400)
  t.regex((prefix.body as { error: { message: string } }).error.message, /prefix "shop" is not a volume path/)
  // an agent without the connection manager (loopback tests run --no-overlay) says so
  const links = await agent.request('GET', '/v1/links')
  t.is(links.status, 503)
  t.like(links.body, { error: { code: 'lcm_off' } })
  for (const value of ['a\u0085b', 'tab\there', 'x\u009f', '\ud800', 'a\udc00b', 'del\u007f', 'evil\u202etxt.exe', '\u2066x']) {
    const r = await agent.request('PUT', '/v1/nodes/acc0/labels/k', { value })
    t.is(r.status, 400, JSON.stringify(value))
    t.regex((r.body as { error: { code: string, message: string } }).error.message, /label value/)
  }
  // a node carries at most NODE_LABELS_MAX operator labels (bb35: 3,000 taken, and vgrid nodes printed 941 KB)
  const put = async (i: number): Promise<{ status: number, body: unknown }> => await agent.request('PUT', `/v1/nodes/acc0/labels/many${i}`, { value: 'v' })
  for (let i = 0; i < NODE_LABELS_MAX - 64; i += 64) for (const r of await Promise.all(Array.from({ length: 64 }, async (_, j) => await put(i + j)))) t.is(r.status, 200)
  let over = await put(NODE_LABELS_MAX - 64)
  for (let i = NODE_LABELS_MAX - 63; i <= NODE_LABELS_MAX && over.status === 200; i++) over = await put(i)
  t.is(over.status, 409)
  t.like(over.body, { error: { code: 'too_many_labels' } })
  t.regex((over.body as { error: { message: string } }).error.message, /^node acc0 has \d+ operator labels, the most a node may carry: remove one first \(vgrid node unlabel acc0 KEY\)$/)
  const again = await agent.request('PUT', '/v1/nodes/acc0/labels/many0', { value: 'again' })
  t.is(again.status, 200, 'one it has can still be set')
  t.true(Object.keys((again.body as { labels: object }).labels).length >= NODE_LABELS_MAX)
  for (let i = 0; i <= NODE_LABELS_MAX; i += 64) await Promise.all(Array.from({ length: 64 }, async (_, j) => await agent.request('DELETE', `/v1/nodes/acc0/labels/many${i + j}`)))
})

test('an oversized body is a 413 and oversized headers a 431, both in the error shape and counted', async t => {
  const big = await agent.request('PUT', '/v1/nodes/acc0/labels/k', { value: 'x'.repeat(2 * 1024 * 1024) })
  t.is(big.status, 413)
  t.is((big.body as { error: { code: string } }).error.code, 'body_too_large')
  t.is((big.body as { error: { message: string } }).error.message, 'the request body is over the API\'s limit of 1 MiB')
  const headers = await rawRequest(agent.apiPort, `GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`)
  t.regex(headers, /^HTTP\/1\.1 431 /)
  t.regex(headers, /"code":"headers_too_large"/)
  // far over the limit: the client is still sending when the answer goes, and gets it rather than a reset
  for (const size of [100 * 1024, 1024 * 1024]) {
    const huge = await rawRequest(agent.apiPort, `GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(size)}\r\n\r\n`)
    t.regex(huge, /^HTTP\/1\.1 431 /, `${size} bytes of header`)
  }
  const m = await agent.metrics()
  t.regex(m, /vgrid_api_errors_total\{code="body_too_large"\} [1-9]/) // the next test is refused too
  t.regex(m, /vgrid_api_errors_total\{code="headers_too_large"\} 3/)
})

test('a body nested deeper than any request, a __proto__ key, bad JSON and an empty JSON body are 400s naming what is wrong', async t => {
  const send = async (body: string): Promise<{ status: number, error: { code: string, message: string } }> => {
    const res = await fetch(`${url}/v1/volumes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    return { status: res.status, error: ((await res.json()) as { error: { code: string, message: string } }).error }
  }
  // 5,000 levels overflowed the stack of the code quoting the bad value: a 500
  const deep = await send(`{"path":${'['.repeat(5000)}${']'.repeat(5000)},"size":"64M"}`)
  t.is(deep.status, 400)
  t.regex(deep.error.message, /the body is nested more than 32 levels deep \(at body\.path\[0\]/)
  const proto = await send('{"__proto__":{"x":1},"path":"/p/a","size":"64M"}')
  t.is(proto.status, 400)
  t.is(proto.error.message, 'body.__proto__: the key "__proto__" is refused in a request body')
  const ctor = await send('{"path":"/p/a","size":"64M","x":{"constructor":{"prototype":{}}}}')
  t.regex(ctor.error.message, /^body\.x\.constructor: the key "constructor" is refused/)
  const bad = await send('{"path": ')
  t.is(bad.status, 400)
  t.regex(bad.error.message, /^the body is not valid JSON: /)
  const empty = await send('')
  t.is(empty.status, 400)
  t.regex(empty.error.message, /the body is empty, but its content-type says JSON/)
  const m = await agent.metrics()
  t.notRegex(m, /vgrid_api_errors_total\{code="internal"\}/)
})

test('/metrics says what status says: health ok or not, the problems by cause, HA, the release, and the process (bb32)', async t => {
  const m = await agent.metrics()
  const status = await (await fetch(`http://127.0.0.1:${agent.apiPort}/v1/status`)).json() as { health: { ok: boolean, problems: Array<{ service: string, cause: string }> } }
  t.regex(m, new RegExp(`^vgrid_health_ok ${status.health.ok ? 1 : 0}$`, 'm'))
  for (const p of status.health.problems) t.regex(m, new RegExp(`^vgrid_health_problems\\{service="${p.service}",cause="${p.cause}"\\} 1$`, 'm'))
  t.regex(m, /^vgrid_build_info\{version="[^"]+"\} 1$/m)
  t.regex(m, /^vgrid_process_resident_memory_bytes \d+/m)
  t.regex(m, /^vgrid_nodejs_eventloop_lag_seconds /m)
})

test('the rest of a refused body is read, not reset: the client gets its 413 after sending it all, and the connection serves the next request', async t => {
  const size = 3 * 1024 * 1024
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect(agent.apiPort, '127.0.0.1', () => {
      s.write(`PUT /v1/nodes/acc0/labels/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`)
    })
    let out = ''
    let sent = false
    s.on('data', d => {
      out += d.toString()
      // the 413 came before the body: send all of it now, then a second request
      if (!sent && out.includes('\r\n\r\n')) {
        sent = true
        s.write(Buffer.alloc(size, 0x20))
        s.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
      }
    })
    s.on('close', () => resolve(out))
    s.on('error', reject)
    s.setTimeout(20_000, () => { s.destroy(); resolve(out) })
  })
  t.regex(answer, /^HTTP\/1\.1 413 /)
  t.regex(answer, /"code":"body_too_large"/)
  t.regex(answer, /HTTP\/1\.1 200 /, 'the second request on the same connection is answered')
})

test('a body that trickles in is cut off with a 408 in the error shape', async t => {
  const started = Date.now()
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect(agent.apiPort, '127.0.0.1', () => {
      s.write('PUT /v1/nodes/acc0/labels/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{')
    })
    // one byte a second: never the whole body
    const drip = setInterval(() => { if (s.writable) s.write(' ') }, 1000)
    let out = ''
    s.on('data', d => { out += d.toString() })
    s.on('close', () => { clearInterval(drip); resolve(out) })
    s.on('error', () => {})
    setTimeout(() => { clearInterval(drip); s.destroy(); reject(new Error('still open after 40 s')) }, 40_000)
  })
  t.regex(answer, /^HTTP\/1\.1 408 /)
  t.regex(answer, /"code":"request_timeout"/)
  t.true(Date.now() - started < 40_000)
})

async function rawRequest (port: number, text: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => { s.write(text) })
    let out = ''
    s.on('data', d => { out += d.toString() })
    s.on('close', () => resolve(out))
    s.on('error', reject)
    s.setTimeout(10_000, () => { s.destroy(); resolve(out) })
  })
}

test('a query parameter a route does not take is a 400 naming it, on every route (bb19: /v1/vms?bogus=1 answered 200)', async t => {
  for (const path of ['/v1/nodes?bogus=1', '/v1/vms?bogus=1', '/v1/status?x=', '/healthz?x=1']) {
    const r = await curl([`${url}${path}`])
    t.is(r.status, 400, `${path}: ${r.body}`)
    t.regex(errorOf(r).message, path.startsWith('/v1/vms') ? /^unknown query parameter "bogus" \(this request takes state, node, app, label\)$/ : /^unknown query parameter "(bogus|x)" \(this request takes none\)$/)
  }
  const ls = await curl([`${url}/v1/volumes?prefix=/`])
  t.is(ls.status, 200, `a parameter the route takes: ${ls.body}`)
})
