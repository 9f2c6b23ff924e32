// A qemu VM boots with a volume of the volume store attached over NBD by its holder's
// agent, and finds its disk as it left it when it runs on another host: written first
// through NBD on a host that is not the holder, then by the guest itself; drained to
// another host, it reads what it wrote. Each start moves the volume's writer epoch on.
import { nsRun } from '../../node/netns/netns.ts'
import type { VmDetail } from '../../node/dvmm/vms.ts'
import { e2e, Grid, guestImage } from '../harness/index.ts'
import { until } from '../harness/vm-runs.ts'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'

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
  // the whole line: under load the serial console is read while the guest still prints it
  const c2 = await until('the guest on the new host to read its disk', 90_000, async () => { const c = await consoleOn(second.node!); return /vgrid-guest: disk vda \[[^\]\n]*\]/.test(c) ? c : undefined })
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

/** a boot sector that prints `msg` on the first serial port and halts (x86 real mode, loaded at 0:7c00) */
function bootSector (msg: string): Buffer {
  const code = [
    0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0xFC, // cli; xor ax, ax; mov ds, ax; cld
    0xBA, 0xF8, 0x03, // mov dx, 0x3f8 (COM1)
    0xBE, 0x17, 0x7C, // mov si, 0x7c17 (the message, after this code)
    0xAC, 0x84, 0xC0, 0x74, 0x03, // lodsb; test al, al; jz halt
    0xEE, 0xEB, 0xF8, // out dx, al; jmp lodsb
    0xF4, 0xEB, 0xFD // halt: hlt; jmp halt
  ]
  const b = Buffer.alloc(512)
  Buffer.from(code).copy(b)
  b.write(`${msg}\n\0`, code.length, 'latin1')
  b[510] = 0x55
  b[511] = 0xAA
  return b
}

e2e('a qemu VM with neither kernel nor image boots from its first volume, imported with vol import (bb29)', async t => {
  if (guestImage(t) == null) return // QEMU and its firmware are there
  const grid = await Grid.start(t, { hosts: 2, args: ['--capacity', 'cpu=2,mem=1G,disk=10G'] })
  await grid.waitAllAlive(20_000)
  const h1 = grid.host('h1')
  const file = join(grid.dir, 'boot.raw')
  await writeFile(file, Buffer.concat([bootSector('vgrid: booted from a volume'), Buffer.alloc(1024 * 1024 - 512)]))
  await h1.api('/v1/volumes', 'POST', { path: '/os/root', size: '16M', replicas: 2 })
  const imported = await h1.vgrid(['vol', 'import', file, '/os/root'], 120_000)
  t.is(imported.code, 0, imported.stderr)
  await h1.api('/v1/vms', 'POST', { name: 'bootvol', driver: 'qemu', cpu: 1, memory: '64M', volumes: ['/os/root'] })
  const d = await until('bootvol to run', 60_000, async () => { const x = await h1.api<VmDetail>('/v1/vms/bootvol'); return x.state === 'running' && x.node != null ? x : undefined })
  const c = await until('its boot sector to print', 60_000, async () => { const x = (await grid.host(d.node!).api<{ console: string }>('/v1/vms/bootvol/console')).console; return x.includes('vgrid: booted from a volume') ? x : undefined })
  t.regex(c, /vgrid: booted from a volume/)
  await h1.api('/v1/vms/bootvol', 'DELETE')
})
