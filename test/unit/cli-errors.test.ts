// Errors a user meets at the edges print one line, never a stack: a client's output to
// a pipe whose reader is gone ends quietly, to a full disk it says so; an agent that
// cannot listen names the address and the system's reason.
import test from 'ava'
import { spawn } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { listenFailure } from '../../node/network/index.ts'

const main = join(import.meta.dirname, '../../node/cli/main.ts')

async function runCli (args: string[], stdout: 'closed' | number): Promise<{ code: number | null, stderr: string }> {
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', main, ...args], { stdio: ['ignore', stdout === 'closed' ? 'pipe' : stdout, 'pipe'] })
  if (stdout === 'closed') c.stdout!.destroy()
  let stderr = ''
  c.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  return { code, stderr }
}

test('a client whose output pipe is closed ends quietly; one whose output cannot be written says so in one line', async t => {
  t.deepEqual(await runCli(['--help'], 'closed'), { code: 0, stderr: '' })
  const full = openSync('/dev/full', 'w')
  try {
    const r = await runCli(['--help'], full)
    t.is(r.code, 1)
    t.is(r.stderr, 'vgrid: cannot write the output: ENOSPC\n')
  } finally { closeSync(full) }
})

test('listenFailure: the address and the reason, in one line', t => {
  const libp2p = 'Some configured addresses failed to be listened on, you may need to remove one or more listen addresses from your configuration or set `transportManager.faultTolerance` to NO_FATAL:\n\n' +
    '  /ip4/127.0.0.1/tcp/7495: Error: listen EADDRINUSE: address already in use 127.0.0.1:7495\n      at Server.setupListenHandle [as _listen2] (node:net:2328:16)\n'
  t.is(listenFailure(libp2p), 'cannot listen on /ip4/127.0.0.1/tcp/7495 (listen EADDRINUSE: address already in use 127.0.0.1:7495): change --listen or stop what uses it')
  t.is(listenFailure('something else\nwith detail'), 'something else')
})
