// A server that is not a vgrid agent (or answers in another shape) is said as such,
// never in JavaScript's words: `vgrid nodes` against a plain web server printed
// "Cannot read properties of undefined (reading 'map')", and a bare 404 "request
// failed with status 404". Long values echoed in errors are clipped.
import test from 'ava'
import { createServer, type Server } from 'node:http'
import { ApiClient, clipEchoes, notAgentAnswer } from '../../node/cli/client.ts'
import { runCli } from '../helpers/cli-run.ts'

const run = async (args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof runCli> => await runCli(args, { VGRID_DEBUG: undefined, ...env })


/** a web server that is no vgrid agent: every path answered as `answers` says */
async function server (t: { teardown: (fn: () => void) => void }, answers: Record<string, [number, string]>): Promise<string> {
  const s: Server = createServer((req, res) => {
    const [status, body] = answers[req.url ?? ''] ?? [404, '']
    res.writeHead(status, body.startsWith('{') ? { 'content-type': 'application/json' } : {})
    res.end(body)
  })
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { s.close() })
  return `127.0.0.1:${(s.address() as { port: number }).port}`
}

test('an answer of another shape is said as not what a vgrid agent answers, without JavaScript\'s words; VGRID_DEBUG shows the error', async t => {
  const at = await server(t, { '/v1/nodes': [200, '{"weird":true}'], '/v1/status': [200, '[]'] })
  const nodes = await run(['--api', at, 'nodes'])
  t.is(nodes.code, 1)
  t.is(nodes.stderr, `vgrid: the answer from ${at} to GET /v1/nodes lacks what this command reads: is --api pointing at a vgrid agent, and of this CLI's release (vgrid --version)? (VGRID_DEBUG=1 shows the error)\n`)
  const status = await run(['status', '--api', at])
  t.regex(status.stderr, /^vgrid: the answer from .* to GET \/v1\/status lacks what this command reads/)
  const debug = await run(['nodes', '--api', at], { VGRID_DEBUG: '1' })
  t.regex(debug.stderr, /^vgrid: the answer from .* lacks what this command reads: is --api pointing at a vgrid agent, and of this CLI's release \(vgrid --version\)\?\nTypeError: Cannot read properties of undefined \(reading 'map'\)\n\s+at /)
})

test('a 404 with nothing in it, an error of another shape, or an answer that is not JSON: not a vgrid agent\'s; an agent\'s own error passes as it is', async t => {
  const at = await server(t, {
    '/v1/vms/x': [500, '{"error":"boom"}'],
    '/v1/token': [200, '<html>hello</html>'],
    '/v1/links': [404, '{"error":{"code":"not_found","message":"no link \\"l\\""}}']
  })
  const api = new ApiClient(at)
  await t.throwsAsync(api.get('/v1/nodes'), { message: notAgentAnswer(at, 'GET', '/v1/nodes', 'status 404 with nothing in it') })
  await t.throwsAsync(api.get('/v1/vms/x'), { message: notAgentAnswer(at, 'GET', '/v1/vms/x', 'status 500 without a vgrid error in it') })
  await t.throwsAsync(api.get('/v1/token'), { message: notAgentAnswer(at, 'GET', '/v1/token', 'status 200, not JSON') })
  await t.throwsAsync(api.get('/v1/links'), { message: 'no link "l" (not_found)' })
  const cli = await run(['nodes', '--api', at])
  t.is(cli.stderr, `vgrid: the answer from ${at} to GET /v1/nodes is not what a vgrid agent answers (status 404 with nothing in it): is --api pointing at a vgrid agent?\n`)
  const json = await run(['nodes', '--json', '--api', at])
  t.like(JSON.parse(json.stdout), { error: { code: 'bad_answer', exitCode: 1 } })
})

test('clipEchoes: a quoted value over 128 characters is clipped to its first 64 and its length; shorter ones, and text outside quotes, are left', t => {
  const long = 'a'.repeat(5000)
  t.is(clipEchoes(`path "/${long}" is not a volume path`), `path "/${'a'.repeat(63)}..." (5001 characters) is not a volume path`)
  t.is(clipEchoes(`"${'b'.repeat(128)}" is fine`), `"${'b'.repeat(128)}" is fine`)
  t.is(clipEchoes(`snapshot name ${JSON.stringify('x"' + long)} must be`), `snapshot name "x\\"${'a'.repeat(61)}..." (5003 characters) must be`)
  // not cut inside an escape: a lone backslash would take the closing quote
  t.is(clipEchoes(JSON.stringify('a'.repeat(63) + '"' + long)), `"${'a'.repeat(63)}..." (5065 characters)`)
  t.is(clipEchoes('two "a" and "b"\nusage: vgrid "x"'), 'two "a" and "b"\nusage: vgrid "x"')
})

test('the CLI clips what its errors echo, and what the agent\'s do', async t => {
  const long = 'n'.repeat(3000)
  const at = await server(t, { [`/v1/nodes/${long}/labels`]: [404, JSON.stringify({ error: { code: 'not_found', message: `no node with id or name "${long}"` } })] })
  const r = await run(['node', 'label', long, 'k=v', '--api', at])
  t.is(r.stderr, `vgrid: no node with id or name "${'n'.repeat(64)}..." (3000 characters) (not_found)\n`)
  const own = await run(['node', 'label', 'n1', `${long}`, '--api', at])
  t.is(own.code, 2)
  t.regex(own.stderr, new RegExp(`^vgrid: "${'n'.repeat(64)}\\.\\.\\." \\(3000 characters\\) is not KEY=VALUE\\n`))
})

test('node label against an agent without PATCH (an earlier release): one label by its own route, several refused rather than applied in part (rv45)', async t => {
  const noRoute = [404, JSON.stringify({ error: { code: 'not_found', message: 'no route PATCH /v1/nodes/n1/labels' } })] as [number, string]
  const at = await server(t, {
    '/v1/nodes/n1/labels': noRoute,
    '/v1/nodes/n1/labels/k': [200, JSON.stringify({ node: 'id1', name: 'n1', key: 'k', value: 'v', labels: { k: 'v' } })]
  })
  const one = await run(['node', 'label', 'n1', 'k=v', '--api', at])
  t.is(one.code, 0, one.stderr)
  t.is(one.stdout, 'n1: k=v\n')
  const two = await run(['node', 'label', 'n1', 'a=1', 'b=2', '--api', at])
  t.is(two.code, 1)
  t.regex(two.stderr, /^vgrid: the agent is of an earlier release, which takes one label per command .*: upgrade it, or give one label at a time/)
})
