// The QEMU sandbox probe: sandboxed only when /proc shows a seccomp filter on the QEMU
// still running (rv48: one slow to fail counted), and its verdict cached, so an agent's
// restart does not run an empty QEMU for 1.5 s again. Stand-in QEMUs (shell scripts,
// each run counted in a file) for the verdicts a script can give, the real QEMU for a
// filter installed.
import test from 'ava'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { which } from '../../node/netns/netns.ts'
import { probeSandbox, sandboxVerdict, seccompFiltered } from '../../node/dvmm/host/sandbox-probe.ts'

function tmp (t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-sandbox-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

function standIn (t: { teardown: (f: () => void) => void }, body: string): { qemu: string, cache: string, runs: () => number } {
  const dir = tmp(t)
  const qemu = join(dir, 'qemu-system-x86_64')
  const count = join(dir, 'runs')
  // `exec`: the probe's SIGKILL then ends the stand-in itself, not only its shell
  writeFileSync(qemu, `#!/bin/sh\necho run >> ${count}\n${body}\n`)
  chmodSync(qemu, 0o755)
  return { qemu, cache: join(dir, 'dvmm', 'qemu-sandbox.json'), runs: () => existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0 }
}

const NO_SECCOMP = "echo \"qemu-system-x86_64: -sandbox on: There is no option group 'sandbox'\" >&2; exit 1"

test('the verdict of one run (pure): a filter seen is sandboxed; running without one is no verdict; an exit is one only when it speaks of seccomp', t => {
  t.deepEqual(sandboxVerdict({ filtered: true, stderr: '' }), { sandbox: true, verdict: true })
  t.deepEqual(sandboxVerdict({ filtered: false, stderr: '' }), { sandbox: false, verdict: false })
  t.deepEqual(sandboxVerdict({ filtered: undefined, stderr: "qemu-system-x86_64: -sandbox on: There is no option group 'sandbox'" }), { sandbox: false, verdict: true })
  t.deepEqual(sandboxVerdict({ filtered: undefined, stderr: 'qemu-system-x86_64: failed to install seccomp syscall filter in the kernel' }), { sandbox: false, verdict: true })
  t.deepEqual(sandboxVerdict({ filtered: undefined, stderr: 'qemu: could not load PC BIOS' }), { sandbox: false, verdict: false })
  t.true(seccompFiltered('Name:\tqemu\nSeccomp:\t2\nSeccomp_filters:\t1\n'))
  t.false(seccompFiltered('Name:\tsleep\nSeccomp:\t0\n'))
  t.is(seccompFiltered('Name:\tx\n'), undefined)
  // an agent itself under a filter: its children inherit it; only one more of their own counts (rv49)
  const own = 'Name:\tnode\nSeccomp:\t2\nSeccomp_filters:\t1\n'
  t.false(seccompFiltered('Name:\tqemu\nSeccomp:\t2\nSeccomp_filters:\t1\n', own))
  t.true(seccompFiltered('Name:\tqemu\nSeccomp:\t2\nSeccomp_filters:\t2\n', own))
})

test('a QEMU still running without a seccomp filter on it is not sandboxed, and is asked again (rv48)', async t => {
  const s = standIn(t, 'exec sleep 30')
  t.false(await probeSandbox(s.qemu, s.cache, 1000))
  t.false(existsSync(s.cache))
  t.false(await probeSandbox(s.qemu, s.cache, 1000))
  t.is(s.runs(), 2)
})

test('a QEMU without seccomp is a verdict, kept until the binary changes; a QEMU that fails otherwise is asked again', async t => {
  const none = standIn(t, NO_SECCOMP)
  t.false(await probeSandbox(none.qemu, none.cache))
  t.false(await probeSandbox(none.qemu, none.cache))
  t.is(none.runs(), 1)
  // an upgraded QEMU (another mtime) is probed again
  utimesSync(none.qemu, new Date(), new Date(Date.now() + 5000))
  t.false(await probeSandbox(none.qemu, none.cache))
  t.is(none.runs(), 2)
  const broken = standIn(t, "echo \"qemu: could not load PC BIOS 'bios-256k.bin'\" >&2; exit 1")
  t.false(await probeSandbox(broken.qemu, broken.cache))
  t.false(existsSync(broken.cache))
  t.false(await probeSandbox(broken.qemu, broken.cache))
  t.is(broken.runs(), 2)
})

test('a damaged cache file is probed over, and a missing binary is not sandboxed', async t => {
  const s = standIn(t, NO_SECCOMP)
  t.false(await probeSandbox(s.qemu, s.cache))
  writeFileSync(s.cache, '{"sandbox": "yes"')
  t.false(await probeSandbox(s.qemu, s.cache))
  t.is(s.runs(), 2)
  t.false(await probeSandbox(join(tmpdir(), 'vgt-no-such-qemu'), s.cache))
})

const qemu = which('qemu-system-x86_64')
const withQemu = qemu == null ? test.skip : test
if (qemu == null) console.log('test/unit/dvmm-sandbox-probe.test.ts: no qemu-system-x86_64: the real QEMU\'s filter is not checked')

withQemu('the real QEMU under -sandbox: its filter seen, the verdict cached, a restart asks nothing', async t => {
  const cache = join(tmp(t), 'dvmm', 'qemu-sandbox.json')
  const first = await probeSandbox(qemu!, cache)
  // Debian's QEMU is built with seccomp, and these kernels take filters
  t.true(first)
  t.deepEqual(JSON.parse(readFileSync(cache, 'utf8')).sandbox, true)
  const t0 = Date.now()
  t.true(await probeSandbox(qemu!, cache))
  t.true(Date.now() - t0 < 1000, 'the cached answer needs no run of 1.5 s')
})
