// The DVMM CLI's commands (node/dvmm/cli.ts) run in a process of their own against an
// API address, as `vgrid` runs them: exit code, stdout and stderr; with --json an error
// is printed as the JSON answer's shape ({error: {code}}).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const SCRIPT = "const m = await import(process.cwd() + '/node/dvmm/cli.ts'); const [cmd, ...rest] = process.argv.slice(1); try { await m[cmd](rest) } catch (e) { process.stderr.write(e.message + '\\n'); if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ error: { code: e.code } })); process.exitCode = e.exitCode ?? 1 }"

export async function cli (api: string, ...args: string[]): Promise<{ code: number, out: string, err: string }> {
  try {
    const r = await run(process.execPath, ['--input-type=module', '-e', SCRIPT, ...args], { env: { ...process.env, VGRID_API: api }, timeout: 60_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number, stdout: string, stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}
