// The VM host probe runs again while it failed or found a driver missing, so a node
// where qemu is installed after the agent started begins taking qemu VMs: NodeRuntime
// with a probe the test answers call by call (the real drivers, never started), the
// pure decision, and the accelerator cache keeping no answer from a QEMU that did not run.
import test from 'ava'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeRuntime } from '../../node/dvmm/node-runtime.ts'
import { probeAccel } from '../../node/dvmm/host/accel.ts'
import { afterProbe, probeChanged, type HostProbe } from '../../node/dvmm/host/probe.ts'
import { silentLogger } from '../../node/log.ts'
import { systemClock } from '../../node/service.ts'

const NO_QEMU: HostProbe = {
  cgroup: { version: 'v2', detail: 'cgroup v2 at /sys/fs/cgroup has cpu and memory' },
  qemu: { available: false, detail: 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)' },
  drivers: ['process']
}
const WITH_QEMU: HostProbe = { ...NO_QEMU, qemu: { available: true, accel: 'tcg', detail: 'TCG: /dev/kvm does not open' }, drivers: ['process', 'qemu'] }

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no ${what} within ${ms} ms`)) }, ms) })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}

/** A probe the test answers: each call waits until the test settles it. */
class ScriptedProbe {
  readonly calls: Array<{ resolve: (p: HostProbe) => void, reject: (e: Error) => void }> = []
  private waiting?: () => void
  readonly fn = async (): Promise<HostProbe> => await new Promise<HostProbe>((resolve, reject) => {
    this.calls.push({ resolve, reject })
    this.waiting?.()
  })

  /** the n-th call (1-based), once it was made */
  async call (n: number): Promise<ScriptedProbe['calls'][number]> {
    while (this.calls.length < n) await within(new Promise<void>(resolve => { this.waiting = resolve }), 5000, `probe call ${n}`)
    return this.calls[n - 1]!
  }
}

function setup (t: import('ava').ExecutionContext, reprobeMs: number): { runtime: NodeRuntime, probe: ScriptedProbe, reported: HostProbe[], next: () => Promise<HostProbe> } {
  const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-reprobe-'))
  const probe = new ScriptedProbe()
  const reported: HostProbe[] = []
  let waiting: (() => void) | undefined
  const runtime = new NodeRuntime({
    log: silentLogger,
    clock: systemClock,
    config: { dataDir },
    probeHost: probe.fn,
    onProbe: p => { reported.push(p); waiting?.() }
  }, { watchdogTimeoutMs: 1000, reprobeMs })
  t.teardown(async () => {
    await runtime.stop({ graceful: false })
    rmSync(dataDir, { recursive: true, force: true })
  })
  let seen = 0
  const next = async (): Promise<HostProbe> => {
    while (reported.length <= seen) await within(new Promise<void>(resolve => { waiting = resolve }), 5000, `report ${seen + 1}`)
    return reported[seen++]!
  }
  return { runtime, probe, reported, next }
}

test('a failed probe, then one without qemu, then one with it: reported once each change, then no more probes', async t => {
  const { runtime, probe, reported, next } = setup(t, 5)
  await runtime.start()
  ;(await probe.call(1)).reject(new Error('cannot read /proc/self/mountinfo'))
  ;(await probe.call(2)).resolve(NO_QEMU)
  t.deepEqual((await next()).drivers, ['process'])
  // the same again: probed, not reported (the advert stays as it is)
  ;(await probe.call(3)).resolve({ ...NO_QEMU, cgroup: { ...NO_QEMU.cgroup, detail: 'said differently' } })
  // `apt-get install qemu-system-x86`: the next probe finds it
  ;(await probe.call(4)).resolve(WITH_QEMU)
  const p = await next()
  t.deepEqual(p.drivers, ['process', 'qemu'])
  t.is(p.qemu.accel, 'tcg')
  t.is(runtime.probe, p)
  t.is(reported.length, 2)
  // every driver found: no further probe (many retry intervals later)
  await sleep(200)
  t.is(probe.calls.length, 4)
})

test('a node whose probe finds no driver says so in its health, until a probe finds one', async t => {
  const { runtime, probe, next } = setup(t, 5)
  await runtime.start()
  t.deepEqual(runtime.problems(), [], 'nothing said before the first probe')
  ;(await probe.call(1)).resolve({ cgroup: { version: 'none', detail: 'no cpu and memory controllers mounted' }, qemu: NO_QEMU.qemu, drivers: [] })
  await next()
  const p = runtime.problems().find(x => x.cause === 'no-vm-driver')
  t.regex(p?.message ?? '', /^this node can run no VM \(no process or qemu driver\): no usable cgroups \(no cpu and memory controllers mounted\); qemu-system-x86_64 not found/)
  // every driver left out for its run directory: that is said first (bb42: "see the host probe in the log")
  ;(await probe.call(2)).resolve({ ...WITH_QEMU, drivers: [], runDirs: '/d/dvmm/run/process cannot be made (ENOTDIR: not a directory): move what is in the way' })
  await next()
  t.regex(runtime.problems().find(x => x.cause === 'no-vm-driver')?.message ?? '', /^this node can run no VM \(no process or qemu driver\): \/d\/dvmm\/run\/process cannot be made \(ENOTDIR: not a directory\): move what is in the way$/)
  ;(await probe.call(3)).resolve(NO_QEMU)
  await next()
  t.is(runtime.problems().find(x => x.cause === 'no-vm-driver'), undefined)
})

test('a probe in flight at stop reports nothing, and none follows', async t => {
  const { runtime, probe, reported, next } = setup(t, 5)
  await runtime.start()
  ;(await probe.call(1)).resolve(NO_QEMU)
  await next()
  const inFlight = await probe.call(2)
  await runtime.stop({ graceful: true })
  inFlight.resolve(WITH_QEMU)
  await sleep(200)
  t.is(reported.length, 1)
  t.is(probe.calls.length, 2)
  t.is(runtime.probe, reported[0])
})

test('stop clears the timer of the next probe', async t => {
  const { runtime, probe } = setup(t, 100)
  await runtime.start()
  ;(await probe.call(1)).reject(new Error('boom'))
  await sleep(10) // the failure is handled: the next probe is due in 100 ms
  await runtime.stop({ graceful: true })
  await sleep(300)
  t.is(probe.calls.length, 1)
})

test('afterProbe: again while failed or a driver is missing; reported only when the advert part changed', t => {
  t.deepEqual(afterProbe(undefined, undefined, 60_000), { report: false, againInMs: 60_000 })
  t.deepEqual(afterProbe(WITH_QEMU, undefined, 60_000), { report: false, againInMs: 60_000 })
  t.deepEqual(afterProbe(undefined, NO_QEMU, 60_000), { report: true, againInMs: 60_000 })
  t.deepEqual(afterProbe(NO_QEMU, { ...NO_QEMU, qemu: { ...NO_QEMU.qemu, detail: 'other words' } }, 60_000), { report: false, againInMs: 60_000 })
  t.deepEqual(afterProbe(NO_QEMU, WITH_QEMU, 60_000), { report: true })
  t.deepEqual(afterProbe(WITH_QEMU, { ...WITH_QEMU, drivers: ['qemu', 'process'] }, 60_000), { report: false })
  t.true(probeChanged(WITH_QEMU, { ...WITH_QEMU, qemu: { ...WITH_QEMU.qemu, accel: 'kvm' } }))
  t.true(probeChanged(WITH_QEMU, { ...WITH_QEMU, cgroup: { version: 'v1', detail: '' } }))
  t.true(probeChanged(NO_QEMU, { ...NO_QEMU, drivers: [] }))
})

test('the accelerator cache keeps no answer from a QEMU that did not run (a half-installed package)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-accel-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const qemu = join(dir, 'qemu-system-x86_64')
  writeFileSync(qemu, '#!/bin/sh\necho "qemu: could not load PC BIOS \'bios-256k.bin\'" >&2\nexit 1\n')
  chmodSync(qemu, 0o755)
  const kernel = join(dir, 'vmlinuz')
  writeFileSync(kernel, 'not a kernel')
  const cacheFile = join(dir, 'dvmm', 'qemu-accel.json')
  const a = await probeAccel({ qemu, kernel, cacheFile, now: 1, timeoutMs: 5000 })
  t.is(a.accel, 'tcg')
  // either /dev/kvm does not open here or QEMU exited: neither is a verdict on KVM
  t.regex(a.detail, /\/dev\/kvm does not open|QEMU with KVM exited/)
  t.false(existsSync(cacheFile))
})

test('a driver asks its probe again after a failed one: qemu installed after the agent started is used', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgt-reprobe-'))
  const bin = join(dir, 'qemu-system-x86_64')
  const { QemuDriver } = await import('../../node/dvmm/drivers/qemu.ts')
  const d = new QemuDriver({ log: silentLogger, clock: systemClock }, { dataDir: dir, qemu: bin, accel: 'tcg', nodeNetns: 'vgt-none' })
  t.teardown(async () => { await d.close(); rmSync(dir, { recursive: true, force: true }) })
  const first = await d.probe()
  t.false(first.ok)
  t.regex(first.detail, /not found/)
  writeFileSync(bin, '#!/bin/sh\n')
  chmodSync(bin, 0o755)
  const second = await d.probe()
  t.true(second.ok, second.detail)
  t.is(second.accel, 'tcg')
})
