// `vgrid demo [--hosts N]` and `vgrid demo --stop`: a grid of namespace hosts on
// this machine (see node/demo). Needs root and iproute2.
import { parse } from '../args.ts'
import { CliError } from '../client.ts'

const USAGE = 'vgrid demo [--hosts N]   (N from 1 to 8, default 3; runs until Ctrl-C)\n       vgrid demo --stop        (from another shell: stops the demo and removes everything it made)'

export async function run (argv: string[]): Promise<void> {
  const { values: v } = parse(argv, { hosts: { type: 'string' }, stop: { type: 'boolean' } }, USAGE)
  const { runDemo, stopDemo, DemoError, MIN_HOSTS, MAX_HOSTS } = await import('../../demo/index.ts')
  const say = (l: string): void => { process.stdout.write(l + '\n') }
  try {
    if (v.stop === true) {
      if (v.hosts != null) throw new CliError('--stop takes no --hosts', 2)
      if (process.getuid?.() !== 0) throw new CliError('stopping the demo needs root, as starting it did')
      await stopDemo(say)
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
