// Flag parsing for every subcommand: node:util parseArgs in strict mode, with its
// errors turned into one-line CLI errors (exit code 2: usage).
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { CliError } from './client.ts'

export type Options = NonNullable<ParseArgsConfig['options']>

export const API_OPTION: Options = { api: { type: 'string' } }
export const JSON_OPTION: Options = { json: { type: 'boolean' } }

export function parse<O extends Options> (argv: string[], options: O, usage: string, positionals = 0): { values: ReturnType<typeof parseArgs<{ options: O, allowPositionals: true }>>['values'], positionals: string[] } {
  let out
  try {
    out = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (err) {
    const e = err as { code?: string, message: string }
    const flag = /'(-[^']*)'/.exec(e.message)?.[1]
    // a value that starts with a dash (--cpu -1) is taken for a flag: say what it is
    const negative = e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag != null && /is ambiguous/.test(e.message)
    const what = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag != null
      ? `unknown flag ${flag}`
      : negative ? `${flag!} is followed by a value that starts with "-" (a negative number?); values must be above zero, or write ${flag!}=VALUE` : e.message.split('\n')[0]
    throw new CliError(`${what} (usage: ${usage})`, 2)
  }
  if ((out.values as { help?: boolean }).help === true) {
    process.stdout.write(`usage: ${usage}\n`)
    process.exit(0)
  }
  if (out.positionals.length > positionals) {
    throw new CliError(`unexpected argument "${out.positionals[positionals]}" (usage: ${usage})`, 2)
  }
  return { values: out.values as never, positionals: out.positionals }
}
