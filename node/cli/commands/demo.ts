// `vgrid demo [--hosts N]` and `vgrid demo --stop`: a grid of namespace hosts on
// this machine (see node/demo). Needs root and iproute2. `--kill|--start|--cut|--heal
// HOST` act on one host of the running demo (node/demo/control.ts).
import { existsSync } from 'node:fs'
import { parse } from '../args.ts'
import { CliError } from '../client.ts'

const USAGE = `vgrid demo [--hosts N]   (N from 1 to 8, default 3; runs until Ctrl-C)
       vgrid demo --stop        (from another shell: stops the demo and removes everything it made)
       vgrid demo --kill HOST [--signal SIGKILL|SIGTERM|SIGINT|SIGSTOP|SIGCONT]   (its agent, as a crash (default), a restart, a leave, a freeze)
       vgrid demo --start HOST  (its agent, again)
       vgrid demo --cut HOST [--from HOST,HOST...]   (a partition: cut off from those hosts, default every other, both ways)
       vgrid demo --heal HOST`

export async function run (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { hosts: { type: 'string' }, stop: { type: 'boolean' }, kill: { type: 'string' }, start: { type: 'string' }, cut: { type: 'string' }, heal: { type: 'string' }, signal: { type: 'string' }, from: { type: 'string' } }, USAGE)
  const acts = (['stop', 'kill', 'start', 'cut', 'heal'] as const).filter(a => v[a] != null)
  if (acts.length > 1) throw new CliError(`give one of --${acts.join(', --')}\nusage: ${USAGE}`, 2)
  if (v.signal != null && v.kill == null) throw new CliError('--signal is for --kill', 2)
  if (v.from != null && v.cut == null) throw new CliError('--from is for --cut', 2)
  if (acts.length > 0 && v.hosts != null) throw new CliError(`--${acts[0]!} takes no --hosts`, 2)
  const { runDemo, stopDemo, DemoError, MIN_HOSTS, MAX_HOSTS, CONTROL_SOCKET } = await import('../../demo/index.ts')
  const say = (l: string): void => { process.stdout.write(l + '\n') }
  try {
    if (v.stop === true) {
      if (process.getuid?.() !== 0) throw new CliError('stopping the demo needs root, as starting it did')
      await stopDemo(say)
      return
    }
    const act = acts[0]
    if (act != null) {
      const { askDemo, parseControl, SIGNALS } = await import('../../demo/control.ts')
      if (process.getuid?.() !== 0) throw new CliError(`--${act} needs root, as starting the demo did`)
      const signal = v.signal == null ? undefined : (v.signal as string).toUpperCase().replace(/^(SIG)?/, 'SIG')
      if (signal != null && !(SIGNALS as readonly string[]).includes(signal)) throw new CliError(`--signal "${String(v.signal)}": one of ${SIGNALS.join(', ')}`, 2)
      const req = parseControl({ op: act, host: v[act], ...(signal != null ? { signal } : {}), ...(v.from != null ? { from: (v.from as string).split(',').map(s => s.trim()).filter(s => s !== '') } : {}) })
      if ('error' in req) throw new CliError(`--${act}: ${req.error}`, 2)
      if (!existsSync(CONTROL_SOCKET)) throw new CliError('no demo is running here (start one with `vgrid demo`)')
      const a = await askDemo(CONTROL_SOCKET, req).catch((err: Error) => { throw new CliError(`the running demo could not be asked: ${err.message}`) })
      if (!a.ok) throw new CliError(a.error, a.usage === true ? 2 : 1)
      say(a.message)
      return
    }
    const text = (v.hosts as string | undefined) ?? '3'
    const hosts = /^\d+$/.test(text) ? Number(text) : NaN
    if (!(hosts >= MIN_HOSTS && hosts <= MAX_HOSTS)) {
      throw new CliError(`--hosts must be a whole number from ${MIN_HOSTS} to ${MAX_HOSTS}, got "${text}"`, 2)
    }
    await runDemo({ hosts, say })
    process.exit(0)
  } catch (err) {
    if (err instanceof DemoError) throw new CliError(err.message)
    throw err
  }
}
