// install.sh as an operator runs it on a new server: inside a fresh namespace host
// (its own prefix and data dir, the background service, since no systemd runs in
// a namespace), with the token of a running grid. The agent it starts must join
// that grid by the token alone (its mDNS is off): alive on every member, and they
// on it. --uninstall then stops it and removes the connection manager's kernel state
// (its nftables table, the VM range routed unreachable), which outlives the agent.
// The host has no route off the test's bridge, so npm works from its cache only,
// as on an offline server with a prepared cache.
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { e2e, Grid, secs } from '../harness/index.ts'
import { ROOT } from '../../node/netns/processes.ts'
import { tableName } from '../../node/lcm/rules.ts'
import { overlayPrefix } from '../../node/lcm/overlay.ts'

const BOUND_MS = 30_000

/** The connection manager's kernel state in a host: its tables, and the VM range routed unreachable. */
async function lcmState (run: (cmd: string, args: string[]) => Promise<string>): Promise<{ tables: string[], routes: string[] }> {
  const tables = (await run('nft', ['list', 'tables'])).split('\n').filter(l => /^table inet vgrid_lcm_/.test(l)).map(l => l.trim())
  const routes = (await run('ip', ['-4', 'route', 'show', 'type', 'unreachable'])).split('\n').filter(l => /^unreachable 100\.\d+\.128\.0\/17 /.test(l)).map(l => l.trim())
  return { tables, routes }
}

e2e('install.sh run inside a host starts an agent that joins the grid with --token - (the token on stdin, out of ps)', async t => {
  const grid = await Grid.start(t, { hosts: ['h1', 'h2', { name: 'h4', agent: false }] })
  await grid.waitAllAlive(BOUND_MS, ['h1', 'h2'])
  const { token } = await grid.host('h1').api<{ token: string }>('/v1/token')

  const h4 = grid.host('h4')
  const prefix = join(h4.dir, 'prefix')
  const dataDir = join(h4.dir, 'data')
  const started = Date.now()
  let out: string
  try {
    // stderr is the progress; stdout is the token of the grid it joined
    out = await h4.exec('bash', [join(ROOT, 'install.sh'), '--prefix', prefix, '--data-dir', dataDir,
      '--token', '-', '--name', 'h4', '--api', '127.0.0.1:7401', '--no-mdns', '--service', 'background', '--no-packages'],
    { timeoutMs: 240_000, input: `${token}\n` })
  } catch (err) {
    const log = await readFile(join(prefix, 'log/vgrid.log'), 'utf8').catch(() => '(no agent log)')
    t.fail(`install.sh failed: ${(err as Error).message}\n--- ${prefix}/log/vgrid.log ---\n${log}`)
    return
  }
  t.log(`install.sh finished in ${secs(Date.now() - started)}`)
  t.regex(out.trim(), /^vgrid1\./, 'install.sh printed a join token')

  const members = ['h1', 'h2', 'h4']
  try {
    const ms = await grid.waitAllAlive(BOUND_MS, members)
    t.log(`h4 (installed by install.sh) alive on h1 and h2, and they on it, ${secs(ms)} after install.sh returned`)
  } catch (err) {
    const log = await readFile(join(prefix, 'log/vgrid.log'), 'utf8').catch(() => '(no agent log)')
    t.fail(`${(err as Error).message}\n--- ${prefix}/log/vgrid.log ---\n${log}`)
    return
  }
  const s = await h4.status()
  t.is(s.node.name, 'h4')
  t.is(s.node.cluster, (await grid.host('h1').status()).node.cluster, 'the same grid as h1')

  // the installed CLI works inside the host as the installer said it would
  const cli = await h4.exec(join(prefix, 'bin/vgrid'), ['nodes', '--api', '127.0.0.1:7401'])
  t.regex(cli, /h1\s+alive/)

  // what the agent (overlay on) left in the kernel; made by hand, named as it names them, if it made none
  const run = async (cmd: string, args: string[]): Promise<string> => await h4.exec(cmd, args)
  const made = await lcmState(run)
  t.log(`the agent's kernel state before --uninstall: ${JSON.stringify(made)}`)
  if (made.tables.length === 0) await run('nft', ['add', 'table', 'inet', tableName(s.node.id)])
  if (made.routes.length === 0) await run('ip', ['route', 'add', 'unreachable', overlayPrefix(s.node.cluster).vmV4, 'metric', '4294967295'])
  await run('nft', ['add', 'table', 'inet', 'not_vgrid'])
  t.teardown(async () => { await run('nft', ['delete', 'table', 'inet', 'not_vgrid']).catch(() => {}) })
  t.is((await lcmState(run)).tables.length, 1)

  // its progress and warnings (stderr) as its output, to be shown
  const said = await h4.exec('bash', ['-c', 'bash "$0" --uninstall --prefix "$1" 2>&1', join(ROOT, 'install.sh'), prefix], { timeoutMs: 60_000 })
  t.deepEqual(await lcmState(run), { tables: [], routes: [] }, `no vgrid_lcm_ table, no unreachable VM range left; install.sh said:\n${said}`)
  t.regex(await run('nft', ['list', 'tables']), /table inet not_vgrid/, 'other tables are kept')
  // left (or dead), or no longer listed: a member down and off the roll is not shown
  await grid.waitViews(['h1', 'h2'], v => ['h1', 'h2'].every(o => [undefined, 'left', 'dead'].includes(v[o]!['h4'])), BOUND_MS, 'h4 gone from the grid on h1, h2')
  t.log('after --uninstall, h4 has left the grid')
})
