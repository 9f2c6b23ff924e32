// Removes everything the VM drivers and the watchdog of one data dir left on this
// machine, after its agent is gone for good (test teardown, `vgrid demo --stop`): the
// watchdog supervisor, every VM's processes (by pid checked against its start time,
// and by its cgroups), its namespace and host links, and its cgroups. All found from
// the data dir's own records, never by a name pattern.
import { readFileSync } from 'node:fs'
import { deleteNamespace, ip } from '../netns/netns.ts'
import { RunDirs, sameProcessAlive, type VmRecord } from './drivers/common.ts'
import type { DriverName } from './drivers/types.ts'
import { killGroups, removeGroups } from './host/cgroups.ts'
import { watchdogPaths } from './watchdog/paths.ts'

const DRIVERS: DriverName[] = ['process', 'qemu']

export async function reapDataDir (dataDir: string): Promise<number> {
  let n = 0
  // the supervisor first: it must not be the one racing us over the same VMs
  try {
    const p = JSON.parse(readFileSync(watchdogPaths(dataDir).pid, 'utf8')) as { pid: number, startTicks: number, bootId?: string }
    if (sameProcessAlive(p.pid, p.startTicks, p.bootId)) { process.kill(p.pid, 'SIGKILL'); n++ }
  } catch {}
  for (const driver of DRIVERS) {
    const runs = new RunDirs(dataDir, driver)
    for (const id of runs.ids()) {
      const rec = runs.read(id)
      if (rec != null) n += await reapVm(rec)
    }
  }
  return n
}

async function reapVm (rec: VmRecord): Promise<number> {
  let n = 0
  if (rec.pid != null && rec.pidStartTicks != null && sameProcessAlive(rec.pid, rec.pidStartTicks, rec.bootId)) {
    // the VM runs in its own session: its process group is its whole tree
    try { process.kill(-rec.pid, 'SIGKILL') } catch {}
    try { process.kill(rec.pid, 'SIGKILL') } catch {}
    n++
  }
  n += killGroups(rec.cgroups)
  const net = rec.network
  if (net?.netns != null) await deleteNamespace(net.netns, 0)
  // the node's end lives where the agent ran; only a namespace named in the record is ours to reach into
  if (net?.hostIf != null && rec.nodeNetns != null) await ip(['-n', rec.nodeNetns, 'link', 'del', net.hostIf], { allowFail: true })
  await removeGroups(rec.cgroups)
  return n
}
