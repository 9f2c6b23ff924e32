// The one binary, `vgrid`. `vgrid agent` runs the daemon; every other subcommand is a
// client of the local agent's HTTP API. Errors print one line and exit non-zero.
import { CliError, clipEchoes, jsonError, lastAnswerRead, wantsJson } from './client.ts'
import { VERSION } from '../version.ts'

type Command = { summary: string, run: (argv: string[]) => Promise<void> }

const COMMANDS: Record<string, Command> = {
  agent: { summary: 'run the agent (the daemon) on this server', run: async a => (await import('./commands/agent.ts')).run(a) },
  init: { summary: 'write a new cluster key and print its join token', run: async a => (await import('./commands/cluster.ts')).init(a) },
  token: { summary: 'print the join token of the running grid', run: async a => (await import('./commands/cluster.ts')).token(a) },
  status: { summary: 'this node and the pool as it sees it', run: async a => (await import('./commands/status.ts')).status(a) },
  nodes: { summary: 'every member of the grid', run: async a => (await import('./commands/status.ts')).nodes(a) },
  demo: { summary: 'a grid of N hosts on this machine (network namespaces) to try vgrid: vgrid demo [--hosts N], --stop, --kill|--start|--cut|--heal HOST (see vgrid demo --help)', run: async a => (await import('./commands/demo.ts')).run(a) },
  node: {
    summary: 'label, drain or forget a node (vgrid node label NODE key=value, unlabel NODE key, drain NODE, undrain NODE, forget NODE)',
    run: async a => ['drain', 'undrain', 'forget'].includes(a[0] ?? '') ? (await import('../dvmm/cli.ts')).node(a) : (await import('./commands/node-label.ts')).run(a)
  },
  vm: { summary: 'VMs on the grid: vgrid vm create|ls|show|update|start|stop|rm|wait|console', run: async a => (await import('../dvmm/cli.ts')).vm(a) },
  vol: { summary: 'volumes: vgrid vol create|ls|info|resize|mv|rm|snapshot|clone|import|export|repair|scrub', run: async a => { await (await import('../gvs/cli.ts')).vol(a) } },
  ha: { summary: 'could every running VM be placed again if any one node failed', run: async a => (await import('../dvmm/cli.ts')).ha(a) },
  image: { summary: 'build the guest appliance the qemu driver boots (vgrid image build)', run: async a => (await import('../dvmm/image/cli.ts')).run(a) },
  link: { summary: 'declared connections between VMs (vgrid link create FROM_VM.OUT TO_VM.IN --port N [--protocol udp], ls, rm ID)', run: async a => (await import('../lcm/cli.ts')).link(a) },
  net: { summary: 'this agent\'s WireGuard interface, peers and dropped traffic', run: async a => (await import('../lcm/cli.ts')).net(a) },
  state: { summary: 'the replicated cluster document: heads, size, objects, sync with each peer', run: async a => (await import('./commands/state.ts')).state(a) }
}

function help (): string {
  const w = Math.max(...Object.keys(COMMANDS).map(k => k.length))
  return [
    `vgrid ${VERSION}: a peer-to-peer grid of servers that behave as one pool`,
    '',
    'usage: vgrid <command> [flags]   (vgrid <command> --help for its flags)',
    '',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`),
    '',
    'Client commands talk to the agent at --api or $VGRID_API (default: the socket /run/vgrid/api.sock if there, else 127.0.0.1:7401).'
  ].join('\n')
}

/**
 * A client's output that cannot be written: to a pipe whose reader is gone (`| head`),
 * that ends the command quietly, as for any Unix tool; anything else (a full disk) is
 * one line. Not for the agent and the demo, whose output is a log they outlive.
 */
function quietOutputErrors (): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    process.stderr.write(`vgrid: cannot write the output: ${err.code ?? err.message}\n`)
    process.exit(1)
  })
}

/**
 * `vgrid --api HOST:PORT --json CMD ...`: the flags every client command takes, given
 * before the command, go after it and its subcommand (before any `--`: a VM's own
 * command line)
 */
function hoistClientFlags (argv: readonly string[]): string[] {
  const flags: string[] = []
  let i = 0
  for (;;) {
    const a = argv[i]
    // `vgrid --api vm ls`: the value left out, the command taken for it (bb41: unknown command "ls")
    if (a === '--api' && argv[i + 1] != null && Object.hasOwn(COMMANDS, argv[i + 1]!)) throw new CliError(`--api needs a value (HOST:PORT) before the command; it took "${argv[i + 1]}" (vgrid [--json] [--api HOST:PORT] COMMAND ...)`, 2)
    if (a === '--api' && argv.length - i >= 3) { flags.push(a, argv[i + 1]!); i += 2 } else if ((a?.startsWith('--api=') === true || a === '--json') && argv.length - i >= 2) { flags.push(a); i++ } else break
  }
  if (flags.length === 0) return [...argv]
  const rest = argv.slice(i)
  // help needs no agent: `vgrid --api X vm --help` is `vgrid vm --help` (bb45: "unknown subcommand \"vm --api\"")
  const dashes = rest.indexOf('--')
  if (rest.slice(0, dashes < 0 ? undefined : dashes).some(a => a === '--help' || a === '-h')) return rest
  const at = rest.length >= 2 && !rest[1]!.startsWith('-') ? 2 : 1
  return [...rest.slice(0, at), ...flags, ...rest.slice(at)]
}

async function main (argv: string[]): Promise<void> {
  const [cmd, ...rest] = hoistClientFlags(argv)
  if (cmd !== 'agent' && cmd !== 'demo') quietOutputErrors()
  // no command is a usage error, as `vgrid vm` with no subcommand is (bb38: exit 0); asked for, help is the answer
  if (cmd == null) { process.stderr.write(help() + '\n'); process.exitCode = 2; return }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(help() + '\n')
    return
  }
  if (cmd === '--version' || cmd === 'version') {
    process.stdout.write(VERSION + '\n')
    return
  }
  const c = COMMANDS[cmd]
  if (c == null) {
    // a flag where the command goes: --api or --json before it with nothing after them to hoist over
    const what = !cmd.startsWith('-')
      ? `unknown command "${cmd}"`
      : cmd === '--api' || cmd.startsWith('--api=') || cmd === '--json'
        ? `${cmd.replace(/=.*/, '')} ${cmd === '--api' && rest.length === 0 ? 'needs a value (HOST:PORT) and' : 'needs'} a command after it (vgrid [--json] [--api HOST:PORT] COMMAND ...)`
        : `unknown flag ${cmd} before a command`
    throw new CliError(`${what} (see vgrid --help)`, 2)
  }
  await c.run(rest)
}

/**
 * A command that failed reading an agent's answer (a TypeError or RangeError after an
 * answer came: a field it needs missing, of another type) got an answer of another
 * shape, most likely from a server that is not a vgrid agent: said so, not in
 * JavaScript's words ("Cannot read properties of undefined"). With VGRID_DEBUG set
 * the error and its stack follow, so a bug of the CLI's own stays in sight.
 */
function unreadableAnswer (err: unknown): CliError | undefined {
  const answer = lastAnswerRead()
  if (answer == null || !(err instanceof TypeError || err instanceof RangeError)) return undefined
  const hint = process.env.VGRID_DEBUG != null ? '' : ' (VGRID_DEBUG=1 shows the error)'
  // a field it needs missing: another server's answer, or an agent of another release (rv28)
  return new CliError(`the answer from ${answer.from} to ${answer.method} ${answer.path} lacks what this command reads: is --api pointing at a vgrid agent, and of this CLI's release (vgrid --version)?${hint}`, 1, { code: 'bad_answer' })
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const json = wantsJson(process.argv.slice(2))
  const cli = err instanceof CliError ? err : unreadableAnswer(err)
  if (cli != null) {
    // long values given by mistake are clipped, whoever echoes them (the CLI or the agent)
    if (json) process.stdout.write(jsonError(cli.code, clipEchoes(cli.detail), cli.exitCode))
    else process.stderr.write(`vgrid: ${clipEchoes(cli.message)}\n`)
    if (cli !== err && process.env.VGRID_DEBUG != null) process.stderr.write(`${(err as Error).stack}\n`)
    process.exit(cli.exitCode)
  }
  const e = err as Error
  if (json) process.stdout.write(jsonError('error', e.message ?? String(err), 1))
  else process.stderr.write(`vgrid: ${e.message ?? String(err)}\n`)
  if (process.env.VGRID_DEBUG != null) process.stderr.write(`${e.stack}\n`)
  process.exit(1)
})
