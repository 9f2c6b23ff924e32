// The CLI talks over loopback TCP only to a listener of root's, as the agent is
// (node/cli/listener-owner.ts): while the agent was down, a local user listening on its
// unprivileged port showed the CLI a grid of its making and took the API token (bb48).
import test from 'ava'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { ApiClient } from '../../node/cli/client.ts'
import { listenerUids, parseListeners } from '../../node/cli/listener-owner.ts'

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1CE9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1CE9 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 20 4 30 10 -1
`
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1CEA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 5 1 0 100 0 0 10 0
`
const read = (f: string): string => f.endsWith('6') ? TCP6 : TCP

test('the owner of a loopback listener, exact or wildcard, from /proc/net/tcp and tcp6', t => {
  t.deepEqual(parseListeners(TCP), [{ address: '0100007F', port: 7401, uid: 1001 }, { address: '00000000', port: 8080, uid: 0 }])
  t.deepEqual(listenerUids('127.0.0.1', 7401, read), [1001])
  t.deepEqual(listenerUids('127.0.0.1', 8080, read), [0], 'a wildcard listener serves loopback too')
  t.deepEqual(listenerUids('::1', 7402, read), [998])
  t.deepEqual(listenerUids('localhost', 7401, read), [1001])
  // localhost is either address: a listener of another user on ::1 beside root's on 127.0.0.1 is found (rv47)
  t.deepEqual(listenerUids('localhost', 7402, read), [998])
  t.deepEqual(listenerUids('127.0.0.1', 9999, read), [])
  t.deepEqual(listenerUids('10.1.2.3', 7401, read), [], 'not loopback: not judged here')
})

test('the CLI sends nothing, token included, to a loopback port another user listens on; root\'s it talks to', async t => {
  const port = 20_000 + Math.floor(Math.random() * 20_000)
  // perl (perl-base is on every Debian) as nobody
  const squatter = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/perl', '-MIO::Socket::INET', '-e', `$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => ${port}, Listen => 5) or die "listen: $!"; $| = 1; print "ok\n"; sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'], cwd: '/' })
  t.teardown(() => { squatter.kill('SIGKILL') })
  await new Promise<void>((resolve, reject) => { squatter.stdout.once('data', () => { resolve() }); squatter.once('exit', code => { reject(new Error(`the listener exited: ${String(code)}`)) }) })
  process.env.VGRID_API_TOKEN = 'secret-token'
  t.teardown(() => { delete process.env.VGRID_API_TOKEN })
  await t.throwsAsync(new ApiClient(`127.0.0.1:${port}`).get('/v1/status'), { message: `127.0.0.1:${port} is served by a program of uid 65534, not by root as a vgrid agent is: nothing was sent to it (nor the API token); is this node's agent down and another program listening on its port?` })
  // a listener of root's (this test's) is talked to: here it answers no HTTP, and the error is the usual one
  const mine = createServer(s => { s.destroy() }).listen(0, '127.0.0.1')
  t.teardown(() => { mine.close() })
  await new Promise(resolve => mine.once('listening', resolve))
  const p = (mine.address() as { port: number }).port
  const e = await t.throwsAsync(new ApiClient(`127.0.0.1:${p}`).get('/v1/status'))
  t.notRegex(e!.message, /not by root/)
})
