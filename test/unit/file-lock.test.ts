// A lock held by flock(1) for the life of the process (node/file-lock.ts): the data
// dir's and the namespace overlay's, in directories only root may enter (bb48: the
// abstract unix sockets used before could be bound by any local user first).
import test from 'ava'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { takeFileLock } from '../../node/file-lock.ts'

test('one holder at a time; released, or its process gone however it ended, another takes it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-flock-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'agent.lock')
  const first = await takeFileLock(file)
  t.truthy(first)
  t.is(await takeFileLock(file), null, 'held')
  // a release resolves once the lock is let go: taken again at once (rv48: told it was held)
  await first!.release()
  const second = await takeFileLock(file)
  t.truthy(second, 'taken at once after the release')
  await second!.release()
  // held by another process that is then killed with SIGKILL: freed by the kernel
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `const { takeFileLock } = await import(${JSON.stringify(new URL('../../node/file-lock.ts', import.meta.url).href)}); const l = await takeFileLock(${JSON.stringify(file)}); console.log(l == null ? 'no' : 'held'); setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { holder.kill('SIGKILL') })
  t.is((await new Promise<Buffer>(resolve => holder.stdout.once('data', resolve))).toString().trim(), 'held')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.is(await takeFileLock(file), null, 'held by the other process')
  holder.kill('SIGKILL')
  let third = null
  for (let i = 0; i < 100 && third == null; i++) { third = await takeFileLock(file); if (third == null) await new Promise(resolve => setTimeout(resolve, 20)) }
  t.truthy(third, 'freed when its holder was killed')
  await third!.release()
})

test('a lock whose holder is killed while it is wanted says so (rv48: it went without a word); a release says nothing', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-flock-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'agent.lock')
  const lost: string[] = []
  const lock = await takeFileLock(file, why => { lost.push(why) })
  t.truthy(lock?.pid)
  process.kill(lock!.pid!, 'SIGKILL')
  for (let i = 0; i < 100 && lost.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.is(lost.length, 1)
  t.regex(lost[0]!, /its holder \(flock, pid \d+\) ended by SIGKILL/)
  await lock!.release()
  const quiet: string[] = []
  const again = await takeFileLock(file, why => { quiet.push(why) })
  t.truthy(again, 'free again')
  await again!.release()
  t.deepEqual(quiet, [])
})

test('the overlay lock released and taken again at once in one process (an overlay stopped and started)', async t => {
  const { takeOverlayNamespace } = await import('../../node/lcm/namespace-lock.ts')
  const first = await takeOverlayNamespace().catch(() => null)
  if (first == null) { t.pass('this namespace\'s overlay lock is another process\'s (an agent running here)'); return }
  first()
  const second = await takeOverlayNamespace()
  t.is(typeof second, 'function')
  second()
})

test('the overlay lock of this namespace is a file in a directory only root may enter', async t => {
  const { takeOverlayNamespace, OVERLAY_LOCK_DIR } = await import('../../node/lcm/namespace-lock.ts')
  const { statSync, readdirSync } = await import('node:fs')
  // this test's own namespace may hold an agent's lock: only looked at, taken when free
  const release = await takeOverlayNamespace().catch(() => null)
  t.teardown(() => { release?.() })
  t.is(statSync(OVERLAY_LOCK_DIR).mode & 0o777, 0o700)
  t.is(statSync(OVERLAY_LOCK_DIR).uid, 0)
  t.true(readdirSync(OVERLAY_LOCK_DIR).includes(`overlay-${statSync('/proc/self/ns/net').ino}.lock`))
})

test('an agent of an earlier release holding its abstract overlay lock (root\'s) keeps a new one off the namespace; a user\'s socket of that name does not (rv48)', async t => {
  const { unixListenerInodes } = await import('../../node/lcm/namespace-lock.ts')
  const text = 'Num       RefCount Protocol Flags    Type St Inode Path\n' +
    '0000000000000000: 00000002 00000000 00010000 0001 01 4242 @vgrid-overlay\n' +
    '0000000000000000: 00000002 00000000 00000000 0001 03 4243 @vgrid-overlay\n' +
    '0000000000000000: 00000002 00000000 00010000 0001 01 4244 @vgrid-overlay-other\n'
  t.deepEqual(unixListenerInodes(text, '@vgrid-overlay'), [4242], 'listening, that name exactly')
  // in a network namespace of its own (abstract names and the lock are per namespace)
  const mod = new URL('../../node/lcm/namespace-lock.ts', import.meta.url).href
  const script = (asUser: boolean): string => `
    const { spawn } = await import('node:child_process')
    const bind = "require('net').createServer().listen('\\\\0vgrid-overlay', () => console.log('up')); setInterval(() => {}, 1000)"
    const holder = spawn(${asUser ? "'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', bind]" : "process.execPath, ['-e', bind]"}, { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise(resolve => holder.stdout.once('data', resolve))
    const { takeOverlayNamespace } = await import(${JSON.stringify(mod)})
    try { const release = await takeOverlayNamespace(); console.log('taken'); release() } catch (e) { console.log(e.message) }
    holder.kill('SIGKILL')
    // this namespace's lock file goes with it
    const { rmSync, statSync } = await import('node:fs')
    setTimeout(() => { rmSync('/run/vgrid/locks/overlay-' + statSync('/proc/self/ns/net').ino + '.lock', { force: true }); process.exit(0) }, 300)`
  const run = async (asUser: boolean): Promise<string> => await new Promise((resolve, reject) => {
    const p = spawn('unshare', ['--net', process.execPath, '--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script(asUser)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d: Buffer) => { out += d.toString() })
    p.once('error', reject)
    p.once('exit', () => { resolve(out.trim()) })
  })
  t.regex(await run(false), /^another vgrid agent, of an earlier release \(pid \d+\), runs the overlay in this network namespace/)
  t.is(await run(true), 'taken', 'a user\'s socket of that name keeps no agent out (bb48)')
})
