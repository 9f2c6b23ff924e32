// The DVMM CLI commands (node/dvmm/cli.ts) against a real HTTP API of an in-process
// agent with the fake driver: create, ls, show, console, stop, start, rm, drain,
// undrain, ha; and usage errors.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { serveDvmmRoutes } from './serve-routes.ts'
import { startDvmmGrid, until } from './grid.ts'

const run = promisify(execFile)
const NODE = process.execPath
const SCRIPT = "const m = await import(process.cwd() + '/node/dvmm/cli.ts'); const [cmd, ...rest] = process.argv.slice(1); try { await m[cmd](rest) } catch (e) { process.stderr.write(e.message + '\\n'); process.exitCode = e.exitCode ?? 1 }"

async function cli (api: string, ...args: string[]): Promise<{ code: number, out: string, err: string }> {
  try {
    const r = await run(NODE, ['--input-type=module', '-e', SCRIPT, ...args], { env: { ...process.env, VGRID_API: api }, timeout: 30_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number, stdout: string, stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

test('vgrid vm / node drain / ha through the API', async t => {
  const g = await startDvmmGrid({ n: 2, capacity: 'cpu=4,mem=8G,disk=10G', dvmm: { settleMs: 200, tickMs: 100 } })
  t.teardown(g.stop)
  const api = await serveDvmmRoutes(t, g.nodes[0]!.dvmm)
  const created = await cli(api, 'vm', 'create', 'web', '--cpu', '1', '--memory', '512M', '--command', 'fake:run', '--label', 'tier=web', '--user', 'nobody')
  t.is(created.code, 0, created.err)
  t.regex(created.out, /^web: (pending|starting|running)/)
  const bad = await cli(api, 'vm', 'create', 'bad', '--cpu', '1', '--memory', '0', '--command', 'fake:run')
  t.not(bad.code, 0)
  t.regex(bad.err, /memory: /)
  // a user this node lacks: refused, not three failed starts on whichever node took it (bb41)
  // root is no user to confine a VM as (bb48: --user root kept every capability, and vm show said it had none)
  for (const root of ['root', '0', '00']) t.regex((await cli(api, 'vm', 'create', 'asroot', '--cpu', '0.1', '--memory', '64M', '--command', '/bin/true', '--user', root)).err, new RegExp(`user: ${root} is root: --user runs the command as another user of the node, without capabilities; leave it out`))
  const nouser = await cli(api, 'vm', 'create', 'nouser', '--cpu', '0.1', '--memory', '64M', '--command', '/bin/true', '--user', 'no-such-user-here')
  t.not(nouser.code, 0)
  t.regex(nouser.err, /user: there is no user "no-such-user-here" on this node \(.+\): a process VM runs as a user of whichever node runs it, so give one every node it may run on has/)
  t.regex((await cli(api, 'vm', 'show', 'nouser')).err, /no VM "nouser"/, 'not made')
  // one that may not run on this node (its labels do not match) is not judged by this node's users (rv44)
  const elsewhere = await cli(api, 'vm', 'create', 'elsewhere', '--cpu', '0.1', '--memory', '64M', '--command', '/bin/true', '--user', 'no-such-user-here', '--constraint', 'rack=nowhere', '--stopped')
  t.is(elsewhere.code, 0, elsewhere.err)
  t.regex((await cli(api, 'vm', 'create', 'x')).err, /--cpu and --memory are required/)
  // decimal only (a tester's --cpu 0x1 made 1 vCPU)
  for (const bad of ['0x1', '1e0', 'one', '']) t.regex((await cli(api, 'vm', 'create', 'x', '--cpu', bad, '--memory', '64M', '--command', 'fake:run')).err, /--cpu ".*" is not a number of vCPUs/, bad)
  // spaces around taken as --memory takes them (bb24: " 64M" was taken, " 1" refused)
  const spaced = await cli(api, 'vm', 'create', 'spaced', '--cpu', ' 0.5 ', '--memory', ' 64M', '--command', 'fake:run')
  t.is(spaced.code, 0, spaced.err)
  t.regex((await cli(api, 'vm', 'create', 'x', '--cpu', '1', '--memory', '64M')).err, /^say what the VM runs: a command .* or --kernel, --image, or a --volume to boot from/)
  // a bare -- (a tester's `--kernel /k --`) got the API's "command: must be a non-empty array of strings"
  t.regex((await cli(api, 'vm', 'create', 'x', '--cpu', '1', '--memory', '64M', '--kernel', '/k', '--')).err, /^nothing after --: give the command the VM runs/)
  // quotes in --command would reach the command as they are: refused, pointing at --
  const quoted = await cli(api, 'vm', 'create', 'x', '--cpu', '1', '--memory', '64M', '--command', "/bin/sh -c 'sleep 0.3; exit 1'")
  t.is(quoted.code, 2)
  t.regex(quoted.err, /--command is split at spaces only.*after --/)
  await until(() => g.nodes.some(n => n.fake.vms.get('web')?.state === 'running') && g.nodes[0]!.agent.state.read().get('leases', 'web')?.value.status === 'running', 20_000, 'web running')
  const ls = await cli(api, 'vm', 'ls')
  t.regex(ls.out, /NAME\s+STATE\s+NODE\s+EPOCH/)
  t.regex(ls.out, /web\s+running\s+a[01]\s+1\s+1\s+512M\s+process/)
  // an APP column once a VM belongs to one (bb46: only the JSON said it)
  t.is((await cli(api, 'vm', 'create', 'appvm', '--cpu', '0.1', '--memory', '64M', '--command', 'fake:run', '--app', 'shop', '--stopped')).code, 0)
  const withApp = (await cli(api, 'vm', 'ls')).out
  t.regex(withApp, /^NAME\s+APP\s+STATE\s+NODE/)
  t.regex(withApp, /^appvm\s+shop\s+stopped/m)
  t.regex(withApp, /^web\s+-\s+running/m)
  t.regex((await cli(api, 'vm', 'show', 'appvm')).out, /^ {2}app shop$/m)
  t.is((await cli(api, 'vm', 'rm', 'appvm')).code, 0)
  const show = await cli(api, 'vm', 'show', 'web')
  t.regex(show.out, /placement/)
  t.regex(show.out, /runs as user nobody, without capabilities; other VMs and processes of nobody on its node can signal it/)
  // what it was made with (bb46: only the JSON had its labels and app); its score as the sum it is
  t.regex(show.out, /^ {2}labels tier=web$/m)
  t.regex(show.out, /^ {2}a[01]: score -?\d+\.\d{3} \((anti-affinity -?\d+ x 1000, )?fit \d\.\d{3}\)$/m)
  t.regex(show.out, /history:\n.*placed on a[01]/)
  const holder = g.nodes.find(n => n.fake.vms.get('web')?.state === 'running')!
  // from whichever node: a node that does not hold it asks the holder
  t.regex((await cli(api, 'vm', 'console', 'web')).out, /fake guest ready web/)
  const first = JSON.parse((await cli(api, 'vm', 'console', 'web', '--json')).out) as { run: number }
  t.like(first, { vm: 'web', console: 'fake guest ready web\n', start: 0, size: 21, epoch: 1 })
  // a follower's ask: only what came past its end in its run (rv45: each poll moved the whole tail)
  const ask = async (q: string): Promise<{ status: number, body: { console?: string, start?: number, error?: { message: string } } }> => {
    const r = await fetch(`http://${api}/v1/vms/web/console${q}`, { signal: AbortSignal.timeout(5000) })
    return { status: r.status, body: await r.json() as { console?: string, start?: number, error?: { message: string } } }
  }
  t.like((await ask(`?from=17&run=${first.run}`)).body, { console: 'web\n', start: 17, size: 21 })
  t.like((await ask(`?from=17&run=${first.run + 1}`)).body, { console: 'fake guest ready web\n', start: 0 })
  const badFrom = await ask('?from=-1')
  t.is(badFrom.status, 400)
  t.regex(badFrom.body.error!.message, /from must be a whole number of 0 or more, given once, not "-1"/)
  t.regex((await ask('?run=5')).body.error!.message, /run goes with from/)
  // --follow prints what the guest prints after the tail, once (bb46: the console was one read, and said nowhere so)
  const following = run(NODE, ['--input-type=module', '-e', SCRIPT, 'vm', 'console', 'web', '--follow'], { env: { ...process.env, VGRID_API: api }, timeout: 5000 }).catch((e: { stdout: string }) => e)
  await new Promise(resolve => setTimeout(resolve, 2000))
  holder.fake.vms.get('web')!.console += 'more output\n'
  const followed = (await following) as { stdout: string }
  t.is(followed.stdout, 'fake guest ready web\nmore output\n')
  t.regex((await cli(api, 'vm', 'console', 'web', '--follow', '--json')).err, /give one of them/)
  // two nodes: the one left after either is lost sees no majority and fences itself
  const ha = await cli(api, 'ha')
  t.regex(ha.out, /^HA not ok:\n {2}2 of 2 roll members are in sight and a majority is 2: losing any one of them fences every node/)
  t.is(ha.code, 1)
  const drained = await cli(api, 'node', 'drain', holder.agent.config.name)
  t.regex(drained.out, /draining/)
  await until(() => holder.fake.vms.get('web')?.state !== 'running' && g.nodes.some(n => n.fake.vms.get('web')?.state === 'running'), 20_000, 'web moved off the drained node')
  t.regex((await cli(api, 'node', 'undrain', holder.agent.config.name)).out, /schedulable/)
  t.regex((await cli(api, 'node', 'forget', holder.agent.config.name)).err, /is alive: forget is for a server that is gone for good/)
  t.regex((await cli(api, 'vm', 'stop', 'web')).out, /web: desired stopped/)
  await until(() => g.nodes.every(n => n.fake.vms.get('web')?.state !== 'running') && g.nodes[0]!.agent.state.read().get('leases', 'web')?.value.status === 'stopped', 20_000, 'web stopped, its lease kept stopped by the node that ran it')
  t.regex((await cli(api, 'vm', 'console', 'web')).out, /fake guest ready web/, 'a stopped VM\'s last console')
  t.regex((await cli(api, 'vm', 'rm', 'web')).out, /web: removed/)
  t.regex((await cli(api, 'vm', 'show', 'web')).err, /no VM "web"/)
  t.regex((await cli(api, 'vm', 'show', 'x'.repeat(300))).err, /no VM "x{40}…" \(300 characters: a VM's name has at most 63, its id 128\)/, 'a name longer than any is not found, with the limits, not refused for the id\'s limit')
  t.regex((await cli(api, 'vm', 'frobnicate')).err, /unknown subcommand "vm frobnicate"/)
})
