// A boot image whose path holds a comma is opened as that path by real QEMU: unescaped,
// the rest of the path was read as more -drive options (format=qcow2, say) or failed
// the VM's start with QEMU's own error.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { imageDrive } from '../../../node/dvmm/drivers/qemu.ts'

test('a disk image path with commas is one path to QEMU', t => {
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) { t.log('qemu-system-x86_64 not installed'); t.pass(); return }
  const dir = mkdtempSync(join(tmpdir(), 'vgt-img,dir-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const image = join(dir, 'disk,format=qcow2.img')
  writeFileSync(image, Buffer.alloc(1024 * 1024))
  // the drive on no machine; QEMU opens it at once and quits (-S stops before running anything)
  const drive = imageDrive(image, 'raw').replace('if=virtio', 'if=none,id=d0')
  const r = spawnSync('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-drive', drive, '-monitor', 'stdio'], { input: 'info block\nquit\n', timeout: 20_000 })
  t.is(r.status, 0, r.stderr.toString())
  t.regex(r.stdout.toString(), /d0 \(#block\d+\): .*disk,format=qcow2\.img \(raw\)/)
})
