// `vgrid agent`: runs the daemon in the foreground until SIGTERM/SIGINT.
import { parse } from '../args.ts'
import { CliError } from '../client.ts'
import { resolveConfig, ConfigError, type ConfigFlags } from '../../config.ts'
import { bridgeWatchdog } from '../../dvmm/watchdog/bridge.ts'
import { lockDataDir } from '../../data-dir-lock.ts'
import { takeOverlayNamespace } from '../../lcm/namespace-lock.ts'
import type { Agent } from '../../agent.ts'

const USAGE = 'vgrid agent [--config FILE] [--data-dir DIR] [--listen MULTIADDR]... [--api HOST:PORT] [--api-socket PATH|none] [--join MULTIADDR]... ' +
  '[--key FILE | --token TOKEN (or VGRID_TOKEN in the environment)] [--name NAME] [--no-mdns] [--no-overlay] [--wg-port PORT] [--capacity cpu=N,mem=SIZE,disk=SIZE] [--label KEY=VALUE]... ' +
  '[--advert-interval DUR] [--heartbeat-interval DUR] [--suspect-after DUR] [--dead-after DUR] [--silence-after DUR] [--forget-after DUR] [--fence-timeout DUR] [--restart-grace DUR]'

function parsePort (text: string, flag: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) throw new CliError(`${flag}: "${text}" is not a port (1-65535)`, 2)
  return n
}

export async function run (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, {
    config: { type: 'string' },
    'data-dir': { type: 'string' },
    listen: { type: 'string', multiple: true },
    api: { type: 'string' },
    'api-socket': { type: 'string' },
    join: { type: 'string', multiple: true },
    key: { type: 'string' },
    token: { type: 'string' },
    name: { type: 'string' },
    'no-mdns': { type: 'boolean' },
    'no-overlay': { type: 'boolean' },
    'wg-port': { type: 'string' },
    capacity: { type: 'string' },
    label: { type: 'string', multiple: true },
    'advert-interval': { type: 'string' },
    'heartbeat-interval': { type: 'string' },
    'suspect-after': { type: 'string' },
    'silence-after': { type: 'string' },
    'dead-after': { type: 'string' },
    'forget-after': { type: 'string' },
    'fence-timeout': { type: 'string' },
    'restart-grace': { type: 'string' }
  }, USAGE)
  const labels: Record<string, string> = {}
  for (const l of (v.label as string[] | undefined) ?? []) {
    const i = l.indexOf('=')
    if (i <= 0) throw new CliError(`--label: "${l}" is not KEY=VALUE`, 2)
    labels[l.slice(0, i)] = l.slice(i + 1)
  }
  // a token in the command line shows in `ps` to every local user for the agent's life
  // (bb48): VGRID_TOKEN (the environment, root's alone to read) takes its place
  const envToken = process.env.VGRID_TOKEN?.trim()
  // not passed on to every program the agent runs (rv47)
  delete process.env.VGRID_TOKEN
  const token = (v.token as string | undefined) ?? (envToken === '' ? undefined : envToken)
  if (v.key != null && token != null) throw new CliError(`--key and ${v.token != null ? '--token' : 'VGRID_TOKEN'} are alternatives: give one`, 2)
  const flags: ConfigFlags = {
    config: v.config as string | undefined,
    dataDir: v['data-dir'] as string | undefined,
    listen: v.listen as string[] | undefined,
    api: v.api as string | undefined,
    apiSocket: v['api-socket'] as string | undefined,
    join: v.join as string[] | undefined,
    key: v.key as string | undefined,
    token,
    name: v.name as string | undefined,
    mdns: v['no-mdns'] === true ? false : undefined,
    overlay: v['no-overlay'] === true ? false : undefined,
    wireguardPort: v['wg-port'] == null ? undefined : parsePort(v['wg-port'] as string, '--wg-port'),
    capacity: v.capacity as string | undefined,
    labels: Object.keys(labels).length > 0 ? labels : undefined,
    advertInterval: v['advert-interval'] as string | undefined,
    heartbeatInterval: v['heartbeat-interval'] as string | undefined,
    suspectAfter: v['suspect-after'] as string | undefined,
    silenceAfter: v['silence-after'] as string | undefined,
    deadAfter: v['dead-after'] as string | undefined,
    forgetAfter: v['forget-after'] as string | undefined,
    fenceTimeout: v['fence-timeout'] as string | undefined,
    restartGrace: v['restart-grace'] as string | undefined
  }
  let agent: Agent | undefined
  try {
    const config = await resolveConfig(flags)
    // one agent per data dir, before anything touches it (data-dir-lock.ts); held until the process ends
    try {
      // its holder killed (rv48: the lock went without a word): said, as another agent could now start on the dir
      await lockDataDir(config.dataDir, why => {
        const say = `the data dir's lock was lost (${why}): another agent could now start on ${config.dataDir}; restart this agent to hold it again`
        if (agent != null) agent.log.error(say); else process.stderr.write(`vgrid agent: ${say}\n`)
      })
    } catch (err) {
      throw new CliError((err as Error).message, 1)
    }
    // one agent with the overlay per network namespace (lcm/namespace-lock.ts), before it joins the grid
    if (config.overlay) {
      try {
        await takeOverlayNamespace()
      } catch (err) {
        throw new CliError((err as Error).message, 1)
      }
    }
    // first, before the agent loads: keep the previous run's VMs alive for the fence
    // timeout, not just the watchdog's (see bridge.ts)
    const bridge = bridgeWatchdog(config.dataDir)
    const { Agent } = await import('../../agent.ts')
    agent = new Agent(config, { previousFeedAt: bridge.lastFeedAt, previousFeedFenceMs: bridge.lastFeedFenceMs, stopBridge: bridge.stop })
    if (bridge.until != null) agent.log.info('kept the previous run\'s watchdog fed while starting', { lastFeedAt: new Date(bridge.lastFeedAt!).toISOString(), until: new Date(bridge.until).toISOString() })
    // a watchdog left armed that this run came too late to feed: its VMs are (or are about to be) killed, and why
    else if (bridge.lastFeedAt != null && /^too late/.test(bridge.why)) agent.log.warn(`the previous run's watchdog could not be kept fed (${bridge.why}): the VMs it guards are killed by its timeout and start again; a restart adopts them only if the agent is back within the watchdog's timeout of the previous run's last feed (the restart grace, --restart-grace, when every member confirmed it as the agent stopped; else 3/5 of the fence timeout)`, { lastFeedAt: new Date(bridge.lastFeedAt).toISOString() })
    await agent.start()
    bridge.stop()
    if (v.token != null) agent.log.warn('the join token was given with --token, which `ps` shows every user of this machine for as long as the agent runs: VGRID_TOKEN=... vgrid agent (or the config file) keeps it to root')
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(v.token == null && token != null ? err.message.replace(/^--token:/, 'VGRID_TOKEN:') : err.message, 2)
    // a service that failed to start wraps the cause (ServiceStartError)
    const e = ((err as Error).cause ?? err) as NodeJS.ErrnoException
    if (e.code === 'EADDRINUSE') throw new CliError(`address already in use: ${e.message.replace(/^listen EADDRINUSE: address already in use /, '')} (is another agent running?)`)
    if (e.code === 'EACCES' || e.code === 'EPERM') throw new CliError(`permission denied: ${e.message}`)
    throw err
  }
  // SIGTERM (systemctl stop or restart, an upgrade, vgrid-service stop) stops the agent
  // but not the node: its VMs run on under the watchdog, and a run back within the fence
  // timeout adopts them (else the watchdog kills them and they run again elsewhere, as
  // after a crash). SIGINT (Ctrl-C, vgrid-service leave, install.sh --uninstall) makes
  // the node leave the grid: its VMs stop and its leases and roll entry go.
  let stopping = false
  const shutdown = (signal: string, leave: boolean): void => {
    if (stopping) {
      agent.log.warn('second signal: exiting now', { signal })
      process.exit(1)
    }
    stopping = true
    agent.log.info(leave ? 'stopping: this node leaves the grid (its VMs stop)' : 'stopping: this node stays in the grid (its VMs run on for the next run to adopt)', { signal })
    agent.stop({ leave }).then(() => process.exit(0), (err: unknown) => {
      agent.log.error('stop failed', { error: (err as Error).message })
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM', false))
  process.on('SIGINT', () => shutdown('SIGINT', true))
}
