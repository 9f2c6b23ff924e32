// A helper process that must not outlive the agent that started it (a probe's QEMU):
// run through util-linux `setpriv --pdeathsig KILL`, the kernel kills it when its
// parent ends, however the agent ended (SIGKILL included), where a timer of the agent's
// would never fire. VMs are not spawned so: they outlive their agent on purpose.
import { spawn, type ChildProcessByStdio, type SpawnOptionsWithStdioTuple, type StdioNull, type StdioPipe } from 'node:child_process'
import type { Readable } from 'node:stream'
import { tiedArgv } from '../../netns/netns.ts'

/** `cmd args` killed by the kernel when this process ends (tiedArgv; without setpriv: a plain spawn, ended only by the caller) */
export function spawnTied (cmd: string, args: string[], opts: SpawnOptionsWithStdioTuple<StdioNull, StdioPipe, StdioPipe>): ChildProcessByStdio<null, Readable, Readable> {
  const [tied, ...rest] = tiedArgv([cmd, ...args])
  return spawn(tied!, rest, opts)
}
