// Why QEMU paused a guest, as the qemu driver says it (pure): the disks whose io-status
// is not ok, a volume named by its path (a tester read the pinned export name).
import test from 'ava'
import { pausedWhy, volumeOfExport } from '../../node/dvmm/drivers/qemu.ts'

test('a volume is named by its path, not the pinned export its disk opens', t => {
  t.is(volumeOfExport('t/e~500109~e1b44e13a2b31d69341ac862'), '/t/e')
  t.is(volumeOfExport('shop/db~3'), '/shop/db')
  t.is(volumeOfExport('plain'), '/plain')
  t.is(volumeOfExport('a%20b~1~ff'), '/a b')
})

test('pausedWhy names the disks that failed, and says what vgrid does about it', t => {
  const disks = [{ uri: 'nbd+unix:///t/e~500109~e1b44e?socket=/var/lib/vgrid/nbd.sock' }]
  const blocks = [
    { device: 'virtio0', 'io-status': 'nospace', inserted: { file: 'json:{"driver":"raw","file":{"export":"t/e~500109~e1b44e","driver":"nbd"}}' } },
    { device: 'virtio1', 'io-status': 'failed', inserted: { file: '/srv/other.raw' } },
    { device: 'virtio2', 'io-status': 'ok' }
  ]
  t.is(pausedWhy(blocks, disks), 'QEMU paused the guest after a disk error (volume /t/e found no space left (ENOSPC); disk virtio1 failed a request): it is told to go on every 10 s, and runs again once the disk takes the write')
  // an answer of no known shape: still said, without the disks
  t.regex(pausedWhy('nonsense', disks), /^QEMU paused the guest after a disk error: it is told/)
})

test('a VM\'s disks go to QEMU as a config file, in order, the export names (with their keys) out of its command line (bb48)', async t => {
  const { drivesConfig, NBD_RECONNECT_S } = await import('../../node/dvmm/drivers/qemu.ts')
  const cfg = drivesConfig([{ uri: 'nbd+unix:///shop/db~3~abcdef0123456789?socket=/var/lib/vgrid/nbd.sock' }, { uri: '/images/x.raw' }])
  t.is(cfg, `[drive "vgdisk0"]\n  driver = "raw"\n  file.driver = "nbd"\n  file.server.type = "unix"\n  file.server.path = "/var/lib/vgrid/nbd.sock"\n  file.export = "shop/db~3~abcdef0123456789"\n  file.reconnect-delay = "${NBD_RECONNECT_S}"\n  if = "virtio"\n  cache = "none"\n  werror = "stop"\n` +
    '\n[drive "vgdisk1"]\n  file = "/images/x.raw"\n  format = "raw"\n  if = "virtio"\n  cache = "none"\n  werror = "stop"\n')
  t.throws(() => drivesConfig([{ uri: '/images/a"b.raw' }]), { message: /disks\[0\]: its file holds a quote/ })
})
