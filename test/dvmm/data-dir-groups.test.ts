// The groups of one data dir's VMs are found by the name they carry, also those of VMs
// that ended with no agent to remove them (a host whose agent was killed: its watchdog
// killed the VMs and left their empty groups). `vgrid demo --stop` removes them with the
// data dirs (bb21 left a qemu VM's groups behind).
import test from 'ava'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createGroups, groupsOfDataDir, probeCgroups, removeGroups, vmGroupName } from '../../node/dvmm/host/cgroups.ts'

test('groupsOfDataDir finds an ended VM\'s empty groups by its data dir, not another\'s', async t => {
  const probe = probeCgroups()
  const layout = probe.layout
  if (layout == null || process.getuid?.() !== 0) { t.pass(`no cgroups to make here: ${layout != null ? 'not root' : probe.detail}`); return }
  const dir = mkdtempSync(join(tmpdir(), 'vgt-ddgroups-'))
  const other = mkdtempSync(join(tmpdir(), 'vgt-ddgroups-'))
  const made = [
    ...createGroups(layout, vmGroupName('qemu', dir, 'vq'), { cpus: 1, memoryBytes: 64 * 2 ** 20 }),
    ...createGroups(layout, vmGroupName('process', other, 'p'), { cpus: 1, memoryBytes: 64 * 2 ** 20 })
  ]
  t.teardown(async () => { await removeGroups(made); rmSync(dir, { recursive: true, force: true }); rmSync(other, { recursive: true, force: true }) })
  const found = groupsOfDataDir(dir)
  t.deepEqual(found.sort(), made.filter(p => p.includes(vmGroupName('qemu', dir, 'vq'))).sort())
  await removeGroups(found)
  t.true(found.every(p => !existsSync(p)))
  t.deepEqual(groupsOfDataDir(dir), [])
  t.is(groupsOfDataDir(other).length, made.length - found.length, 'the other data dir\'s groups stay')
})
