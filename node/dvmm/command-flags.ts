// What a VM runs or boots as `vm create` and `vm update` take it: a process VM's command
// after `--`, as the shell split it, or `--command "CMD ARG..."` split at its spaces; and
// which boot flags go together.
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

/**
 * What is wrong with the boot flags of `vm create` together (pure; undefined: nothing):
 * a VM runs a command (process) or boots a kernel or an image (qemu), one of them. The
 * API refuses the same (boot-fields.ts bootFieldsOf); said here in the flags' names.
 */
export function bootFlagsProblem (f: { kernel: boolean, initrd: boolean, cmdline: boolean, image: boolean, command: boolean }): string | undefined {
  const qemu = (['kernel', 'initrd', 'cmdline', 'image'] as const).filter(k => f[k]).map(k => `--${k}`)
  if (f.command && qemu.length > 0) return `a command runs a process VM, ${qemu.join(' and ')} ${qemu.length === 1 ? 'is' : 'are'} for a qemu VM: give one or the other`
  // given both, the kernel was booted and the image ignored (a tester)
  if (f.kernel && f.image) return 'give --kernel (with --initrd, --cmdline) or --image, not both'
  const loose = (['initrd', 'cmdline'] as const).filter(k => f[k]).map(k => `--${k}`)
  // an image boots through its own boot loader, which reads neither
  if (!f.kernel && loose.length > 0) return `${loose.join(' and ')} ${loose.length === 1 ? 'goes' : 'go'} with --kernel (direct boot), and none is given${f.image ? ': an --image boots through its own boot loader' : ''}`
  return undefined
}

/**
 * An API error naming an entry of a list by its place in the request (`volumes[1]: ...`)
 * said as the flag the user gave (bb38; vm update's --attach, --input and --output, bb53)
 */
export function asFlags (err: unknown, list: readonly string[] | undefined, flag = '--volume', field = 'volumes'): unknown {
  if (!(err instanceof CliError)) return err
  const m = new RegExp(`^${field}\\[(\\d+)\\]: `).exec(err.message)
  const given = m == null ? undefined : list?.[Number(m[1])]
  if (given == null) return err
  const said = (text: string): string => `${flag} ${JSON.stringify(given)}: ${text.startsWith(m![0]) ? text.slice(m![0].length) : text}`
  // the detail (what --json prints) without the code the text form appends (rv42)
  return new CliError(said(err.message), err.exitCode, { code: err.code, detail: said(err.detail) })
}
