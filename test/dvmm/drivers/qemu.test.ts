// The qemu driver with a real guest from the guest builder: the compliance suite, then
// the guest's own ready line, HTTP from its node, a graceful stop through QMP, and the
// boot time under the probed accelerator. The taps live in a namespace this test makes.
import test from 'ava'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../../node/dvmm/drivers/qemu.ts'
import { probeCgroups } from '../../../node/dvmm/host/cgroups.ts'
import { buildGuestImage, type GuestImage } from '../../../node/dvmm/image/build.ts'
import { READY_MARK } from '../../../node/dvmm/image/init.ts'
import { checkSupport, createNamespace, deleteNamespaceSync, nsRun, which } from '../../../node/netns/netns.ts'
import { silentLogger } from '../../../node/log.ts'
import { driverCompliance, waitFor } from './compliance.ts'

const support = checkSupport()
const cg = support.ok ? probeCgroups() : undefined
const dataDir = mkdtempSync(join(tmpdir(), 'vgrid-qemu-'))
let image: GuestImage | undefined
let why: string | undefined = !support.ok ? support.reason : cg?.ok !== true ? `no usable cgroups: ${cg?.detail}` : which('qemu-system-x86_64') == null ? 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)' : which('curl') == null ? 'curl not installed' : undefined
if (why === undefined) {
  try { image = buildGuestImage(dataDir) } catch (err) { why = `cannot build a guest image: ${(err as Error).message}` }
}

const nodeNs = `vgtest-qn-${process.pid}`
let nsMade = false
test.before(async () => { if (why === undefined) await createNamespace(nodeNs, () => { nsMade = true }) })
test.after.always(() => {
  if (nsMade) deleteNamespaceSync(nodeNs)
  rmSync(dataDir, { recursive: true, force: true })
})

const create = async (): Promise<QemuDriver> => new QemuDriver({ log: silentLogger, clock: Date }, { dataDir, nodeNetns: nodeNs, pollMs: 100 })
const guest = (id: string, extra = '') => ({ id, vcpus: 1, memoryMiB: 128, boot: { kind: 'kernel' as const, kernel: image!.kernel, initrd: image!.initrd, cmdline: `${image!.cmdline} ${extra}`.trim() } })

driverCompliance(test, {
  name: 'qemu',
  skip: why,
  create,
  specs: {
    running: id => guest(id),
    exits: id => ({ spec: guest(id, 'vgrid.exit=1'), code: 0 }),
    ignoresStop: id => guest(id, 'vgrid.acpi=off'),
    badBoot: id => ({ spec: { ...guest(id), boot: { kind: 'kernel', kernel: '/no/such/vmlinux' } }, field: 'boot.kernel' })
  },
  readyLine: READY_MARK,
  readyTimeoutMs: 90_000
})

const maybe = why === undefined ? test.serial : test.serial.skip

maybe('qemu driver: the built guest boots, says it is ready, answers HTTP from its node, and stops gracefully through QMP', async t => {
  const d = await create()
  const id = `web-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  const p = await d.probe()
  t.log(`accelerator: ${p.accel} (${p.detail})`)
  const t0 = performance.now()
  const info = await d.start(guest(id))
  t.is(info.detail?.accel, p.accel)
  // under QEMU's seccomp filter where it has one (bb48: QEMU runs as root), the probe says when not
  const args = readFileSync(`/proc/${info.pid!}/cmdline`, 'utf8').split('\0')
  if (/no seccomp sandbox/.test(p.detail)) t.false(args.includes('-sandbox'))
  else t.is(args[args.indexOf('-sandbox') + 1], 'on,obsolete=deny,elevateprivileges=deny,spawn=deny')
  t.truthy(info.network?.hostIf)
  // a whole line: the serial console may be read in the middle of one
  const line = await waitFor('the ready line', async () => (await d.consoleTail(id)).split('\n').slice(0, -1).find(l => l.includes(READY_MARK)), 90_000, 20)
  const bootMs = performance.now() - t0
  t.log(`boot to ready line under ${p.accel}: ${bootMs.toFixed(0)} ms (vmlinux ${image!.compression}-extracted, PVH)`)
  t.true(line.includes(`ip=${info.network!.vmAddress}/30`), line)
  const page = await waitFor('the guest\'s page', async () => {
    const out = await nsRun(nodeNs, 'curl', ['-s', '-m', '3', `http://${info.network!.vmAddress}/`], { allowFail: true })
    return out.includes('vgrid guest') ? out : undefined
  }, 30_000, 300)
  t.is(page.trim(), `vgrid guest ${id} at ${info.network!.vmAddress}/30`)
  const stopped = await d.stop(id, 60_000)
  t.is(stopped.exit?.reason, 'stopped', 'ended by the guest, not by the kill after the grace time')
  t.is(stopped.exit?.code, 0)
  t.true((await d.consoleTail(id)).includes('power button, shutting down'))
})

maybe('qemu driver: terminal names told while the guest runs reach its /etc/hosts through its names port', async t => {
  const d = await create()
  const id = `names-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  await d.start(guest(id, 'vgrid.acpi=off'))
  await waitFor('the ready line', async () => (await d.consoleTail(id)).includes(READY_MARK) || undefined, 90_000, 50)
  // a link made after it booted, then another, then both removed: each reaches the guest, in order
  await d.setNames!(id, { db: '100.64.0.9' })
  await waitFor('the first names', async () => (await d.consoleTail(id)).includes('vgrid-guest: terminals now db=100.64.0.9') || undefined, 30_000, 50)
  await d.setNames!(id, { db: '100.64.0.9', cache: '100.64.0.10' })
  await d.setNames!(id, {})
  const out = await waitFor('the last names', async () => { const c = await d.consoleTail(id); return c.includes('vgrid-guest: terminals now none') ? c : undefined }, 30_000, 50)
  t.true(out.indexOf('terminals now db=100.64.0.9,cache=100.64.0.10') < out.indexOf('terminals now none'), out.slice(-400))
})

maybe('qemu driver: a guest whose kernel panics is a crash, not a clean exit, though QEMU (-no-reboot) ends with status 0 (bb53)', async t => {
  const d = await create()
  const id = `panic-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  // no initramfs in it: the kernel finds no root to mount and panics; panic=-1 resets the guest
  const junk = join(dataDir, 'junk-initrd')
  writeFileSync(junk, 'not an initramfs\n'.repeat(256))
  await d.start({ ...guest(id), boot: { kind: 'kernel', kernel: image!.kernel, initrd: junk, cmdline: image!.cmdline } })
  const ended = await waitFor('the guest ended', async () => { const i = await d.inspect(id); return i?.state === 'failed' || i?.state === 'stopped' ? i : undefined }, 90_000, 100)
  t.true((await d.consoleTail(id)).includes('Kernel panic - not syncing'))
  t.like(ended, { state: 'failed', exit: { reason: 'crashed', code: 0, why: `its guest's kernel panicked (vgrid vm console ${id} shows why)` } })
  t.is(ended.error, `its guest's kernel panicked (vgrid vm console ${id} shows why)`)
})

maybe('qemu driver: a guest that reboots itself ends as rebooted, no crash, though QEMU (-no-reboot) ends with status 0 as on a power-off', async t => {
  const d = await create()
  const id = `reboot-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  await d.start(guest(id, 'vgrid.reboot=1'))
  const ended = await waitFor('the guest ended', async () => { const i = await d.inspect(id); return i?.state === 'failed' || i?.state === 'stopped' ? i : undefined }, 90_000, 100)
  t.true((await d.consoleTail(id)).includes('vgrid-guest: rebooting'))
  t.like(ended, { state: 'stopped', exit: { reason: 'rebooted', code: 0 } })
  t.is(ended.error, undefined)
})

maybe('qemu driver: a kernel command line over what an x86 kernel takes, with the terminal names vgrid adds, fails the start saying so (bb54: the guest never booted and showed running)', async t => {
  const d = await create()
  const id = `longcl-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  const names = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`terminal-${String(i).padStart(2, '0')}-${'n'.repeat(40)}`, `100.64.0.${i + 1}`]))
  const err = await t.throwsAsync(d.start({ ...guest(id), overlay: { address: '100.70.0.9', names } }))
  t.regex(err?.message ?? '', /its kernel command line would be \d+ bytes, over the 2047 an x86 kernel takes \(its terminal names, vgrid\.hosts, take \d+: fewer outputs, or a shorter cmdline\)/)
  t.is((await d.inspect(id))?.state, 'failed')
})

for (const [errno, said] of [['28', 'found no space left \\(ENOSPC\\)'], ['5', 'failed a request']] as const) {
maybe(`qemu driver: a guest QEMU paused after its volume failed a write (errno ${errno}) is said to be paused, told to go on, and runs again once the disk takes the write`, async t => {
  const d = await create()
  const id = `pause${errno}-${process.pid}`
  t.teardown(async () => { try { await d.kill(id) } catch {}; try { await d.remove(id) } catch {}; await d.close() })
  // a disk whose first write fails with ENOSPC, or EIO (QEMU's blkdebug): the guest's stamp
  // at boot is that write, and QEMU pauses the guest on it (werror=stop: a volume's holders
  // out of reach past the retry time must not turn the guest's file system read-only)
  const dir = mkdtempSync(join(dataDir, 'bd-'))
  writeFileSync(join(dir, 'disk.raw'), Buffer.alloc(1024 * 1024))
  writeFileSync(join(dir, 'bd.conf'), `[inject-error]\nevent = "write_aio"\nerrno = "${errno}"\nonce = "on"\n`)
  const events: Array<{ why: string | null, at: number }> = []
  d.on('paused', e => { if (e.id === id) events.push({ why: e.why, at: e.at }) })
  // served over NBD as a volume is (qemu-nbd passes the error on as NBD_ENOSPC, as vgrid's server does)
  const sock = join(dir, 'nbd.sock')
  const nbd = spawn('qemu-nbd', ['-t', '-k', sock, '-x', 'vol1', '-f', 'raw', `blkdebug:${join(dir, 'bd.conf')}:${join(dir, 'disk.raw')}`], { stdio: 'ignore' })
  t.teardown(() => { nbd.kill('SIGTERM') })
  await waitFor('qemu-nbd\'s socket', async () => existsSync(sock) || undefined, 10_000, 50)
  await d.start({ ...guest(id, `vgrid.disks=1 vgrid.stamp=after-${errno} vgrid.acpi=off`), disks: [{ uri: `nbd+unix:///vol1?socket=${sock}` }] })
  const paused = await waitFor('the guest paused', async () => events.find(e => e.why != null), 120_000, 100)
  t.regex(paused.why!, new RegExp(`^QEMU paused the guest after a disk error \\(volume /vol1 ${said}\\): it is told to go on every 10 s`))
  // told to go on (at once, then every 10 s while it stays paused): the write runs again
  // (blkdebug fails it once only), and the guest with it
  await waitFor('the stamp written', async () => (await d.consoleTail(id)).includes(`vgrid-guest: stamped vda [after-${errno}]`) || undefined, 60_000, 100)
  const resumed = await waitFor('the guest running again', async () => events.find(e => e.why == null), 30_000, 100)
  t.true(resumed.at - paused.at <= 15_000, `went on ${resumed.at - paused.at} ms after it was paused`)
  t.is((await d.inspect(id))?.paused, undefined)
})
}
