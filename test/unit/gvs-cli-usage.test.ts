// `vgrid vol SUB` errors show SUB's usage only (they printed all twenty lines of vol's
// usage for a bad flag), and long values they echo are clipped.
import test from 'ava'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { usageOf } from '../../node/gvs/cli.ts'

const main = join(import.meta.dirname, '../../node/cli/main.ts')

async function run (args: string[]): Promise<{ code: number | null, stderr: string }> {
  // an address nobody answers on: none of these errors gets as far as asking
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', main, ...args, '--api', '127.0.0.1:1'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  c.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  return { code, stderr }
}

test('usageOf: one subcommand\'s lines (with their continuations) and the closing note; all for none or an unknown one', t => {
  const create = usageOf('create')
  t.regex(create, /^usage: vgrid vol create PATH --size SIZE/)
  t.false(create.includes('vgrid vol ls'))
  t.is(usageOf('snapshot').split('\n').filter(l => l.includes('vgrid vol snapshot')).length, 3)
  t.regex(usageOf('import'), /no --format: FILE's name says it/)
  t.is(usageOf(undefined), usageOf('nosuch'))
  t.true(usageOf(undefined).includes('vgrid vol ls') && usageOf(undefined).includes('vgrid vol export'))
})

test('a bad flag or argument of a vol subcommand shows that subcommand\'s usage, not all of vol\'s', async t => {
  for (const args of [['vol', 'create', '/a', '--bogus'], ['vol', 'create', '/a', '--size'], ['vol', 'resize', '/a', '1G', 'extra', 'more', '--wat']]) {
    const r = await run(args)
    t.is(r.code, 2, args.join(' '))
    t.true(r.stderr.includes(`usage: vgrid vol ${args[1]!}`), r.stderr)
    t.true(r.stderr.split('\n').length <= 6, `${args.join(' ')}: ${r.stderr}`)
    t.false(r.stderr.includes('vgrid vol scrub'), r.stderr)
  }
  const extra = await run(['vol', 'rm', '/a', `/${'b'.repeat(3000)}`])
  t.is(extra.code, 2)
  t.regex(extra.stderr, /^vgrid: vgrid vol rm takes 1 argument, not 2: "\/b{63}\.\.\." \(3001 characters\) is more/)
  t.true(extra.stderr.length < 600, extra.stderr)
  // a command that takes none refuses one, not drops it (bb30: vol scrub extra went ahead)
  const scrub = await run(['vol', 'scrub', 'extra'])
  t.is(scrub.code, 2)
  t.regex(scrub.stderr, /^vgrid: vgrid vol scrub takes no argument: "extra" is more/)
})
