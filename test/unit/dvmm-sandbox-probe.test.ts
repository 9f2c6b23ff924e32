// The QEMU sandbox probe's verdict is cached, so an agent's restart does not run an
// empty QEMU for 1.5 s again: stand-in QEMUs (shell scripts) that keep running, say they
// have no seccomp, or fail otherwise; each run counted in a file.
import test from 'ava'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { probeSandbox, sandboxVerdict } from '../../node/dvmm/host/sandbox-probe.ts'

function standIn (t: { teardown: (f: () => void) => void }, body: string): { qemu: string, cache: string, runs: () => number } {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-sandbox-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const qemu = join(dir, 'qemu-system-x86_64')
  const count = join(dir, 'runs')
  // `exec`: the probe's SIGKILL then ends the stand-in itself, not only its shell
  writeFileSync(qemu, `#!/bin/sh\necho run >> ${count}\n${body}\n`)
  chmodSync(qemu, 0o755)
  return { qemu, cache: join(dir, 'dvmm', 'qemu-sandbox.json'), runs: () => existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0 }
}

test('the verdict of one run (pure): still running is sandboxed; an exit is a verdict only when it speaks of seccomp', t => {
  t.deepEqual(sandboxVerdict({ killed: true, stderr: '' }), { sandbox: true, verdict: true })
  t.deepEqual(sandboxVerdict({ killed: false, stderr: "qemu-system-x86_64: -sandbox on: There is no option group 'sandbox'" }), { sandbox: false, verdict: true })
  t.deepEqual(sandboxVerdict({ killed: false, stderr: 'qemu-system-x86_64: failed to install seccomp syscall filter in the kernel' }), { sandbox: false, verdict: true })
  t.deepEqual(sandboxVerdict({ killed: false, stderr: 'qemu: could not load PC BIOS' }), { sandbox: false, verdict: false })
})

test('a QEMU that runs under the filter is asked once; a new binary is asked again', async t => {
  const s = standIn(t, 'exec sleep 30')
  t.true(await probeSandbox(s.qemu, s.cache))
  t.true(existsSync(s.cache))
  const t0 = Date.now()
  t.true(await probeSandbox(s.qemu, s.cache))
  t.is(s.runs(), 1)
  t.true(Date.now() - t0 < 1000, 'the cached answer needs no run of 1.5 s')
  // an upgraded QEMU (another mtime) is probed again
  utimesSync(s.qemu, new Date(), new Date(Date.now() + 5000))
  t.true(await probeSandbox(s.qemu, s.cache))
  t.is(s.runs(), 2)
})

test('a QEMU without seccomp is a verdict too; a QEMU that fails otherwise is asked again next time', async t => {
  const none = standIn(t, "echo \"qemu-system-x86_64: -sandbox on: There is no option group 'sandbox'\" >&2; exit 1")
  t.false(await probeSandbox(none.qemu, none.cache))
  t.false(await probeSandbox(none.qemu, none.cache))
  t.is(none.runs(), 1)
  const broken = standIn(t, "echo \"qemu: could not load PC BIOS 'bios-256k.bin'\" >&2; exit 1")
  t.false(await probeSandbox(broken.qemu, broken.cache))
  t.false(existsSync(broken.cache))
  t.false(await probeSandbox(broken.qemu, broken.cache))
  t.is(broken.runs(), 2)
})

test('a damaged cache file is probed over, and a missing binary is not sandboxed', async t => {
  const s = standIn(t, 'exec sleep 30')
  t.true(await probeSandbox(s.qemu, s.cache))
  writeFileSync(s.cache, '{"sandbox": "yes"')
  t.true(await probeSandbox(s.qemu, s.cache))
  t.is(s.runs(), 2)
  t.false(await probeSandbox(join(tmpdir(), 'vgt-no-such-qemu'), s.cache))
})
