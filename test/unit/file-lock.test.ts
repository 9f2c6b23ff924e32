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
  first!.release()
  // flock lets go once its cat has read the end of the pipe
  let second = null
  for (let i = 0; i < 50 && second == null; i++) { second = await takeFileLock(file); if (second == null) await new Promise(resolve => setTimeout(resolve, 20)) }
  t.truthy(second, 'taken once released')
  second!.release()
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
  third!.release()
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
