// A qemu VM with a volume across a real restart of its holder's agent. The VM's disk is
// NBD export NAME~EPOCH of its holder's agent (pinned to the writer epoch the holder
// fenced: node/gvs/exports.ts), opened with reconnect-delay (node/dvmm/drivers/qemu.ts).
// The agent is killed (SIGKILL) right after it fed its watchdog and started again at
// once: the new agent adopts the VM (same QEMU process, same lease), QEMU reconnects to
// the new agent's NBD socket asking for the same NAME~EPOCH, the export opens at the
// pinned epoch (kept in <data-dir>/gvs-pins.json), and writes made through the VM's own
// disk after the restart land on the replicas: another host reads them.
// The guest touches its disk only at boot (its stamp, node/dvmm/image/init.ts), so the
// writes after the restart are made by the VM's QEMU on the guest's drive (HMP
// `qemu-io vgdisk0`: the same block backend and NBD connection as the guest's
// virtio-blk). An agent back too late for its watchdog (agents from the sources take
// 6-11 s) finds its VM killed: it runs again, with its disk, and the test says so.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Qmp } from '../../node/dvmm/drivers/qmp.ts'
import { nsRun } from '../../node/netns/netns.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import { agentsRunBuild, e2e, Grid, guestImage, secs, type Host } from '../harness/index.ts'
import { startTicks, until } from '../harness/vm-runs.ts'

interface VolumeView { id: string, path: string, epoch: number, nbd: string }

const build = agentsRunBuild()
/** vm-adopt.test.ts's bound: an agent back this soon after the SIGKILL should have fed its watchdog in time (logged, not asserted: a loaded machine misses it) */
const ADOPT_WITHIN_MS = 4000
/** the agent's fence timeout (node/agent.ts) and DVMM's takeover margin */
const TAKEOVER_MS = 5000 + 1500
const MiB = 1024 * 1024
/** restarts tried until one is adopted */
const RESTARTS = 5


/** one HMP command on the VM's QMP socket (QEMU takes one QMP client at a time: the agent's may be on it) */
async function hmp (sock: string, line: string): Promise<void> {
  await until(`QEMU to run "${line}"`, 60_000, async () => {
    const q = await Qmp.open(sock, 5000)
    try { await q.execute('human-monitor-command', { 'command-line': line }, 40_000) } finally { q.close() }
    return true
  })
}

/** `len` bytes at `offset` of the volume, as `host` reads them through its own NBD export: the byte they all hold, or what qemu-io said */
async function readsAs (host: Host, vol: VolumeView, offset: number, len: number, byte: number): Promise<string> {
  const uri = vol.nbd.replace(/socket=[^&]*/, `socket=${join(host.dataDir, 'nbd.sock')}`)
  const out = await nsRun(host.ns, 'qemu-io', ['-f', 'raw', '-c', `read -P 0x${byte.toString(16)} ${offset} ${len}`, uri], { allowFail: true })
  return out.includes(`read ${len}/${len} bytes`) && !out.includes('Pattern verification failed') ? 'ok' : out.trim()
}

e2e('a qemu VM with a volume keeps its disk across a restart of its agent: adopted, its NBD disk reconnects at its pinned epoch and writes', async t => {
  const image = guestImage(t)
  if (image == null) return
  const grid = await Grid.start(t, {
    hosts: [{ name: 'h1', args: ['--label', 'role=edge'] }, { name: 'h2', args: ['--label', 'role=vm'] }, { name: 'h3', args: ['--label', 'role=edge'] }],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  await grid.waitAllAlive(20_000)
  const h1 = grid.host('h1')
  const h3 = grid.host('h3')
  const victim = grid.host('h2')
  const vol = await h1.api<VolumeView>('/v1/volumes', 'POST', { path: '/db/disk', size: '64M', replicas: 2 })
  await h1.api('/v1/vms', 'POST', {
    name: 'db', driver: 'qemu', cpu: 1, memory: '128M', constraints: { role: 'vm' }, volumes: ['/db/disk'],
    kernel: image.kernel, initrd: image.initrd, cmdline: `${image.cmdline} vgrid.stamp=boot1`
  })
  const qmpOf = (d: VmDetail): string => join(victim.dataDir, 'dvmm/run/qemu', d.id, 'qmp.sock')
  const consoleOf = async (): Promise<string> => (await victim.api<{ console: string }>('/v1/vms/db/console')).console
  const before = await until('db to run on h2', 60_000, async () => { const d = await victim.api<VmDetail>('/v1/vms/db'); return d.state === 'running' && d.node === victim.name && d.runtime?.pid != null ? d : undefined })
  await until('the guest to stamp its disk', 120_000, async () => (await consoleOf()).includes('stamped vda [boot1]') ? true : undefined)
  const epoch = (await h1.api<VolumeView>(`/v1/volumes/${vol.id}`)).epoch
  const pins = JSON.parse(readFileSync(join(victim.dataDir, 'gvs-pins.json'), 'utf8')) as { pins: Record<string, number[]> }
  t.deepEqual(pins.pins[vol.id], [epoch], 'the holder kept the epoch it fenced on disk')
  // the drive, from a file of the run dir: the export's key is not in the command line, which every user reads (bb48)
  const drives = readFileSync(join(victim.dataDir, 'dvmm/run/qemu', before.id, 'drives.cfg'), 'utf8')
  t.regex(drives, new RegExp(`file\\.export = "db/disk~${epoch}~[0-9A-Za-z]+"`), 'the VM\'s drive is the export pinned to that epoch (NAME~EPOCH~KEY)')
  t.false(readFileSync(`/proc/${before.runtime!.pid!}/cmdline`, 'utf8').includes(`db/disk~${epoch}~`), 'no export key in its command line')

  // a restart that comes back too late for the watchdog (a loaded machine) is tried again
  let adoptions = 0
  let run = before
  for (let attempt = 1; attempt <= RESTARTS && adoptions === 0; attempt++) {
    const pid = run.runtime!.pid!
    const ticks = startTicks(pid)
    const fired = victim.watchdogFired()
    const volEpoch = (await h1.api<VolumeView>(`/v1/volumes/${vol.id}`)).epoch
    // the VM's drive writes before the restart: object 0, beside the guest's stamp
    const pre = 0x60 + 2 * attempt
    await hmp(qmpOf(run), `qemu-io vgdisk0 "write -P 0x${pre.toString(16)} 8192 4096"`)
    await hmp(qmpOf(run), 'qemu-io vgdisk0 "flush"')
    t.is(await readsAs(h3, vol, 8192, 4096, pre), 'ok', 'h3 reads what the VM wrote before the restart')

    // killed right after it fed its watchdog: the restart gets the whole watchdog timeout
    const killedAt = await victim.killAfterFeed()
    const upMs = Date.now() - killedAt
    t.log(`restart ${attempt}: h2's agent answered again ${secs(upMs)} after the SIGKILL (${build.ok ? 'from the build in dist/' : build.reason})`)
    await grid.waitAllAlive(30_000)
    // past the time anyone could have taken the lease over, and any fence would have struck
    await new Promise(resolve => setTimeout(resolve, Math.max(0, killedAt + TAKEOVER_MS + 3000 - Date.now())))
    // the restarted agent lists the VM's process once it has found it (adopted) or started it again
    const now = await until('db to run on h2 with a process', 120_000, async () => { const d = await victim.api<VmDetail>('/v1/vms/db'); return d.state === 'running' && d.node === victim.name && d.runtime?.pid != null ? d : undefined })
    // whether it came back in time is vm-adopt.test.ts's question; this one asks about the disk of an adopted VM
    if (now.runtime?.pid === pid && startTicks(pid) === ticks) {
      adoptions++
      t.is(victim.watchdogFired(), fired, 'the watchdog did not fire')
      t.is(now.state, 'running')
      t.is(now.node, victim.name)
      t.is(now.epoch, run.epoch, 'the lease kept its epoch')
      t.is(now.runtime?.pid, pid, 'the same QEMU process: adopted, not started again')
      t.is(startTicks(pid), ticks, 'with its start time')
      t.is((await h1.api<VolumeView>(`/v1/volumes/${vol.id}`)).epoch, volEpoch, 'the volume kept its writer epoch')
      run = now
    } else {
      const why = now.history.filter(e => Date.parse(e.at) >= killedAt).map(e => `${e.event}${e.detail == null ? '' : ` (${e.detail})`}`).join(', ')
      t.log(`restart ${attempt}: not adopted (back ${upMs <= ADOPT_WITHIN_MS ? 'within' : 'after'} ${secs(ADOPT_WITHIN_MS)}; the watchdog fired ${victim.watchdogFired() - fired} time(s); since: ${why}): the VM runs again`)
      run = now
    }

    // the VM's drive writes after the restart, through its NBD session (reconnected when
    // adopted): to the object it wrote before, and to one it never touched (every
    // replica checks the writer epoch)
    const post = pre + 1
    await hmp(qmpOf(run), `qemu-io vgdisk0 "write -P 0x${post.toString(16)} 8192 4096"`)
    const fresh = 4 * MiB * (1 + attempt) // object 1 + attempt, within the 64 MiB volume
    await hmp(qmpOf(run), `qemu-io vgdisk0 "write -P 0x${post.toString(16)} ${fresh} 4096"`)
    await hmp(qmpOf(run), 'qemu-io vgdisk0 "flush"')
    t.is(await readsAs(h3, vol, 8192, 4096, post), 'ok', 'h3 reads what the VM wrote after the restart')
    t.is(await readsAs(h1, vol, fresh, 4096, post), 'ok', 'and h1, on an object first written after it')
  }
  if (adoptions === 0) t.log(`WARNING: none of ${RESTARTS} restarts came back in time to adopt the VM (a loaded machine, or agents from the sources): the adoption path was not tested`)
  t.is(await readsAs(h3, vol, 0, 1, 'b'.charCodeAt(0)), 'ok', 'the guest\'s stamp ("boot1") is still there')
  const con = await consoleOf()
  t.notRegex(con, /I\/O error|Buffer I\/O error/, 'the guest saw no I/O error')
  await h1.api('/v1/vms/db', 'DELETE')
})
