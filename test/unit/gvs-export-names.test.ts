// What logs and health show of an export name: never a VM disk's key (bb29: the health
// message every local user reads showed it, and with it a client of the NBD socket
// opened the disk as the VM's own writer).
import test from 'ava'
import { exportLabel, exportVolume, pinnedName } from '../../node/gvs/export-names.ts'
import { IoFailures } from '../../node/gvs/io-failures.ts'

test('a pinned export name is shown without its key; the volume it opens is its path', t => {
  const name = pinnedName('shop/db', 1298249, 'd9253be8bd3a5cc59c18d9ef')
  t.is(exportLabel(name), 'shop/db~1298249')
  t.is(exportVolume(name), 'shop/db')
  t.is(exportLabel('shop/db'), 'shop/db')
  t.is(exportVolume('shop/db@nightly'), 'shop/db@nightly')
  t.is(exportLabel(null), null)
  // the health message, as the service feeds it
  const f = new IoFailures()
  f.failed(exportVolume(name), 'write', 'EIO')
  const [p] = f.problems()
  t.false(p!.message.includes('d9253be8'), p!.message)
  t.regex(p!.message, /\/shop\/db: 1 failed/)
})
