// A helper process that must not outlive the agent that started it (a probe's QEMU):
// run through util-linux `setpriv --pdeathsig KILL`, the kernel kills it when its
// parent ends, however the agent ended (SIGKILL included), where a timer of the agent's
// would never fire. VMs are not spawned so: they outlive their agent on purpose.
import { spawn, type ChildProcessByStdio, type SpawnOptionsWithStdioTuple, type StdioNull, type StdioPipe } from 'node:child_process'
import type { Readable } from 'node:stream'
import { which } from '../../netns/netns.ts'

let setpriv: string | null | undefined

/** `cmd args` killed by the kernel when this process ends (without setpriv: a plain spawn, ended only by the caller) */
export function spawnTied (cmd: string, args: string[], opts: SpawnOptionsWithStdioTuple<StdioNull, StdioPipe, StdioPipe>): ChildProcessByStdio<null, Readable, Readable> {
  // setpriv execs the command: the child's pid is the command's own
  setpriv ??= which('setpriv') ?? null
  return setpriv == null ? spawn(cmd, args, opts) : spawn(setpriv, ['--pdeathsig', 'KILL', '--', cmd, ...args], opts)
}
