// Errors a user meets at the edges print one line, never a stack: a client's output to
// a pipe whose reader is gone ends quietly, to a full disk it says so; an agent that
// cannot listen names the address and the system's reason.
import test from 'ava'
import { spawn } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { listenFailure } from '../../node/network/index.ts'
import { createServer, type Server } from 'node:http'
import { ApiClient } from '../../node/cli/client.ts'
import { CLI_MAIN, runCli as runCaptured } from '../helpers/cli-run.ts'


async function runCli (args: string[], stdout: 'closed' | number): Promise<{ code: number | null, stderr: string }> {
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', CLI_MAIN, ...args], { stdio: ['ignore', stdout === 'closed' ? 'pipe' : stdout, 'pipe'] })
  if (stdout === 'closed') c.stdout!.destroy()
  let stderr = ''
  c.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  return { code, stderr }
}

test('a client whose output pipe is closed ends quietly; one whose output cannot be written says so in one line', async t => {
  t.deepEqual(await runCli(['--help'], 'closed'), { code: 0, stderr: '' })
  const full = openSync('/dev/full', 'w')
  try {
    const r = await runCli(['--help'], full)
    t.is(r.code, 1)
    t.is(r.stderr, 'vgrid: cannot write the output: ENOSPC\n')
  } finally { closeSync(full) }
})

test('listenFailure: the address and the reason, in one line', t => {
  const libp2p = 'Some configured addresses failed to be listened on, you may need to remove one or more listen addresses from your configuration or set `transportManager.faultTolerance` to NO_FATAL:\n\n' +
    '  /ip4/127.0.0.1/tcp/7495: Error: listen EADDRINUSE: address already in use 127.0.0.1:7495\n      at Server.setupListenHandle [as _listen2] (node:net:2328:16)\n'
  t.is(listenFailure(libp2p), 'cannot listen on /ip4/127.0.0.1/tcp/7495 (listen EADDRINUSE: address already in use 127.0.0.1:7495): change --listen or stop what uses it')
  t.is(listenFailure('something else\nwith detail'), 'something else')
})

test('an agent that takes a request and does not answer is not called unreachable; one nobody listens for is', async t => {
  const silent: Server = createServer(() => { /* never answers: waits on a node it cannot reach, say */ })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { silent.closeAllConnections(); if (silent.listening) silent.close() })
  const port = (silent.address() as { port: number }).port
  const err = await t.throwsAsync(new ApiClient(`127.0.0.1:${port}`, { answerTimeoutMs: 300 }).get('/v1/volumes'))
  t.is(err?.message, `the vgrid agent at 127.0.0.1:${port} took the request (GET /v1/volumes) but did not answer within 0.3 s; it may be waiting on a node it cannot reach: see \`vgrid status\` and its log`)
  const post = await t.throwsAsync(new ApiClient(`127.0.0.1:${port}`, { answerTimeoutMs: 300 }).request('POST', '/v1/vms', {}))
  t.regex(post?.message ?? '', /did not answer within 0\.3 s; .*; the POST may or may not have been done: see before asking again$/) // bb40
  silent.closeAllConnections()
  await new Promise(resolve => silent.close(resolve))
  const gone = await t.throwsAsync(new ApiClient(`127.0.0.1:${port}`, { answerTimeoutMs: 300 }).get('/v1/volumes'))
  t.regex(gone?.message ?? '', /^cannot reach the vgrid agent at 127\.0\.0\.1:\d+ \(ECONNREFUSED\); is it running\?/)
})


test('with --json an error is JSON on stdout ({error: {code, message, exitCode}}), as the API gives it; without, one line on stderr', async t => {
  const api: Server = createServer((req, res) => {
    // a bad value the agent found (400) is a usage error as one the CLI finds: exit 2
    if (req.method === 'POST') {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'invalid', message: 'memory must be at least 1 MiB', field: 'memory' } }))
      return
    }
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { code: 'not_found', message: 'no VM "nosuch"' } }))
  })
  await new Promise<void>(resolve => api.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { api.close() })
  const at = `127.0.0.1:${(api.address() as { port: number }).port}`
  const notFound = await runCaptured(['vm', 'show', 'nosuch', '--json', '--api', at])
  t.is(notFound.code, 1)
  t.is(notFound.stderr, '')
  t.deepEqual(JSON.parse(notFound.stdout), { error: { code: 'not_found', message: 'no VM "nosuch"', exitCode: 1 } })
  const plain = await runCaptured(['vm', 'show', 'nosuch', '--api', at])
  t.is(plain.stdout, '')
  t.is(plain.stderr, 'vgrid: no VM "nosuch" (not_found)\n')
  const bad = await runCaptured(['vm', 'create', 'x', '--cpu', '1', '--memory', '64M', '--json', '--api', at, '--', '/bin/true'])
  t.is(bad.code, 2)
  t.like(JSON.parse(bad.stdout), { error: { code: 'invalid', message: 'memory must be at least 1 MiB', exitCode: 2 } })
  // a usage error, and --json given before the command
  const usage = await runCaptured(['--json', 'nodes', '--wat'])
  t.is(usage.code, 2)
  t.like(JSON.parse(usage.stdout), { error: { code: 'usage', exitCode: 2 } })
  t.regex((JSON.parse(usage.stdout) as { error: { message: string } }).error.message, /unknown flag --wat/)
  // no agent there
  api.close()
  await new Promise(resolve => setTimeout(resolve, 50))
  const gone = await runCaptured(['status', '--json', '--api', at])
  t.like(JSON.parse(gone.stdout), { error: { code: 'agent_unreachable', exitCode: 1 } })
  // --json after `--` is a VM's command's, not the CLI's
  const inCommand = await runCaptured(['vm', 'create', 'x', '--api', at, '--', '/bin/echo', '--json'])
  t.is(inCommand.stdout, '')
  t.regex(inCommand.stderr, /^vgrid: /)
})

test('an empty --api is refused, naming it (not taken for the default address: bb19)', async t => {
  const { apiTarget, CliError } = await import('../../node/cli/client.ts')
  const err = t.throws(() => apiTarget('', { VGRID_API: '127.0.0.1:7412' }))
  t.true(err instanceof CliError)
  t.regex(err!.message, /^--api: empty/)
  t.deepEqual(apiTarget(undefined, { VGRID_API: '127.0.0.1:7412' }), { host: '127.0.0.1', port: 7412 })
  // nor a VGRID_API set empty (bb49: an empty $TARGET acted on this node's grid); unset, the default
  const env = t.throws(() => apiTarget(undefined, { VGRID_API: '' }))
  t.is((env as InstanceType<typeof CliError>).exitCode, 2)
  t.regex(env!.message, /^VGRID_API: set but empty/)
  t.truthy(apiTarget(undefined, {}, () => false))
  t.deepEqual(apiTarget('127.0.0.1:7413', { VGRID_API: '' }), { host: '127.0.0.1', port: 7413 }, '--api given: the variable is not read')
})

test('the API address names what set it, a port out of range says so, and a socket this user may not open is passed for loopback (bb30)', async t => {
  const { apiTarget } = await import('../../node/cli/client.ts')
  const { DEFAULT_API_SOCKET } = await import('../../node/config.ts')
  t.regex(t.throws(() => apiTarget(undefined, { VGRID_API: 'garbage' }))!.message, /^VGRID_API: "garbage" is not host:port/)
  t.regex(t.throws(() => apiTarget('garbage', {}))!.message, /^--api: "garbage"/)
  t.regex(t.throws(() => apiTarget('127.0.0.1:99999', {}))!.message, /port 99999 is out of range \(0-65535\)/)
  t.deepEqual(apiTarget(undefined, {}, () => true), { socketPath: DEFAULT_API_SOCKET })
  t.like(apiTarget(undefined, {}, () => false), { host: '127.0.0.1' })
})
