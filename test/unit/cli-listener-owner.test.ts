// The CLI talks over TCP to a server on this machine only when root's socket serves the
// connection, as the agent's does (node/cli/listener-owner.ts): while the agent was
// down, a local user listening on its unprivileged port showed the CLI a grid of its
// making and took the API token (bb48); a user's IPv6-only listener beside root's on
// 127.0.0.1 blocked every request (rv48).
import test from 'ava'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { ApiClient } from '../../node/cli/client.ts'
import { parseSockets, serverSideUid } from '../../node/cli/listener-owner.ts'

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1CE9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1CE9 01 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1CE9 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1001        0 4245 1 0000000000000000 20 4 30 10 -1
`
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000   998        0 5 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:1CEA 00000000000000000000000001000000:D433 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0 100 0 0 10 0
`
const read = (f: string): string => f.endsWith('6') ? TCP6 : TCP

test('the owner of a connection\'s server side, found by its two ends swapped, in /proc/net/tcp and tcp6 (a dual-stack server\'s as a mapped address)', t => {
  t.deepEqual(parseSockets(TCP)[0], { local: '0100007F:1CE9', remote: '00000000:0000', state: '0A', uid: 1001 })
  // the client's own socket (uid 0, this CLI's) is not taken for the server's
  t.is(serverSideUid({ address: '127.0.0.1', port: 0xd431 }, { address: '127.0.0.1', port: 7401 }, read), 1001)
  t.is(serverSideUid({ address: '127.0.0.1', port: 0xd432 }, { address: '127.0.0.1', port: 8080 }, read), 998, 'an IPv6 wildcard listener\'s connection from IPv4')
  t.is(serverSideUid({ address: '::1', port: 0xd433 }, { address: '::1', port: 7402 }, read), 0)
  t.is(serverSideUid({ address: '127.0.0.1', port: 0xd499 }, { address: '127.0.0.1', port: 7401 }, read), undefined, 'no such connection here')
  t.is(serverSideUid({ address: '10.1.2.3', port: 0xd431 }, { address: '10.9.9.9', port: 7401 }, read), undefined, 'a server elsewhere')
  // tables that cannot be read tell nothing: null, not judged (rv50: a hardened /proc locked the CLI out)
  t.is(serverSideUid({ address: '127.0.0.1', port: 0xd431 }, { address: '127.0.0.1', port: 7401 }, () => { throw new Error('EACCES') }), null)
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
  // another user's IPv6-only wildcard listener on root's port serves no IPv4 connection: root's answers (rv48: every request was refused)
  const beside = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/perl', '-MSocket=:all', '-e', `socket(my $s, AF_INET6, SOCK_STREAM, 0) or die "socket: $!"; setsockopt($s, IPPROTO_IPV6, IPV6_V6ONLY, 1) or die "v6only: $!"; bind($s, pack_sockaddr_in6(${p}, "\\0" x 16)) or die "bind: $!"; listen($s, 5) or die "listen: $!"; $| = 1; print "ok\n"; sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'], cwd: '/' })
  t.teardown(() => { beside.kill('SIGKILL') })
  await new Promise<void>((resolve, reject) => { beside.stdout.once('data', () => { resolve() }); beside.once('exit', code => { reject(new Error(`the IPv6 listener exited: ${String(code)}`)) }) })
  const again = await t.throwsAsync(new ApiClient(`127.0.0.1:${p}`).get('/v1/status'))
  t.notRegex(again!.message, /not by root/)
})
