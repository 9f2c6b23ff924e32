// Flag parsing for every subcommand: node:util parseArgs in strict mode, with its
// errors turned into one-line CLI errors (exit code 2: usage).
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { CliError } from './client.ts'

export type Options = NonNullable<ParseArgsConfig['options']>

export const API_OPTION: Options = { api: { type: 'string' } }
export const JSON_OPTION: Options = { json: { type: 'boolean' } }

export function parse<O extends Options> (argv: string[], options: O, usage: string, positionals = 0): { values: ReturnType<typeof parseArgs<{ options: O, allowPositionals: true }>>['values'], positionals: string[] } {
  // a one-line usage goes after the error in brackets, a whole usage text below it
  const help = usage.startsWith('usage:') ? usage : `usage: ${usage}`
  const withUsage = (what: string): string => help.includes('\n') ? `${what}\n${help}` : `${what} (${help})`
  let out
  try {
    out = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true, tokens: true })
  } catch (err) {
    throw new CliError(withUsage(parseErrorText(err as { code?: string, message: string }, argv)), 2)
  }
  if ((out.values as { help?: boolean }).help === true) {
    process.stdout.write(`${help}\n`)
    process.exit(0)
  }
  if (out.positionals.length > positionals) {
    throw new CliError(withUsage(`unexpected argument "${out.positionals[positionals]}"`), 2)
  }
  // a flag that takes one value, given twice (--size 1M --size 2M): which was meant is not known
  const seen = new Set<string>()
  for (const t of out.tokens ?? []) {
    if (t.kind !== 'option' || options[t.name]?.multiple === true || options[t.name]?.type !== 'string') continue
    if (seen.has(t.name)) throw new CliError(withUsage(`--${t.name} is given more than once`), 2)
    seen.add(t.name)
  }
  return { values: out.values as never, positionals: out.positionals }
}

/** node:util parseArgs's error, said for people (pure) */
function parseErrorText (e: { code?: string, message: string }, argv: string[]): string {
  const flag = /'(-[^']*)'/.exec(e.message)?.[1]
  const first = e.message.split('\n')[0] ?? e.message
  if (flag == null) return first
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    // a negative number where an argument goes (vol resize VOL -1G) reads as short flags
    if (/^-[0-9.]/.test(flag)) return `"${argv.find(a => a.startsWith(flag)) ?? flag}" starts with "-" (a negative number?): values must be above zero`
    return `unknown flag ${flag}`
  }
  // the last argument, with no value after it: "Option '--cpu <value>' argument missing"
  if (/ <value>$/.test(flag) && /argument missing/.test(e.message)) return `${flag.replace(/ <value>$/, '')} needs a value`
  if (e.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || !/is ambiguous/.test(e.message)) return first
  // taken for a flag's value is something that starts with a dash: the next flag (the
  // value left out: --cpu --memory 1M), or a negative number (--cpu -1)
  const next = argv[argv.indexOf(flag) + 1]
  if (next != null && !/^-[0-9.]/.test(next)) return `${flag} needs a value: it is followed by the flag ${next}`
  return `${flag} is followed by a value that starts with "-" (a negative number?); values must be above zero, or write ${flag}=VALUE`
}
