// install.sh for real: installs vgrid under a temporary prefix with a temporary data dir
// and loopback ports, as a background service (this test never touches systemd), checks
// that the agent answers, that the supervisor restarts it, that a second run upgrades in
// place with the same node and data dir, and that --uninstall leaves only the data dir
// and no process. Needs root (as install.sh does); skipped otherwise.
import test from 'ava'
import { spawn } from 'node:child_process'
import { readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT, freePort, tempDir, waitFor } from './helpers/agent-process.ts'
import { decodeToken, keyHex } from '../protocol/cluster-key.ts'
import { isAlive } from '../node/netns/netns.ts'

const INSTALL = join(ROOT, 'install.sh')
const isRoot = process.getuid?.() === 0

interface Run { code: number | null, stdout: string, stderr: string }

/**
 * Runs install.sh; kills it (by PID) if it takes longer than `ms`. An install runs
 * `npm ci` and the build: 2 minutes were seen on a loaded 2-core machine.
 */
async function install (args: string[], ms = 300_000): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const p = spawn(INSTALL, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { if (p.pid != null) process.kill(p.pid, 'SIGKILL') }, ms)
    p.once('error', reject)
    p.once('close', code => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

async function readPid (file: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(file, 'utf8')).trim())
    return Number.isInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

/** PIDs of live processes whose command line mentions `text`. */
async function processesMentioning (text: string): Promise<number[]> {
  const found: number[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      if ((await readFile(`/proc/${e}/cmdline`, 'utf8')).includes(text)) found.push(Number(e))
    } catch {}
  }
  return found
}

async function getJson<T> (api: string, path: string): Promise<T> {
  const res = await fetch(`http://${api}${path}`, { signal: AbortSignal.timeout(3000) })
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
  return await res.json() as T
}

interface Status { node: { id: string, name: string }, members: { alive: number } }

test('install.sh rejects bad flags with one line and exit status 2', async t => {
  for (const args of [['--bogus'], ['--service', 'sometimes'], ['--prefix', 'relative/dir'], ['--prefix'],
    ['--label', 'novalue'], ['--no-mdns=yes'], ['stray'], ['--uninstall', '--name', 'x'], ['--token', '-']]) {
    const r = await install(args, 10_000)
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    t.is(r.stdout, '', args.join(' '))
    t.regex(r.stderr, /^install\.sh: [^\n]+\n$/, args.join(' '))
  }
})

test('install.sh --help lists its flags', async t => {
  const r = await install(['--help'], 10_000)
  t.is(r.code, 0)
  for (const f of ['--prefix', '--data-dir', '--token', '--join', '--name', '--listen', '--api', '--no-mdns',
    '--capacity', '--service', '--source', '--uninstall']) t.true(r.stdout.includes(f), f)
})

const rootTest = isRoot ? test : test.skip
if (!isRoot) console.log('test/install.test.ts: skipping the install/upgrade/uninstall test: install.sh must run as root')

rootTest('install.sh installs a running agent, upgrades it in place and uninstalls all but the data dir', async t => {
  // two installs with npm ci each, on a loaded machine
  t.timeout(12 * 60_000)
  const dir = await tempDir('vgrid-install-')
  const prefix = join(dir, 'prefix')
  const dataDir = join(dir, 'data')
  const supPidFile = join(prefix, 'run/supervisor.pid')
  const agentPidFile = join(prefix, 'run/agent.pid')
  const logFile = join(prefix, 'log/vgrid.log')
  const seen = new Set<number>()
  const record = async (): Promise<{ sup: number, agent: number }> => {
    const sup = await readPid(supPidFile)
    const agent = await readPid(agentPidFile)
    t.truthy(sup, 'supervisor pid file')
    t.truthy(agent, 'agent pid file')
    seen.add(sup!)
    seen.add(agent!)
    return { sup: sup!, agent: agent! }
  }
  t.teardown(async () => {
    // whatever is left of this install, by PID: the pid files' and every PID seen
    for (const f of [supPidFile, agentPidFile]) {
      const p = await readPid(f)
      if (p != null) seen.add(p)
    }
    for (const p of seen) {
      const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')
      if (cmd.includes(prefix)) try { process.kill(p, 'SIGKILL') } catch {}
    }
    for (const p of await processesMentioning(prefix + '/')) try { process.kill(p, 'SIGKILL') } catch {}
    await rm(dir, { recursive: true, force: true })
  })
  const log = async (): Promise<string> => await readFile(logFile, 'utf8').catch(() => '(no log)')
  const p2p = await freePort()
  const apiPort = await freePort()
  const api = `127.0.0.1:${apiPort}`

  // 1. a fresh install starts a new grid and prints its token
  let t0 = Date.now()
  const first = await install(['--prefix', prefix, '--data-dir', dataDir, '--name', 'installed',
    '--listen', `/ip4/127.0.0.1/tcp/${p2p}`, '--api', api, '--no-mdns', '--no-overlay', '--service', 'background'])
  t.is(first.code, 0, `first install failed:\n${first.stderr}\n${await log()}`)
  t.log(`install: ${Date.now() - t0} ms`)
  const status = await getJson<Status>(api, '/v1/status')
  t.is(status.node.name, 'installed')
  t.is(status.members.alive, 1)
  const token = first.stdout.trim()
  t.is(first.stdout.split('\n').length, 2, 'stdout is the token alone')
  t.is(token, (await getJson<{ token: string }>(api, '/v1/token')).token)
  const clusterKey = keyHex(decodeToken(token).key)
  const identity = await readFile(join(dataDir, 'identity.key'))
  const config = JSON.parse(await readFile(join(prefix, 'etc/vgrid.json'), 'utf8')) as Record<string, unknown>
  t.like(config, { dataDir, api, mdns: false, name: 'installed', listen: [`/ip4/127.0.0.1/tcp/${p2p}`] })
  t.is((await stat(join(prefix, 'etc/vgrid.json'))).mode & 0o777, 0o600)
  t.regex(await log(), /agent started/, 'the background service logs to PREFIX/log/vgrid.log')
  const firstPids = await record()
  t.true(isAlive(firstPids.sup) && isAlive(firstPids.agent))

  // 2. the supervisor restarts an agent that dies
  process.kill(firstPids.agent, 'SIGKILL')
  await waitFor(async () => {
    const p = await readPid(agentPidFile)
    return p != null && p !== firstPids.agent && (await getJson<Status>(api, '/v1/status')).node.id === status.node.id
  }, 15_000, 'the supervisor restarts the agent', () => isAlive(firstPids.sup) ? undefined : 'the supervisor died')
  await record()

  // 3. a second run (the prefix alone: the other settings are kept) upgrades in place
  const before = await record()
  t0 = Date.now()
  const second = await install(['--prefix', prefix])
  t.is(second.code, 0, `upgrade failed:\n${second.stderr}\n${await log()}`)
  t.log(`upgrade: ${Date.now() - t0} ms`)
  t.regex(second.stderr, /upgraded/)
  const after = await getJson<Status>(api, '/v1/status')
  t.is(after.node.id, status.node.id, 'same node id after the upgrade')
  t.is(after.node.name, 'installed')
  t.is(keyHex(decodeToken(second.stdout.trim()).key), clusterKey, 'same grid after the upgrade')
  t.deepEqual(await readFile(join(dataDir, 'identity.key')), identity, 'data dir kept')
  t.false(isAlive(before.sup), 'old supervisor gone')
  t.false(isAlive(before.agent), 'old agent gone')
  const upgraded = await record()
  t.true(isAlive(upgraded.sup) && isAlive(upgraded.agent))

  // 4. --uninstall: the prefix goes, the data dir stays, no process is left
  const third = await install(['--prefix', prefix, '--uninstall'], 60_000)
  t.is(third.code, 0, third.stderr)
  t.false(await exists(prefix), 'prefix removed')
  t.true(await exists(join(dataDir, 'identity.key')), 'data dir kept')
  t.true(await exists(join(dataDir, 'cluster.key')), 'cluster key kept')
  for (const p of seen) t.false(isAlive(p), `process ${p} is gone`)
  t.deepEqual(await processesMentioning(prefix + '/'), [], 'no process of the install is left')
  await t.throwsAsync(getJson(api, '/v1/status'))

  // uninstalling again is a no-op
  const again = await install(['--prefix', prefix, '--uninstall'], 30_000)
  t.is(again.code, 0, again.stderr)
})
