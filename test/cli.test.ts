// The CLI against a real agent, and its error behaviour: one line, non-zero exit,
// never a stack trace.
import test from 'ava'
import { execFile } from 'node:child_process'
import { writeFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentGroup, AgentProcess, VGRID, freePort, tempDir } from './helpers/agent-process.ts'
import type { StatusView } from '../node/api/types.ts'

interface Run { code: number, stdout: string, stderr: string }
const vgrid = async (args: string[], env: Record<string, string> = {}): Promise<Run> =>
  await new Promise(resolve => {
    execFile(VGRID, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })

const oneLineError = (t: import('ava').ExecutionContext, r: Run, code: number, pattern: RegExp): void => {
  t.is(r.code, code, r.stderr)
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  t.regex(r.stderr, pattern)
  t.notRegex(r.stderr, /\bat .*\.ts:\d+/, 'no stack trace')
}

const group = new AgentGroup()
let agent: AgentProcess
const dirs: string[] = []
const scratch = async (): Promise<string> => { const d = await tempDir(); dirs.push(d); return d }
test.before(async () => { agent = await group.add({ name: 'cli0', args: ['--capacity', 'cpu=3,mem=3G,disk=30G', '--label', 'rack=r1', '--fence-timeout', '7s'] }) })
test.after.always(async () => {
  await group.cleanup()
  await Promise.all(dirs.map(async d => await rm(d, { recursive: true, force: true })))
})

test('vgrid status and nodes print tables, and JSON with --json', async t => {
  const s = await vgrid(['status', '--api', agent.api])
  t.is(s.code, 0, s.stderr)
  t.regex(s.stdout, /members\s+1 alive, 0 suspect, 0 dead, 0 left/)
  t.regex(s.stdout, /^health\s+ok$/m)
  t.regex(s.stdout, /^ha\s+ok: every VM could be placed again if any one node failed$/m, 'the HA check, as vgrid ha says it')
  t.regex(s.stdout, /cpu\s+3\s+3/)
  const j = JSON.parse((await vgrid(['status', '--json'], { VGRID_API: agent.api })).stdout) as StatusView
  t.is(j.node.name, 'cli0')
  t.deepEqual(j.pool.cpu, { total: 3, free: 3 })
  // --api before the command, as a global flag
  t.regex((await vgrid(['--api', agent.api, 'status'])).stdout, /^health\s+ok$/m)
  t.regex((await vgrid([`--api=${agent.api}`, 'vm', 'ls'])).stdout, /no VMs|NAME/)
  t.is((JSON.parse((await vgrid(['--json', '--api', agent.api, 'status'])).stdout) as StatusView).node.name, 'cli0', '--json before the command too')
  const n = await vgrid(['nodes', '--api', agent.api])
  t.regex(n.stdout, /^NAME\s+STATE/)
  t.regex(n.stdout, /cli0\*\s+alive\s+3\/3/)
  t.regex(n.stdout, /rack=r1/)
  t.regex(n.stdout, /fence-7s/)
  // the fence timeout it runs with is in its advert, for the others' takeover waits
  const nj = JSON.parse((await vgrid(['nodes', '--json', '--api', agent.api])).stdout) as { nodes: Array<{ name: string, fenceTimeoutMs: number | null, silenceMs: number | null }> }
  t.is(nj.nodes.find(x => x.name === 'cli0')?.fenceTimeoutMs, 7000)
  // the silence timeout in force, which takeovers in a large roll wait for (rv23)
  t.is(nj.nodes.find(x => x.name === 'cli0')?.silenceMs, 30_000)
})

test('a node\'s free disk is the room its disk has left, however large its --capacity says the disk is', async t => {
  const big = await group.add({ name: 'bigdisk', args: ['--capacity', 'cpu=1,mem=1G,disk=1P'] })
  const { statfs } = await import('node:fs/promises')
  const room = await statfs(big.opts.dataDir)
  const self = (await big.get<{ nodes: Array<{ self: boolean, capacity: { diskBytes: number }, free: { diskBytes: number } }> }>('/v1/nodes')).nodes.find(x => x.self)!
  t.is(self.capacity.diskBytes, 2 ** 50)
  t.true(self.free.diskBytes <= room.bavail * room.bsize, `free ${self.free.diskBytes} is at most what the file system has left (${room.bavail * room.bsize})`)
  t.true(self.free.diskBytes > 0)
  // and its health says the capacity is more than the file system holds (volumes place objects by it)
  const st = await big.get<{ health: { problems: Array<{ cause: string, message: string }> } }>('/v1/status')
  t.regex(st.health.problems.find(p => p.cause === 'disk-capacity-too-large')?.message ?? '', /^this node's disk capacity \(1048576\.0 GiB, --capacity disk\) is more than the file system/)
})

test('an agent told to join a grid it has not reached takes no changes (they would clash with the grid\'s once it joins); reads work', async t => {
  const lost = await group.add({ name: 'lost', args: ['--join', `/ip4/127.0.0.1/tcp/${await freePort()}`] })
  const r = await vgrid(['vm', 'create', 'w1', '--cpu', '0.1', '--memory', '16M', '--api', lost.api, '--', '/bin/true'])
  oneLineError(t, r, 1, /^vgrid: this agent was told to join a grid \(\/ip4\/127\.0\.0\.1\/tcp\/\d+\) and has not reached it yet: a change made here now could clash with the grid's once it joins .* \(not_joined\)\n?$/)
  t.is((await lost.request('POST', '/v1/volumes', { path: '/x', size: '1M' })).status, 503)
  t.is((await vgrid(['vm', 'ls', '--api', lost.api])).code, 0, 'reads are answered')
})

test('vgrid token prints a token that carries the key', async t => {
  const r = await vgrid(['token', '--api', agent.api])
  t.is(r.code, 0)
  t.regex(r.stdout.trim(), /^vgrid1\.[A-Za-z0-9_-]+$/)
  // --json, as every client command takes
  const j = await vgrid(['token', '--json', '--api', agent.api])
  t.is(j.code, 0, j.stderr)
  t.is((JSON.parse(j.stdout) as { token: string }).token, r.stdout.trim())
})

test('vgrid init writes a key once and refuses to overwrite it', async t => {
  const dir = await scratch()
  const first = await vgrid(['init', '--data-dir', dir])
  t.is(first.code, 0, first.stderr)
  t.regex(first.stdout, /^vgrid1\./)
  oneLineError(t, await vgrid(['init', '--data-dir', dir]), 1, /already exists/)
  // --json too (bb38: a usage error), and an empty --data-dir is a usage error (bb35: ENOENT, exit 1)
  const j = await vgrid(['init', '--data-dir', join(dir, 'j'), '--json'])
  t.is(j.code, 0, j.stderr)
  t.like(JSON.parse(j.stdout), { keyFile: join(dir, 'j', 'cluster.key') })
  oneLineError(t, await vgrid(['init', '--data-dir', '']), 2, /data dir is empty/)
})

test('vgrid with no command prints its help on stderr, exit 2; vgrid --help on stdout, exit 0 (bb38)', async t => {
  const bare = await vgrid([])
  t.is(bare.code, 2)
  t.is(bare.stdout, '')
  t.regex(bare.stderr, /usage: vgrid <command>/)
  const help = await vgrid(['--help'])
  t.is(help.code, 0)
  t.regex(help.stdout, /usage: vgrid <command>/)
})

test('an unreachable agent is a one-line error', async t => {
  const port = await freePort()
  oneLineError(t, await vgrid(['status', '--api', `127.0.0.1:${port}`]), 1, /cannot reach the vgrid agent at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
})

test('bad flags, commands and config files are one-line errors with exit code 2', async t => {
  oneLineError(t, await vgrid(['status', '--bogus']), 2, /unknown flag --bogus/)
  oneLineError(t, await vgrid(['frobnicate']), 2, /unknown command "frobnicate"/)
  // client flags with no command after them: said so, not "unknown command --api"
  oneLineError(t, await vgrid(['--api']), 2, /--api needs a value \(HOST:PORT\) and a command after it/)
  oneLineError(t, await vgrid(['--api', '127.0.0.1:1']), 2, /--api needs a command after it/)
  oneLineError(t, await vgrid(['--api', 'vm', 'ls']), 2, /^vgrid: --api needs a value \(HOST:PORT\) before the command; it took "vm"/)
  oneLineError(t, await vgrid(['vol', 'create', '/x', '--size', '1G', '--replicas', '0x2', '--api', '127.0.0.1:1']), 2, /--replicas "0x2" is not a whole number/)
  oneLineError(t, await vgrid(['status', '--api', 'nonsense']), 2, /--api: "nonsense" is not host:port/)
  oneLineError(t, await vgrid(['agent', '--config', '/nonexistent/vgrid.json']), 2, /config file .* not found/)
  oneLineError(t, await vgrid(['agent', '--capacity', 'cpu=x', '--data-dir', await scratch()]), 2, /^vgrid: --capacity: cpu "x" is not a number of vCPUs/)
  oneLineError(t, await vgrid(['agent', '--capacity', 'mem=-1', '--data-dir', await scratch()]), 2, /^vgrid: --capacity "mem=-1": "-1" is not a size/)
  oneLineError(t, await vgrid(['agent', '--token', 'garbage', '--data-dir', await scratch()]), 2, /--token: join token must start with "vgrid1."/)
  // the token from the environment, where ps does not show it to every user (bb48), named as such
  oneLineError(t, await vgrid(['agent', '--data-dir', await scratch()], { VGRID_TOKEN: 'garbage' }), 2, /^vgrid: VGRID_TOKEN: join token must start with "vgrid1."/)
  oneLineError(t, await vgrid(['agent', '--key', '/nonexistent', '--data-dir', await scratch()], { VGRID_TOKEN: 'garbage' }), 2, /--key and VGRID_TOKEN are alternatives: give one/)
  // a negative value is taken for a flag by the parser: said so, not "argument is ambiguous"
  oneLineError(t, await vgrid(['vm', 'create', 'x', '--cpu', '-1', '--memory', '1G', '--', '/bin/true']), 2, /--cpu is followed by a value that starts with "-" \(a negative number\?\)/)
  // a value left out (the next flag follows): said so, not taken for a negative number
  oneLineError(t, await vgrid(['vm', 'create', 'x', '--cpu', '--memory', '1G', '--', '/bin/true']), 2, /--cpu needs a value: it is followed by the flag --memory/)
  oneLineError(t, await vgrid(['vm', 'create', 'x', '--memory', '1G', '--cpu']), 2, /--cpu needs a value/)
  // a flag given twice is refused, not taken as its last value
  oneLineError(t, await vgrid(['vm', 'create', 'x', '--cpu', '1', '--cpu', '2', '--memory', '1G', '--', '/bin/true']), 2, /--cpu is given more than once/)
  // a command whose usage is several lines prints it below the error, once
  const vol = await vgrid(['vol', 'create', '/x/a', '--size', '1M', '--bogus'])
  t.is(vol.code, 2)
  t.regex(vol.stderr, /^vgrid: unknown flag --bogus\nusage: vgrid vol create/)
  t.notRegex(vol.stderr, /usage: usage/)
  // a negative size as an argument reads as short flags: said as what it is (a tester got "unknown flag -1")
  const neg = await vgrid(['vol', 'resize', '/x/a', '-1G'])
  t.is(neg.code, 2)
  t.regex(neg.stderr, /^vgrid: "-1G" starts with "-" \(a negative number\?\): values must be above zero/)
  // a command of subcommands without one is a usage error, not a success
  for (const c of ['vm', 'vol', 'link', 'node', 'image']) {
    const r = await vgrid([c])
    t.is(r.code, 2, c)
    t.regex(r.stderr, new RegExp(`^vgrid: vgrid ${c}: which subcommand\\?\nusage: `), c)
  }
  // --api before a command asked for its help (bb45: "unknown subcommand \"vm --api\"")
  for (const c of ['vm', 'link', 'vol']) {
    const help = await vgrid(['--api', '127.0.0.1:1', c, '--help'])
    t.is(help.code, 0, `${c}: ${help.stderr}`)
    t.regex(help.stdout, new RegExp(`vgrid ${c} `), c)
  }
  // a size where --size goes is said so (bb46: "one volume per command")
  const noSizeFlag = await vgrid(['vol', 'create', '/shop/z', '1G'])
  t.is(noSizeFlag.code, 2)
  t.regex(noSizeFlag.stderr, /^vgrid: vgrid vol create takes 1 argument, not 2: "1G" is more \(the size goes after --size: vgrid vol create \/shop\/z --size 1G\)\n/)
  // drain's --timeout takes a duration as every other flag does, or seconds (bb46: "5s" refused)
  const badTimeout = await vgrid(['node', 'drain', 'x', '--wait', '--timeout', '5x'])
  t.is(badTimeout.code, 2)
  t.regex(badTimeout.stderr, /^vgrid: --timeout "5x" is not a duration above 0 and at most 24 days \(90s, 10m, or a number of seconds\)\n$/)
  for (const ok of ['5s', '90']) t.notRegex((await vgrid(['node', 'drain', 'x', '--wait', '--timeout', ok, '--api', '127.0.0.1:1'])).stderr, /--timeout/, ok)
  // decimal only: 0x50 is not taken for port 80
  t.regex((await vgrid(['link', 'create', 'a.o', 'b.i', '--port', '0x50'])).stderr, /^vgrid: --port must be a number \(1-65535\), not "0x50"\n/)
  // a missing --port says so (it said "must be a number"); the usage names tcp as the default protocol
  const noPort = await vgrid(['link', 'create', 'a.o', 'b.i'])
  t.is(noPort.code, 2)
  t.regex(noPort.stderr, /^vgrid: --port is missing: .*\nusage: .*\[--protocol tcp\|udp \(default tcp\)\]/)
  const dir = await scratch()
  const cfg = join(dir, 'bad.json')
  await writeFile(cfg, '{"listen": 7}')
  oneLineError(t, await vgrid(['agent', '--config', cfg]), 2, /config file .*bad\.json at "listen"/)
})

test('an agent that cannot listen on its --listen address says which and why, in one line', async t => {
  const { createServer } = await import('node:net')
  const busy = createServer()
  await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { busy.close() })
  const port = (busy.address() as { port: number }).port
  const r = await vgrid(['agent', '--data-dir', await scratch(), '--no-mdns', '--no-overlay', '--api', `127.0.0.1:${await freePort()}`, '--api-socket', 'none', '--listen', `/ip4/127.0.0.1/tcp/${port}`])
  t.is(r.code, 1)
  t.regex(r.stderr.trim().split('\n').at(-1) ?? '', new RegExp(`cannot listen on /ip4/127\\.0\\.0\\.1/tcp/${port} \\(listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\): change --listen or stop what uses it$`))
  t.notRegex(r.stderr, /\bat .*:\d+:\d+\)/, 'no stack trace')
})

test('a second agent on the same API port fails with a clear message', async t => {
  const r = await vgrid(['agent', '--data-dir', await scratch(), '--no-mdns', '--no-overlay', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', agent.api])
  // the agent may log its start-up before it fails: the error is the last line
  const lines = r.stderr.trim().split('\n')
  t.is(r.code, 1)
  t.regex(lines.at(-1) ?? '', /^vgrid: address already in use: 127\.0\.0\.1:\d+ \(is another agent running\?\)$/)
  t.notRegex(r.stderr, /\bat .*\.ts:\d+/, 'no stack trace')
})

test('a second agent on the data dir of a running one refuses to start, naming it, and leaves the first one whole', async t => {
  const dataDir = agent.opts.dataDir
  const before = (await agent.get<StatusView>('/v1/status')).node
  const r = await vgrid(['agent', '--data-dir', dataDir, '--name', 'dup', '--no-mdns', '--no-overlay', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', `127.0.0.1:${await freePort()}`, '--api-socket', 'none'])
  oneLineError(t, r, 1, new RegExp(`^vgrid: data dir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another vgrid agent \\(pid ${agent.proc!.pid!}\\): one agent per data dir`))
  // nothing of the first was touched: its sockets are there, its name is its own
  const { existsSync } = await import('node:fs')
  t.true(existsSync(join(dataDir, 'nbd.sock')), 'its NBD socket is there')
  const after = (await agent.get<StatusView>('/v1/status')).node
  t.deepEqual([after.id, after.name], [before.id, before.name])
})

test('bad API requests get a 4xx with the error shape', async t => {
  const cases: Array<[string, string, unknown, number]> = [
    ['GET', '/v1/nope', undefined, 404],
    ['PUT', '/v1/vms', undefined, 405],
    ['PATCH', '/v1/nodes/acc0/labels/zone', undefined, 405],
    // a trailing slash is another path: 404, not a 405 allowing the very method asked (a reviewer's)
    ['GET', '/v1/status/', undefined, 404],
    ['POST', '/v1/status', '{"x":', 400],
    // over the route's own bound: named by its schema; over any route's: the router's 414
    ['GET', '/v1/nodes/' + 'x'.repeat(300), undefined, 400],
    ['GET', '/v1/nodes/' + 'x'.repeat(9000), undefined, 414]
  ]
  for (const [method, path, body, status] of cases) {
    const r = await agent.request(method, path, body)
    t.is(r.status, status, `${method} ${path}`)
    const e = (r.body as { error?: { code?: unknown, message?: unknown } }).error
    t.is(typeof e?.code, 'string')
    t.is(typeof e?.message, 'string')
  }
  const put = await fetch(`http://${agent.api}/v1/vms`, { method: 'PUT', signal: AbortSignal.timeout(5000) })
  t.is(put.headers.get('allow'), 'GET, POST')
  t.regex(((await put.json()) as { error: { message: string } }).error.message, /PUT is not allowed on \/v1\/vms \(allowed: GET, POST\)/)
  // JSON only: a text/plain body is a 415 naming the type, not "body: must be a JSON object"
  const plain = await fetch(`http://${agent.api}/v1/vms`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'name=x', signal: AbortSignal.timeout(5000) })
  t.is(plain.status, 415)
  t.like(await plain.json(), { error: { code: 'unsupported_media_type', message: 'the request body\'s content type (text/plain) is not accepted: send JSON, with Content-Type: application/json' } })
  // nor a body sent compressed, or in another charset than UTF-8 (bb30: read as plain JSON)
  for (const [headers, said] of [[{ 'content-type': 'application/json', 'content-encoding': 'gzip' }, /content-encoding "gzip" is not taken/], [{ 'content-type': 'application/json; charset=latin1' }, /charset "latin1" is not taken/]] as const) {
    const r = await fetch(`http://${agent.api}/v1/vms`, { method: 'POST', headers, body: '{"name":"x"}', signal: AbortSignal.timeout(5000) })
    t.is(r.status, 415)
    const e = ((await r.json()) as { error: { code: string, message: string } }).error
    t.is(e.code, 'unsupported_media_type')
    t.regex(e.message, said)
  }
})
