// Errors a user meets at the edges print one line, never a stack: a client's output to
// a pipe whose reader is gone ends quietly, to a full disk it says so; an agent that
// cannot listen names the address and the system's reason.
import test from 'ava'
import { spawn } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { listenFailure } from '../../node/network/index.ts'
import { createServer, type Server } from 'node:http'
import { ApiClient } from '../../node/cli/client.ts'

const main = join(import.meta.dirname, '../../node/cli/main.ts')

async function runCli (args: string[], stdout: 'closed' | number): Promise<{ code: number | null, stderr: string }> {
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', main, ...args], { stdio: ['ignore', stdout === 'closed' ? 'pipe' : stdout, 'pipe'] })
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
  silent.closeAllConnections()
  await new Promise(resolve => silent.close(resolve))
  const gone = await t.throwsAsync(new ApiClient(`127.0.0.1:${port}`, { answerTimeoutMs: 300 }).get('/v1/volumes'))
  t.regex(gone?.message ?? '', /^cannot reach the vgrid agent at 127\.0\.0\.1:\d+ \(ECONNREFUSED\); is it running\?/)
})
