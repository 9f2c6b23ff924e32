// install.sh's systemd path against a real systemd: this machine's own systemd runs as
// PID 1 of private namespaces (test/helpers/systemd-ns.ts: its own /run,
// /etc/systemd/system, network with only loopback and cgroup), and install.sh runs in
// there, as on a server that boots with systemd. It must write, enable and start the
// unit (and the agent answer), upgrade in place (same node, same data dir), have
// systemd restart the agent when its main process is killed (Restart=), and
// --uninstall must stop the agent and remove the unit but keep the data dir, and remove
// the connection manager's kernel state (its nftables table, the VM range routed
// unreachable), which outlives the agent on purpose.
// Skipped (saying why) where systemd cannot run so: not root, no systemd binary, no
// cgroup v2, or systemd not coming up.
import test, { type ExecutionContext } from 'ava'
import { readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT, tempDir, waitFor } from '../helpers/agent-process.ts'
import { SystemdNs, type Run } from '../helpers/systemd-ns.ts'
import { acquireLock, secs } from '../harness/index.ts'
import { isAlive } from '../../node/netns/netns.ts'
import { tableName } from '../../node/lcm/rules.ts'
import { overlayPrefix } from '../../node/lcm/overlay.ts'

const INSTALL = join(ROOT, 'install.sh')
const UNIT = 'vgrid.service'
// the namespace has a network of its own: these ports are free there
const API = '127.0.0.1:7411'
const LISTEN = '/ip4/127.0.0.1/tcp/7410'
const TEMP_PREFIX = `vgrid-systemd-${process.pid}-`

interface Status { node: { id: string, name: string, cluster: string }, members: { alive: number } }

const exists = async (p: string): Promise<boolean> => await stat(p).then(() => true, () => false)

/** Temp dirs of earlier runs that died before their teardown (their PID is gone). */
async function removeStaleDirs (): Promise<void> {
  for (const d of await readdir(tmpdir()).catch(() => [])) {
    const m = /^vgrid-systemd-(\d+)-/.exec(d)
    if (m != null && !isAlive(Number(m[1]))) await rm(join(tmpdir(), d), { recursive: true, force: true })
  }
}

const why = SystemdNs.unsupported()
const title = 'install.sh installs, upgrades, keeps alive and uninstalls the agent as a real systemd unit'
if (why != null) {
  console.log(`test/e2e/install-systemd.test.ts: skipped: ${why}`)
  test.skip(`${title} (skipped: ${why})`, () => {})
} else {
  test.serial(title, async t => {
    const waited = Date.now()
    t.teardown(await acquireLock())
    const started = Date.now()
    await run(t)
    t.log(`took ${secs(Date.now() - started)}` + (started - waited > 500 ? ` (after ${secs(started - waited)} waiting for another e2e test)` : ''))
  })
}

async function run (t: ExecutionContext): Promise<void> {
  await removeStaleDirs()
  let ns: SystemdNs
  const booting = Date.now()
  try {
    ns = await SystemdNs.start()
  } catch (err) {
    // not a failure of install.sh: this machine cannot run systemd so
    const msg = `SKIPPED: systemd cannot run in a namespace here: ${(err as Error).message}`
    t.log(msg)
    process.stderr.write(`test/e2e/install-systemd.test.ts: ${msg}\n`)
    t.pass()
    return
  }
  t.teardown(async () => await ns.stop())
  t.log(`systemd up as PID 1 of its namespace (host PID ${ns.pid}) in ${secs(Date.now() - booting)}`)

  const dir = await tempDir(TEMP_PREFIX)
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const prefix = join(dir, 'prefix')
  const dataDir = join(dir, 'data')
  const hostUnitBefore = await exists(join('/etc/systemd/system', UNIT))

  /** Throws, with the unit's journal and systemd's output, if `ok` is false. */
  const must = async (ok: boolean, what: string): Promise<void> => {
    if (ok) return
    throw new Error(`${what}\n--- journalctl -u ${UNIT} ---\n${await ns.journal(UNIT)}\n${ns.diagnostics()}`)
  }
  const install = async (args: string[]): Promise<Run> => {
    const t0 = Date.now()
    const r = await ns.exec(INSTALL, args, 150_000)
    t.log(`install.sh ${args.filter(a => a.startsWith('--')).join(' ')}: exit ${r.code} after ${secs(Date.now() - t0)}`)
    await must(r.code === 0, `install.sh ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr}`)
    return r
  }
  const status = async (): Promise<Status> => {
    const r = await ns.exec('curl', ['-sf', '--max-time', '3', `http://${API}/v1/status`], 10_000)
    if (r.code !== 0) throw new Error(`curl ${API}/v1/status: exit ${r.code} ${r.stderr}`)
    return JSON.parse(r.stdout) as Status
  }
  const active = async (): Promise<boolean> => (await ns.exec('systemctl', ['is-active', '--quiet', UNIT])).code === 0

  try {
    // 1. a fresh install: the unit is written into systemd's /etc/systemd/system,
    //    enabled and started, and the agent answers
    const first = await install(['--service', 'systemd', '--prefix', prefix, '--data-dir', dataDir, '--name', 'sd1',
      '--listen', LISTEN, '--api', API, '--no-mdns', '--no-packages'])
    t.regex(first.stdout.trim(), /^vgrid1\./, 'install.sh printed a join token')
    const unitText = await readFile(ns.path(join('/etc/systemd/system', UNIT)), 'utf8').catch(() => '')
    t.true(unitText.includes(`ExecStart=${prefix}/bin/vgrid agent --config ${prefix}/etc/vgrid.json`), unitText)
    t.is(await exists(join('/etc/systemd/system', UNIT)), hostUnitBefore, 'the real /etc/systemd/system is untouched')
    await must(await active(), `${UNIT} is not active after install`)
    t.is((await ns.exec('systemctl', ['is-enabled', UNIT])).stdout.trim(), 'enabled')
    t.is(await ns.show(UNIT, 'Restart'), 'always')
    // a stop or restart signals the agent alone: its VMs and watchdog supervisor run on (the restart grace)
    t.is(await ns.show(UNIT, 'KillMode'), 'process')
    const s1 = await status()
    t.is(s1.node.name, 'sd1')
    t.is(s1.members.alive, 1)
    const nodeId = s1.node.id
    const env = await readFile(join(prefix, 'etc/install.env'), 'utf8')
    t.regex(env, /^SERVICE=systemd$/m)
    t.regex(env, /^SERVICE_NAME=vgrid$/m)
    const pid1 = Number(await ns.show(UNIT, 'MainPID'))
    await must(pid1 > 0, `no MainPID for ${UNIT}`)

    // 2. running it again upgrades in place: the settings, node and data dir are kept,
    //    the unit is restarted on the new code
    await install(['--prefix', prefix, '--no-packages'])
    await must(await active(), `${UNIT} is not active after the upgrade`)
    const pid2 = Number(await ns.show(UNIT, 'MainPID'))
    t.not(pid2, pid1, 'the upgrade restarted the agent')
    t.is((await status()).node.id, nodeId, 'the same node after the upgrade')
    t.true(await exists(join(dataDir, 'cluster.key')), 'the data dir is kept')
    t.false(await exists(join(prefix, 'app.old')), 'the old code is gone')

    // 3. systemd restarts the agent when its main process dies (Restart=always)
    const host2 = ns.hostPid(pid2)
    await must(host2 != null, `host PID of the agent (PID ${pid2} in the namespace) not found`)
    process.kill(host2!, 'SIGKILL')
    const killed = Date.now()
    const newPid = async (): Promise<number> => Number(await ns.show(UNIT, 'MainPID'))
    await waitFor(async () => { const p = await newPid(); return p > 0 && p !== pid2 && await active() }, 20_000,
      'systemd to restart the killed agent').catch(async err => await must(false, (err as Error).message))
    await waitFor(async () => (await status()).node.id === nodeId, 20_000, 'the restarted agent to answer')
      .catch(async err => await must(false, (err as Error).message))
    t.log(`killed the agent (PID ${host2}); systemd restarted it and its API answered after ${secs(Date.now() - killed)}`)
    t.true(Number(await ns.show(UNIT, 'NRestarts')) >= 1, 'NRestarts counts the restart')
    const pid3 = Number(await ns.show(UNIT, 'MainPID'))
    const host3 = ns.hostPid(pid3)

    // 4. --uninstall stops the agent and removes the unit, but keeps the data dir; the
    //    connection manager's table and unreachable VM range go (made by hand, named as
    //    the agent names them, where it made none)
    const sh = async (cmd: string, args: string[]): Promise<string> => {
      const r = await ns.exec(cmd, args)
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code} ${r.stderr}`)
      return r.stdout
    }
    const lcmState = async (): Promise<{ tables: string[], routes: string[] }> => ({
      tables: (await sh('nft', ['list', 'tables'])).split('\n').filter(l => /^table inet vgrid_lcm_/.test(l)).map(l => l.trim()),
      routes: (await sh('ip', ['-4', 'route', 'show', 'type', 'unreachable'])).split('\n').filter(l => /^unreachable 100\.\d+\.128\.0\/17 /.test(l)).map(l => l.trim())
    })
    const made = await lcmState()
    t.log(`the agent's kernel state before --uninstall: ${JSON.stringify(made)}`)
    const s3 = await status()
    if (made.tables.length === 0) await sh('nft', ['add', 'table', 'inet', tableName(s3.node.id)])
    if (made.routes.length === 0) await sh('ip', ['route', 'add', 'unreachable', overlayPrefix(s3.node.cluster).vmV4, 'metric', '4294967295'])
    await install(['--uninstall', '--prefix', prefix])
    t.deepEqual(await lcmState(), { tables: [], routes: [] }, 'no vgrid_lcm_ table, no unreachable VM range left')
    t.false(await exists(ns.path(join('/etc/systemd/system', UNIT))), 'the unit file is removed')
    t.is(await ns.show(UNIT, 'LoadState'), 'not-found', 'systemd forgot the unit')
    t.false(await active(), 'the unit is not active')
    if (host3 != null) await waitFor(() => !isAlive(host3), 5000, 'the agent to be gone')
    const left: string[] = []
    for (const p of ns.allPids()) {
      const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')
      if (cmd.includes(prefix)) left.push(`${p}: ${cmd.replaceAll('\0', ' ')}`)
    }
    t.deepEqual(left, [], 'no process of the install is left')
    t.false(await exists(prefix), 'the prefix is removed')
    t.true(await exists(join(dataDir, 'cluster.key')), 'the data dir is kept')
  } catch (err) {
    t.fail((err as Error).message)
  }
}
