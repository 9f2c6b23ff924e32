// Runs the `vgrid` CLI from the sources in a process of its own, its output captured.
import { spawn } from 'node:child_process'
import { join } from 'node:path'

export const CLI_MAIN = join(import.meta.dirname, '../../node/cli/main.ts')

/** `vgrid ARGS` with `env` over this process's environment (a key set to undefined is left out) */
export async function runCli (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  c.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  c.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  return { code, stdout, stderr }
}
