// The format of a vol import/export file comes from --format, else from its name: an
// export to x.vmdk wrote a raw file under that name (a tester), and a raw file named
// .qcow2 failed in qemu-img after the import had said the volume "may hold part of" it.
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkImage, copyFailed, imageFormat, othersWhoMayWrite, zeroCommands } from '../../node/gvs/cli-copy.ts'
import { CliError, type ApiClient } from '../../node/cli/client.ts'

test('the name says the format: .qcow2 qcow2; .raw, .img, none or one naming no image format raw', t => {
  for (const sub of ['import', 'export'] as const) {
    t.is(imageFormat(sub, '/tmp/a.qcow2', undefined), 'qcow2')
    t.is(imageFormat(sub, '/tmp/A.QCOW2', undefined), 'qcow2', 'in any case')
    for (const f of ['/tmp/a.raw', '/tmp/a.img', '/tmp/a.IMG', '/tmp/disk', '/tmp/a.iso', '/tmp/backup-2026.12.04', '/tmp/x.qcow2/disk', '.hidden']) t.is(imageFormat(sub, f, undefined), 'raw', f)
  }
})

test('a name saying a format vgrid neither writes nor reads is refused (exit 2), with the file, the format and what to do', t => {
  const e = t.throws(() => imageFormat('export', '/tmp/x.vmdk', undefined), { instanceOf: CliError })!
  t.is(e.message, '/tmp/x.vmdk: its name says vmdk, which vgrid does not write (it writes raw and qcow2): give --format raw or --format qcow2 to write that under this name, or name it .raw, .img or .qcow2')
  t.is((e as CliError).exitCode, 2)
  const i = t.throws(() => imageFormat('import', '/tmp/x.VHDX', undefined), { instanceOf: CliError })!
  t.is(i.message, '/tmp/x.VHDX: its name says vhdx, which vgrid does not read (it reads raw and qcow2): convert it first (qemu-img convert -O qcow2 /tmp/x.VHDX OUT.qcow2), or give --format raw or --format qcow2 if it is one of those')
  t.is((i as CliError).exitCode, 2)
  for (const f of ['a.vdi', 'a.vhd', 'a.qed', 'a.qcow', 'a.dmg', 'a.qcow2.gz', 'a.img.xz', 'a.zst', 'a.ova']) {
    for (const sub of ['import', 'export'] as const) t.is((t.throws(() => imageFormat(sub, f, undefined)) as CliError).exitCode, 2, `${sub} ${f}`)
  }
  // --format is the way past the name; a format it does not know is a usage error
  t.is(imageFormat('export', '/tmp/x.vmdk', 'raw'), 'raw')
  t.is(imageFormat('import', '/tmp/x.vmdk', 'qcow2'), 'qcow2')
  t.is(imageFormat('import', '/tmp/x.raw', 'qcow2'), 'qcow2')
  const bad = t.throws(() => imageFormat('export', '/tmp/x.raw', 'vmdk'))! as CliError
  t.is(bad.message, '--format "vmdk": raw or qcow2')
  t.is(bad.exitCode, 2)
})

test('an import\'s image is checked against its format before anything is written', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-fmt-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const raw = join(dir, 'r.qcow2')
  writeFileSync(raw, Buffer.alloc(65536, 0x11))
  const e = t.throws(() => { checkImage(raw, 'qcow2', false, '/prod/q') })! as CliError
  t.is(e.message, `${raw} is not a qcow2 image (it does not start as one): its name says qcow2; --format raw imports it as raw; nothing was written to /prod/q`)
  t.is(e.exitCode, 2)
  t.notRegex(e.message, /may hold part/)
  t.regex((t.throws(() => { checkImage(raw, 'qcow2', true, '/prod/q') }) as CliError).message, /is not a qcow2 image \(it does not start as one\): --format raw imports it as raw/)
  t.notThrows(() => { checkImage(raw, 'raw', true, '/prod/q') })
  const empty = join(dir, 'empty.qcow2')
  writeFileSync(empty, '')
  t.regex((t.throws(() => { checkImage(empty, 'qcow2', false, '/prod/q') }) as CliError).message, /is not a qcow2 image/)
  // a qcow2 image named as raw is one: imported as raw it would be a disk of its metadata
  const q = join(dir, 'q.img')
  writeFileSync(q, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.alloc(4096)]))
  t.notThrows(() => { checkImage(q, 'qcow2', false, '/prod/q') })
  const named = t.throws(() => { checkImage(q, 'raw', false, '/prod/q') })! as CliError
  t.is(named.message, `${q} is a qcow2 image (it starts as one), not raw as its name says: --format qcow2 imports it (--format raw its bytes as they are); nothing was written to /prod/q`)
  t.is(named.exitCode, 2)
  t.notThrows(() => { checkImage(q, 'raw', true, '/prod/q') }, '--format raw takes its bytes as they are')
  const gone = t.throws(() => { checkImage(join(dir, 'nope.raw'), 'raw', false, '/prod/q') })! as CliError
  t.regex(gone.message, /nope\.raw cannot be read \(ENOENT\): nothing was written to \/prod\/q$/)
})

test('an import qemu-img could not open wrote nothing, and says so (not "may hold part of")', async t => {
  const healthy = { request: async () => ({ path: '/prod/q', state: 'ready', health: { state: 'healthy', reasons: [] } }) } as unknown as ApiClient
  const err = await copyFailed(healthy, new CliError("qemu-img convert failed (exit 1): qemu-img: Could not open '/tmp/r.qcow2': Image is not in qcow2 format"), 'import', '/tmp/r.qcow2', '/prod/q', 'vol-1', false) as CliError
  t.is(err.message, "qemu-img convert failed (exit 1): qemu-img: Could not open '/tmp/r.qcow2': Image is not in qcow2 format: nothing was written to /prod/q")
})

test('zeroCommands: the tail past an image zeroed in pieces of 1 GiB at most (qemu-io refuses one over 2 GiB - 512: bb38), in runs of 256', t => {
  t.deepEqual(zeroCommands(2 ** 20, 4 * 2 ** 20), [[`write -z -u ${2 ** 20} ${3 * 2 ** 20}`]])
  t.deepEqual(zeroCommands(2 * 2 ** 30, 8 * 2 ** 30).flat(), [2, 3, 4, 5, 6, 7].map(g => `write -z -u ${g * 2 ** 30} ${2 ** 30}`))
  t.deepEqual(zeroCommands(0, 2 ** 30 + 512).flat(), [`write -z -u 0 ${2 ** 30}`, `write -z -u ${2 ** 30} 512`])
  const many = zeroCommands(0, 1000 * 2 ** 30)
  t.deepEqual(many.map(r => r.length), [256, 256, 256, 232])
  t.deepEqual(zeroCommands(5, 5), [])
})

test('who else may write a qcow2 to import (pure): the caller\'s own file or root\'s, its group root\'s (or a device\'s disk group), never every user (rv47, rv48)', t => {
  const file = (uid: number, gid: number, mode: number, block = false): { uid: number, gid: number, mode: number, isBlockDevice: () => boolean } => ({ uid, gid, mode, isBlockDevice: () => block })
  const DISK = 6
  // root's and the caller's own files: a vgrid group member imports its own image (rv48: refused before)
  t.is(othersWhoMayWrite(file(0, 0, 0o600), 0, DISK), undefined)
  t.is(othersWhoMayWrite(file(1000, 1000, 0o644), 1000, DISK), undefined)
  t.regex(othersWhoMayWrite(file(1000, 1000, 0o600), 0, DISK)!, /^its owner, uid 1000,$/)
  t.regex(othersWhoMayWrite(file(1001, 1001, 0o600), 1000, DISK)!, /^its owner, uid 1001,$/)
  t.regex(othersWhoMayWrite(file(0, 0, 0o646), 0, DISK)!, /^every user \(mode 646\)$/)
  t.regex(othersWhoMayWrite(file(1000, 100, 0o664), 1000, DISK)!, /^its group, gid 100 \(mode 664\),$/)
  t.is(othersWhoMayWrite(file(0, 0, 0o660), 0, DISK), undefined, 'root\'s group')
  // a logical volume or loop device: root's, of group disk, 0660 (its members may write every disk anyway)
  t.is(othersWhoMayWrite(file(0, DISK, 0o660, true), 0, DISK), undefined)
  t.regex(othersWhoMayWrite(file(0, DISK, 0o660), 0, DISK)!, /^its group, gid 6/, 'a file of group disk is not a device')
  t.regex(othersWhoMayWrite(file(0, 1234, 0o660, true), 0, DISK)!, /^its group, gid 1234/, 'a device of another group (rv48: devices skipped the check)')
})
