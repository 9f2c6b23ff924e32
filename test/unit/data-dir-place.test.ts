// A data dir on a kernel file system (/proc, /sys) is refused at once: Node's recursive
// mkdir loops forever there (`vgrid init --data-dir /proc/nope` spun at 100 % CPU with
// no output). One that is a file says so, not "EEXIST: file already exists, mkdir".
import test from 'ava'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dataDirPlaceProblem, secureDataDir, type PlaceFs } from '../../node/data-dir.ts'
import { resolveConfig } from '../../node/config.ts'

function root (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-place-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

test('dataDirPlaceProblem: under /proc or /sys is refused, naming the file system', t => {
  t.regex(dataDirPlaceProblem('/proc/nope') ?? '', /^data dir \/proc\/nope is under \/proc, the kernel's proc file system, which cannot hold data: give a directory on a disk/)
  t.regex(dataDirPlaceProblem('/proc/nope/x') ?? '', /under \/proc/)
  t.regex(dataDirPlaceProblem('/proc') ?? '', /under \/proc/)
  t.regex(dataDirPlaceProblem('/sys/x') ?? '', /under \/sys, the kernel's sysfs/)
  t.regex(dataDirPlaceProblem('/proc/../proc/x') ?? '', /under \/proc/, 'the path is resolved first')
  t.is(dataDirPlaceProblem('/processes/x'), null, 'a name that only starts alike is not /proc')
})

test('dataDirPlaceProblem: the nearest existing ancestor on proc or sysfs (a proc mounted elsewhere) is refused', t => {
  const fs = (existing: string, type: number): PlaceFs => ({
    statSync: p => {
      if (p === existing || p === '/') return { isDirectory: () => true }
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
    },
    statfsSync: p => ({ type: p === existing ? type : 0xef53 })
  })
  t.regex(dataDirPlaceProblem('/mnt/p/nope/x', fs('/mnt/p', 0x9fa0)) ?? '', /^data dir \/mnt\/p\/nope\/x would be on \/mnt\/p, a proc file system/)
  t.regex(dataDirPlaceProblem('/mnt/s/x', fs('/mnt/s', 0x62656572)) ?? '', /a sysfs file system/)
  t.is(dataDirPlaceProblem('/mnt/d/x', fs('/mnt/d', 0xef53)), null, 'ext4 is fine')
})

test('dataDirPlaceProblem: a file where the dir (or one of its parents) goes is said as such; a new or existing directory is fine', t => {
  const base = root(t)
  const file = join(base, 'file')
  writeFileSync(file, '')
  t.is(dataDirPlaceProblem(file), `data dir ${file} exists and is not a directory: give a directory (or a path where one can be made)`)
  t.is(dataDirPlaceProblem(join(file, 'x', 'y')), `data dir ${join(file, 'x', 'y')} cannot be made: ${file} exists and is not a directory`)
  t.is(dataDirPlaceProblem(base), null)
  t.is(dataDirPlaceProblem(join(base, 'new', 'deeper')), null)
  mkdirSync(join(base, 'd'))
  t.is(dataDirPlaceProblem(join(base, 'd')), null)
})

test('the agent\'s config and secureDataDir refuse such a data dir before anything is made', async t => {
  await t.throwsAsync(resolveConfig({ dataDir: '/proc/nope/x' }), { message: /^--data-dir: data dir \/proc\/nope\/x is under \/proc/ })
  await t.throwsAsync(secureDataDir('/sys/nope', { info: () => {}, warn: () => {} }), { message: /under \/sys/ })
})

async function runCli (args: string[]): Promise<{ code: number | null, stderr: string }> {
  const main = join(import.meta.dirname, '../../node/cli/main.ts')
  const c = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', main, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  c.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // it hung for ever: killed after a while, it fails the test instead of hanging it
  const timer = setTimeout(() => c.kill('SIGKILL'), 20_000)
  const code = await new Promise<number | null>(resolve => c.once('exit', resolve))
  clearTimeout(timer)
  return { code, stderr }
}

test('vgrid init and vgrid agent refuse a data dir under /proc at once, and init names a file given as the data dir', async t => {
  const init = await runCli(['init', '--data-dir', '/proc/nope'])
  t.is(init.code, 2)
  t.regex(init.stderr, /^vgrid: data dir \/proc\/nope is under \/proc/)
  const agent = await runCli(['agent', '--data-dir', '/proc/nope/x', '--api-socket', 'none'])
  t.is(agent.code, 2)
  t.regex(agent.stderr, /^vgrid: --data-dir: data dir \/proc\/nope\/x is under \/proc/)
  const file = join(root(t), 'passwd')
  writeFileSync(file, 'x')
  const onFile = await runCli(['init', '--data-dir', file])
  t.is(onFile.code, 2)
  t.is(onFile.stderr, `vgrid: data dir ${file} exists and is not a directory: give a directory (or a path where one can be made)\n`)
})

test('dataDirPlaceProblem: an empty data dir is refused (to the agent it was the working directory, to vgrid init nothing to make: bb35)', t => {
  t.is(dataDirPlaceProblem(''), 'data dir is empty: give a directory on a disk (e.g. /var/lib/vgrid)')
  t.is(dataDirPlaceProblem('  '), 'data dir is empty: give a directory on a disk (e.g. /var/lib/vgrid)')
})
