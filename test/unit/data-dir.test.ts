// The data dir is kept 0700 (node/data-dir.ts): one the operator made with mkdir
// (0755) would let any local user read the volumes' objects.
import test from 'ava'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { holdsSockets, openToAdmins, secureDataDir } from '../../node/data-dir.ts'
import { lockDataDir, lockFile } from '../../node/data-dir-lock.ts'
import { createLogger } from '../../node/log.ts'

const modeOf = (f: string): number => statSync(f).mode & 0o7777

function root (t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-datadir-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function logLines (): { log: ReturnType<typeof createLogger>, lines: string[] } {
  const lines: string[] = []
  return { log: createLogger({ write: l => lines.push(l) }), lines }
}

test('a data dir the operator made 0755 is made 0700, with a warning naming it and its old mode', async t => {
  const dir = join(root(t), 'data')
  mkdirSync(dir)
  chmodSync(dir, 0o755)
  const { log, lines } = logLines()
  await secureDataDir(dir, log)
  t.is(modeOf(dir), 0o700)
  t.is(lines.length, 1)
  t.true(lines[0]!.includes('WARN') && lines[0]!.includes('mode 755') && lines[0]!.includes(dir), lines[0])
})

test('any group or others bit counts; a 0700 dir is left alone, and a new one is made 0700, silently', async t => {
  const base = root(t)
  for (const mode of [0o710, 0o701, 0o740, 0o770]) {
    const dir = join(base, mode.toString(8))
    mkdirSync(dir)
    chmodSync(dir, mode)
    const { log, lines } = logLines()
    await secureDataDir(dir, log)
    t.is(modeOf(dir), 0o700, mode.toString(8))
    t.is(lines.length, 1)
  }
  const { log, lines } = logLines()
  const fresh = join(base, 'new', 'data')
  await secureDataDir(fresh, log)
  t.is(modeOf(fresh), 0o700)
  await secureDataDir(fresh, log)
  t.deepEqual(lines, [])
})

test('a data dir that cannot be made 0700, or is not a directory, stops the agent with an error naming it', async t => {
  const base = root(t)
  const dir = join(base, 'data')
  mkdirSync(dir)
  chmodSync(dir, 0o755)
  const { log, lines } = logLines()
  const eperm = async (): Promise<void> => { throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' }) }
  await t.throwsAsync(secureDataDir(dir, log, { chmod: eperm }), {
    message: `data dir ${dir} is open to other users (mode 755) and cannot be made 0700: EPERM. Make it 0700 (chmod 700 ${dir}) or use another --data-dir`
  })
  t.is(modeOf(dir), 0o755)
  t.deepEqual(lines, [])
  const file = join(base, 'file')
  writeFileSync(file, '')
  await t.throwsAsync(secureDataDir(file, log), { message: `data dir ${file} exists and is not a directory: give a directory (or a path where one can be made)` })
})

test('a shared directory given as the data dir (--data-dir /var/lib) is refused, naming what it holds, and its mode is left alone; one holding an earlier run\'s identity or document, or only lost+found, is vgrid\'s', async t => {
  const base = root(t)
  const shared = join(base, 'lib')
  mkdirSync(join(shared, 'postgresql'), { recursive: true })
  writeFileSync(join(shared, 'apt.list'), '')
  chmodSync(shared, 0o755)
  const { log, lines } = logLines()
  await t.throwsAsync(secureDataDir(shared, log), {
    message: `data dir ${shared} is open to other users and holds files that are not vgrid's (apt.list, postgresql): vgrid keeps its data dir 0700 and does not change the mode of a directory others use. Give it a directory of its own (e.g. ${shared}/vgrid)`
  })
  t.is(modeOf(shared), 0o755, 'the shared directory keeps its mode')
  // one file of vgrid's there proves nothing (a reviewer's: vgrid init --data-dir /var/lib wrote cluster.key)
  writeFileSync(join(shared, 'cluster.key'), 'k')
  await t.throwsAsync(secureDataDir(shared, log), { message: /holds files that are not vgrid's \(apt\.list, postgresql\)/ })
  t.is(modeOf(shared), 0o755)
  t.deepEqual(lines, [])
  for (const [name, entries] of [['restored', ['identity.key', 'peers.json']], ['older', ['state', 'gvs', 'gvs-pins.json', 'roll-seen.json', 'peers.json.tmp']], ['mounted', ['lost+found']]] as const) {
    const dir = join(base, name)
    for (const e of entries) mkdirSync(join(dir, e), { recursive: true })
    chmodSync(dir, 0o755)
    await secureDataDir(dir, log)
    t.is(modeOf(dir), 0o700, name)
  }
})

test('the data dir lock: a shared directory is refused before the lock file is written there; a lock file of another shape (null) names no agent and is replaced', async t => {
  const base = root(t)
  const shared = join(base, 'lib')
  mkdirSync(join(shared, 'postgresql'), { recursive: true })
  chmodSync(shared, 0o755)
  await t.throwsAsync(lockDataDir(shared), { message: /holds files that are not vgrid's \(postgresql\)/ })
  t.false(existsSync(lockFile(shared)), 'no agent.lock left in the shared directory')
  const dir = join(base, 'data')
  mkdirSync(dir, { mode: 0o700 })
  for (const junk of ['null', '7', '[]', '{"pid":"x"}']) {
    writeFileSync(lockFile(dir), junk)
    const lock = await lockDataDir(dir)
    t.is((JSON.parse(readFileSync(lockFile(dir), 'utf8')) as { pid: number }).pid, process.pid, junk)
    lock.release()
    await new Promise(resolve => setTimeout(resolve, 20))
  }
})

test('an empty data dir the operator made (0755) passes the lock and is made 0700 (bb18: refused for the agent.lock the lock had just written, and every retry again)', async t => {
  const dir = join(root(t), 'data')
  mkdirSync(dir)
  chmodSync(dir, 0o755)
  const lock = await lockDataDir(dir)
  t.teardown(() => { lock.release() })
  const { log, lines } = logLines()
  await secureDataDir(dir, log)
  t.is(modeOf(dir), 0o700)
  t.is(lines.length, 1, 'with the warning')
  // a shared one with a lock file of an earlier try still holds files not vgrid's
  const shared = join(root(t), 'lib')
  mkdirSync(join(shared, 'postgresql'), { recursive: true })
  writeFileSync(lockFile(shared), 'null')
  chmodSync(shared, 0o755)
  await t.throwsAsync(secureDataDir(shared, log), { message: /holds files that are not vgrid's \(postgresql\)/ })
})

test('a data dir that holds the sockets is 0710 of the vgrid group, for its members to reach them, and kept so; of another group it is made 0700 (bb48)', async t => {
  const dir = join(root(t), 'data')
  mkdirSync(dir, { mode: 0o700 })
  const { log, lines } = logLines()
  const GID = 65534
  // sockets elsewhere (the default data dir's are in /run/vgrid): left 0700
  await openToAdmins(dir, ['/run/vgrid/api.sock'], GID, log)
  t.is(modeOf(dir), 0o700)
  // no vgrid group on the machine: left 0700
  await openToAdmins(dir, [join(dir, 'api.sock')], null, log)
  t.is(modeOf(dir), 0o700)
  await openToAdmins(dir, [join(dir, 'api.sock')], GID, log)
  t.is(modeOf(dir), 0o710)
  t.is(statSync(dir).gid, GID)
  t.true(lines.some(l => l.includes('made 0710 of the vgrid group')))
  // kept at the next start; a group that is not vgrid's gets 0700 back
  await secureDataDir(dir, log, undefined, GID)
  t.is(modeOf(dir), 0o710)
  await secureDataDir(dir, log, undefined, GID + 1)
  t.is(modeOf(dir), 0o700)
})

test('a data dir left 0710 of the vgrid group once its sockets moved elsewhere is made 0700 again (bb48)', async t => {
  const dir = join(root(t), 'data')
  mkdirSync(dir, { mode: 0o700 })
  const { log, lines } = logLines()
  const GID = 65534
  await openToAdmins(dir, [join(dir, 'api.sock')], GID, log)
  t.is(modeOf(dir), 0o710)
  t.true(holdsSockets(dir, [join(dir, 'api.sock')]))
  // the next start's sockets are in /run/vgrid: the agent gives no group to keep
  t.false(holdsSockets(dir, ['/run/vgrid/api.sock', '/run/vgrid/nbd.sock']))
  await secureDataDir(dir, log, undefined, null)
  t.is(modeOf(dir), 0o700)
  t.true(lines.some(l => l.includes('no longer holds the API and NBD sockets: made 0700')))
})


test('an agent of an earlier release on the dir (its record in agent.lock, its lock not a flock) keeps a new one out', async t => {
  const { spawn } = await import('node:child_process')
  const { procStat, currentBootId } = await import('../../node/dvmm/drivers/common.ts')
  const dir = join(root(t), 'data')
  mkdirSync(dir, { mode: 0o700 })
  const old = spawn('sleep', ['30'])
  t.teardown(() => { old.kill('SIGKILL') })
  await new Promise(resolve => setTimeout(resolve, 100))
  writeFileSync(lockFile(dir), JSON.stringify({ pid: old.pid, startTicks: procStat(old.pid!)?.startTicks, bootId: currentBootId() }))
  await t.throwsAsync(lockDataDir(dir), { message: new RegExp(`in use by another vgrid agent \\(pid ${old.pid!}\\)`) })
  // gone: the dir is free, and the flock was let go
  old.kill('SIGKILL')
  await new Promise(resolve => old.once('exit', resolve))
  const lock = await lockDataDir(dir)
  lock.release()
  t.pass()
})
