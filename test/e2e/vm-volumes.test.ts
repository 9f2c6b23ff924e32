// A qemu VM boots with a volume of the volume store attached over NBD by its holder's
// agent, and finds its disk as it left it when it runs on another host: written first
// through NBD on a host that is not the holder, then by the guest itself; drained to
// another host, it reads what it wrote. Each start moves the volume's writer epoch on.
import { nsRun } from '../../node/netns/netns.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import { e2e, Grid, guestImage } from '../harness/index.ts'
import { until } from '../harness/vm-runs.ts'
import { join } from 'node:path'

interface VolumeView { id: string, path: string, epoch: number, nbd: string }


e2e('a qemu VM boots with a volume over NBD, and finds its disk as it left it on another host', async t => {
  const image = guestImage(t)
  if (image == null) return
  const grid = await Grid.start(t, {
    hosts: [{ name: 'h1', args: ['--label', 'role=edge'] }, { name: 'h2', args: ['--label', 'role=vm'] }, { name: 'h3', args: ['--label', 'role=vm'] }],
    args: ['--capacity', 'cpu=2,mem=2G,disk=10G']
  })
  await grid.waitAllAlive(20_000)
  const h1 = grid.host('h1')
  const vol = await h1.api<VolumeView>('/v1/volumes', 'POST', { path: '/shop/disk', size: '64M', replicas: 2 })
  // h1 runs no VM: it writes the disk's first sector through its own NBD export
  await nsRun(h1.ns, 'qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 512', vol.nbd])

  // a process VM cannot have disks: refused, naming the field
  const refused = await h1.api('/v1/vms', 'POST', { name: 'p', driver: 'process', cpu: 0.1, memory: '16M', command: ['/bin/true'], volumes: ['/shop/disk'] }).then(() => null, (e: Error) => e.message)
  t.regex(refused ?? '', /volumes/)

  await h1.api('/v1/vms', 'POST', {
    name: 'store', driver: 'qemu', cpu: 1, memory: '128M', constraints: { role: 'vm' }, volumes: ['/shop/disk'],
    kernel: image.kernel, initrd: image.initrd, cmdline: `${image.cmdline} vgrid.stamp=run1`
  })
  // a second VM cannot take the same volume: one writer at a time
  const taken = await h1.api('/v1/vms', 'POST', { name: 'other', driver: 'qemu', cpu: 1, memory: '128M', volumes: ['/shop/disk'], kernel: image.kernel, initrd: image.initrd }).then(() => null, (e: Error) => e.message)
  t.regex(taken ?? '', /already a disk of VM store/)

  const consoleOn = async (node: string): Promise<string> => (await grid.host(node).api<{ console: string }>('/v1/vms/store/console')).console
  const first = await until('store to run', 60_000, async () => { const d = await h1.api<VmDetail>('/v1/vms/store'); return d.state === 'running' && d.node != null ? d : undefined })
  // its disks by path, as the user named them (vm show printed the volume's id)
  t.deepEqual(first.disks.map(x => ({ id: x.id, path: x.path })), [{ id: vol.id, path: '/shop/disk' }])
  t.is(first.disks[0]!.state, 'healthy', 'and their health while it runs')
  const shown = await h1.vgrid(['vm', 'show', 'store'])
  t.regex(shown.stdout, /^ {2}volumes \/shop\/disk$/m, shown.stdout)
  const c1 = await until('the guest to stamp its disk', 90_000, async () => { const c = await consoleOn(first.node!); return c.includes('stamped vda [run1]') ? c : undefined })
  t.regex(c1, /vgrid-guest: disk vda \[A{64}\]/, 'the guest reads what h1 wrote through NBD')
  const epoch1 = (await h1.api<VolumeView>(`/v1/volumes/${vol.id}`)).epoch
  t.true(epoch1 > 1, `the start moved the writer epoch on (${epoch1})`)

  // drain its host: stopped there (the guest shuts down, flushing), started on the other vm host
  await h1.api(`/v1/nodes/${first.node!}/drain`, 'POST')
  const second = await until('store to run on the other host', 90_000, async () => { const d = await h1.api<VmDetail>('/v1/vms/store'); return d.state === 'running' && d.node != null && d.node !== first.node ? d : undefined })
  const c2 = await until('the guest on the new host to read its disk', 90_000, async () => { const c = await consoleOn(second.node!); return c.includes('vgrid-guest: disk vda') ? c : undefined })
  t.log(`store ran on ${first.node}, then on ${second.node}: ${c2.split('\n').find(l => l.includes('disk vda'))?.trim()}`)
  t.regex(c2, /vgrid-guest: disk vda \[run1\]/, 'the disk as the guest left it on the other host')
  const epoch2 = (await h1.api<VolumeView>(`/v1/volumes/${vol.id}`)).epoch
  t.true(epoch2 > epoch1, `and the writer epoch moved on again (${epoch1} -> ${epoch2})`)

  // what the guest wrote is what every host reads
  const head = await nsRun(grid.host('h3').ns, 'qemu-io', ['-f', 'raw', '-c', 'read -P 0x72 0 1', vol.nbd.replace(/socket=[^&]*/, `socket=${join(grid.host('h3').dir, 'data', 'nbd.sock')}`)], { allowFail: true })
  // qemu-io prints the read's size whether or not the pattern matched: a mismatch is its own line
  t.regex(head, /read 1\/1 bytes/, 'the first byte read through another host')
  t.notRegex(head, /Pattern verification failed/, 'and it is "r" of run1')
  await h1.api('/v1/vms/store', 'DELETE')
})
