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
