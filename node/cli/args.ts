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
    const e = err as { code?: string, message: string }
    const flag = /'(-[^']*)'/.exec(e.message)?.[1]
    // a value that starts with a dash (--cpu -1) is taken for a flag: say what it is
    const ambiguous = e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag != null && /is ambiguous/.test(e.message)
    // what follows it: a flag (its value left out: --cpu --memory 1M), or a negative number
    const next = ambiguous ? argv[argv.indexOf(flag) + 1] : undefined
    const missing = next != null && !/^-[0-9.]/.test(next)
    const what = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag != null
      ? `unknown flag ${flag}`
      : ambiguous && missing
        ? `${flag!} needs a value: it is followed by the flag ${next!}`
        : ambiguous
          ? `${flag!} is followed by a value that starts with "-" (a negative number?); values must be above zero, or write ${flag!}=VALUE`
          : flag != null && / <value>$/.test(flag) && /argument missing/.test(e.message) ? `${flag.replace(/ <value>$/, '')} needs a value` : e.message.split('\n')[0] ?? e.message
    throw new CliError(withUsage(what), 2)
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
