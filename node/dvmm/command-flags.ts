// A process VM's command as `vm create` and `vm update` take it: after `--`, as the
// shell split it, or `--command "CMD ARG..."` split at its spaces.
import { CliError } from '../cli/client.ts'

/** `args` split at `--`: the flags before it, and the command after it (undefined: no `--`) */
export function splitAtDashes (args: string[]): { argv: string[], after?: string[] } {
  const dash = args.indexOf('--')
  return dash < 0 ? { argv: args } : { argv: args.slice(0, dash), after: args.slice(dash + 1) }
}

/**
 * The command given by `--command` (each given once; one with spaces is split at them,
 * as a shell splits a simple line: quotes and backslashes are no part of that, they
 * would reach the command as they are) or after `--`; undefined when neither is.
 */
export function commandOf (flag: string[] | undefined, after: string[] | undefined, example: string, usage: string): string[] | undefined {
  if (flag != null && after != null) throw new CliError('give the command either with --command or after --, not both', 2)
  if (after != null && after.length === 0) throw new CliError(`nothing after --: give the command the VM runs after it (-- CMD ARG...)\nusage: ${usage}`, 2)
  const quoted = flag?.find(c => /['"\\]/.test(c))
  if (quoted != null) throw new CliError(`--command ${JSON.stringify(quoted)}: --command is split at spaces only, quotes and backslashes stay as they are; give a command that needs them after --, as the shell splits it: ${example} -- /bin/sh -c 'sleep 1; exit 1'`, 2)
  if (flag != null) return flag.length === 1 ? flag[0]!.split(/\s+/).filter(s => s !== '') : flag
  return after
}
