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
