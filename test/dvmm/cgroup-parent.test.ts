// The drivers' parent group (`vgrid` in each hierarchy) does not outlive the VMs in it:
// the host probe tests on a group of its own beside it, which it removes, and the
// last VM's removal takes the parent also when a process (on v1 the VM's guard and
// wrapper sit in the parent's cpu group) holds it a moment longer than the VM.
// Runs on test-only parents beside `vgrid`, so that other tests' VMs do not interfere.
import test from 'ava'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PARENT_SWEEP, PROBE_GROUP, probeCgroups, probeGroupDir, removeParentWhenFree } from '../../node/dvmm/host/cgroups.ts'

const probe = probeCgroups()
const layout = probe.layout
const root = layout == null ? null : layout.version === 'v2' ? layout.root : layout.cpu
const skip = root == null || process.getuid?.() !== 0 ? `no cgroups to make here: ${layout != null ? 'not root' : probe.detail}` : null
const testGroup = (what: string): string => join(root!, `vgrid-test-${what}-${process.pid}`)
const until = async (cond: () => boolean, ms: number): Promise<boolean> => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise(resolve => setTimeout(resolve, 50))) if (cond()) return true
  return cond()
}

test('the probe tests on a group of its own and removes it, also when the check fails', t => {
  if (skip != null) { t.pass(skip); return }
  // the probe this file ran at its start left nothing of its own
  t.false(existsSync(join(root!, PROBE_GROUP)))
  t.true(probeCgroups().ok)
  t.false(existsSync(join(root!, PROBE_GROUP)))
  const g = testGroup('probe')
  let seen = false
  probeGroupDir(g, p => { seen = existsSync(p) })
  t.true(seen, 'the check ran on the group')
  t.false(existsSync(g))
  t.throws(() => { probeGroupDir(g, () => { throw new Error('cannot delegate') }) }, { message: 'cannot delegate' })
  t.false(existsSync(g))
})

test('a parent held by a process when its last VM went is removed once the process leaves it', async t => {
  if (skip != null) { t.pass(skip); return }
  const g = testGroup('held')
  mkdirSync(g)
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' })
  t.teardown(() => {
    try { process.kill(sleeper.pid!, 'SIGKILL') } catch {}
    try { rmdirSync(g) } catch {}
  })
  await new Promise(resolve => sleeper.once('spawn', resolve))
  writeFileSync(join(g, 'cgroup.procs'), String(sleeper.pid))
  const saved = { ...PARENT_SWEEP }
  PARENT_SWEEP.everyMs = 100
  t.teardown(() => { Object.assign(PARENT_SWEEP, saved) })
  const t0 = Date.now()
  await removeParentWhenFree(g)
  t.true(Date.now() - t0 < 2000, 'the caller waits a moment only')
  t.true(existsSync(g), 'held by the process')
  process.kill(sleeper.pid!, 'SIGKILL')
  await new Promise(resolve => sleeper.once('exit', resolve))
  t.true(await until(() => !existsSync(g), 3000), 'removed in the background once the process left')
})

test('a parent another VM\'s group is in stays (that VM\'s removal takes it)', async t => {
  if (skip != null) { t.pass(skip); return }
  const g = testGroup('busy')
  mkdirSync(join(g, 'vm'), { recursive: true })
  t.teardown(() => {
    try { rmdirSync(join(g, 'vm')) } catch {}
    try { rmdirSync(g) } catch {}
  })
  const t0 = Date.now()
  await removeParentWhenFree(g)
  t.true(Date.now() - t0 < 100, 'not waited for')
  t.true(existsSync(join(g, 'vm')))
  rmdirSync(join(g, 'vm'))
  await removeParentWhenFree(g)
  t.false(existsSync(g))
})
