// `vgrid vm update` of what a VM boots or runs (node/dvmm/vm-update.ts, boot-fields.ts):
// a qemu VM's kernel, initrd, command line or image, a process VM's command and user,
// checked as a create checks them; one kind of boot replaces another; files looked for
// only where the update names new ones; and the digest a run's lease records of what it
// boots, which `vm show` compares with the spec.
import test from 'ava'
import { changeSummary, runsForUpdate, vmUpdateOf } from '../../node/dvmm/vm-update.ts'
import { bootDigest, bootLine, type FileCheck } from '../../node/dvmm/boot-fields.ts'
import type { Vm } from '../../crdt/index.ts'
import type { NodeView } from '../../crdt/placement/index.ts'
import { ValidationError } from '../../node/errors.ts'

const MiB = 2 ** 20
const NODES: NodeView[] = [{ id: 'a', name: 'a', alive: true, draining: false, capacity: { cpu: 4, memoryBytes: 8 * 2 ** 30 }, labels: {} }]
const kernelVm = (extra: Partial<Vm['spec']> = {}): Pick<Vm, 'spec'> => ({ spec: { driver: 'qemu', cpu: 1, memoryBytes: 256 * MiB, volumes: [], constraints: {}, kernel: '/k/vmlinux', initrd: '/k/initrd', cmdline: 'console=ttyS0', ...extra } })
const processVm = (extra: Partial<Vm['spec']> = {}): Pick<Vm, 'spec'> => ({ spec: { driver: 'process', cpu: 1, memoryBytes: 64 * MiB, volumes: [], constraints: {}, command: ['/bin/sleep', '60'], ...extra } })
/** every file exists */
const here: FileCheck = () => null
const vols: Record<string, { id: string, path: string, snapshots: string[] }> = { '/os/root': { id: 'vol-r', path: '/os/root', snapshots: [] } }
const lookup = { find: (ref: string) => vols[ref] ?? Object.values(vols).find(v => v.id === ref), usedBy: () => undefined }

function refused (t: import('ava').ExecutionContext, body: unknown, v: Pick<Vm, 'spec'>, field: string, msg: RegExp, files: FileCheck = here): void {
  const err = t.throws(() => vmUpdateOf(body, v, NODES, lookup, files), { instanceOf: ValidationError })
  t.is((err as ValidationError & { field: string }).field, field, String(err?.message))
  t.regex(err!.message, msg)
}

test('a kernel VM gets another command line, initrd or kernel; null removes the initrd and the command line', t => {
  const u = vmUpdateOf({ cmdline: 'console=ttyS0 quiet' }, kernelVm(), NODES, lookup, here)
  t.deepEqual(u.changed, ['cmdline'])
  t.like(u.spec, { kernel: '/k/vmlinux', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet' })
  const none = vmUpdateOf({ initrd: null, cmdline: null }, kernelVm(), NODES, lookup, here)
  t.deepEqual(none.changed, ['initrd', 'cmdline'])
  t.false('initrd' in none.spec)
  t.false('cmdline' in none.spec)
  t.deepEqual(vmUpdateOf({ kernel: '/k/vmlinux', cmdline: 'console=ttyS0' }, kernelVm(), NODES, lookup, here).changed, [], 'already so')
  t.deepEqual(vmUpdateOf({ kernel: '/k/vmlinux-2' }, kernelVm(), NODES, lookup, here).changed, ['kernel'])
})

test('one kind of boot replaces another: an image a kernel (with its initrd and command line), a kernel an image, a boot volume either', t => {
  const toImage = vmUpdateOf({ image: '/img/disk.qcow2' }, kernelVm(), NODES, lookup, here)
  t.deepEqual(toImage.changed, ['kernel', 'initrd', 'cmdline', 'image'])
  t.deepEqual([toImage.spec.kernel, toImage.spec.initrd, toImage.spec.cmdline, toImage.spec.image], [undefined, undefined, undefined, '/img/disk.qcow2'])
  const toKernel = vmUpdateOf({ kernel: '/k/vmlinux', cmdline: 'x=1' }, { spec: { ...kernelVm().spec, kernel: undefined, initrd: undefined, cmdline: undefined, image: '/img/disk.qcow2' } }, NODES, lookup, here)
  t.deepEqual(toKernel.changed, ['kernel', 'cmdline', 'image'])
  t.is(toKernel.spec.image, undefined)
  // given both, which was meant is not known
  refused(t, { kernel: '/k/vmlinux', image: '/img/disk.qcow2' }, kernelVm(), 'image', /kernel and image: give kernel \(with initrd, cmdline\) or image, not both/)
  // a boot volume: it boots from its first volume instead
  const v = kernelVm({ volumes: ['vol-r'] })
  const toVolume = vmUpdateOf({ bootVolume: '/os/root' }, v, NODES, lookup, here)
  t.deepEqual(toVolume.changed, ['kernel', 'initrd', 'cmdline'])
  t.deepEqual(toVolume.spec.volumes, ['vol-r'])
  refused(t, { bootVolume: '/os/root', kernel: '/k/vmlinux-2' }, v, 'bootVolume', /^bootVolume: given with kernel: a VM boots from a volume, a kernel or an image, one of them: give bootVolume or kernel$/)
  // and back: a kernel given to a VM that boots from its volume keeps the volume as a disk
  const back = vmUpdateOf({ kernel: '/k/vmlinux' }, { spec: toVolume.spec }, NODES, lookup, here)
  t.deepEqual(back.changed, ['kernel'])
  t.deepEqual(back.spec.volumes, ['vol-r'])
  // a kernel taken away from a VM with volumes: its first would be its boot disk, only when said (as bb52's reorder)
  refused(t, { kernel: null, initrd: null, cmdline: null }, v, 'bootVolume', /^bootVolume: with neither kernel nor image this VM boots from its first volume, \/os\/root; if that is meant, say so \(bootVolume, --boot-volume \/os\/root\)$/)
  t.deepEqual(vmUpdateOf({ kernel: null, initrd: null, cmdline: null, bootVolume: 'vol-r' }, v, NODES, lookup, here).changed, ['kernel', 'initrd', 'cmdline'])
  // a kernel taken away from a VM with no volume: nothing to boot
  refused(t, { kernel: null, initrd: null, cmdline: null }, kernelVm(), 'kernel', /a qemu VM needs a kernel \(direct boot\), an image, or a volume to boot from/)
  // an initrd without a kernel would be ignored
  refused(t, { kernel: null, initrd: '/k/initrd' }, kernelVm({ volumes: ['vol-r'] }), 'initrd', /goes with a kernel \(direct boot\), and none is given/)
})

test('files are looked for on this node only where the update names new ones', t => {
  const nowhere: FileCheck = p => `${p} does not exist or is not a file`
  // the kernel it has may be on the nodes its constraints bind it to only: not judged again
  t.deepEqual(vmUpdateOf({ cmdline: 'quiet' }, kernelVm(), NODES, lookup, nowhere).changed, ['cmdline'])
  t.deepEqual(vmUpdateOf({ memory: '512M' }, kernelVm(), NODES, lookup, nowhere).changed, ['memory'])
  // nor its command line, by a check made since it was created (rv56: a new size was refused naming cmdline)
  t.deepEqual(vmUpdateOf({ memory: '512M' }, kernelVm({ cmdline: 'vgrid.ip=ADDR/PREFIX' }), NODES, lookup, here).changed, ['memory'])
  t.deepEqual(vmUpdateOf({ volumes: ['/os/root'] }, kernelVm({ cmdline: 'vgrid.ip=ADDR/PREFIX' }), NODES, lookup, here).changed, ['volumes'])
  refused(t, { kernel: '/k/other' }, kernelVm(), 'kernel', /^kernel: \/k\/other does not exist or is not a file$/, nowhere)
  refused(t, { initrd: '/k/other' }, kernelVm(), 'initrd', /^initrd: \/k\/other does not exist/, nowhere)
  refused(t, { image: '/os/root' }, kernelVm(), 'image', /\/os\/root is a volume, not a file of this node: to boot from it, attach it as the first volume/, nowhere)
  refused(t, { kernel: 'vmlinux' }, kernelVm(), 'kernel', /vmlinux is not an absolute path/)
  refused(t, { cmdline: 'vgrid.ip=ADDR/PREFIX' }, kernelVm(), 'cmdline', /vgrid\.ip/)
  refused(t, { cmdline: 5 }, kernelVm(), 'cmdline', /must be a non-empty string/)
  // a process VM's program likewise, where no constraint binds it to nodes that may have it
  refused(t, { command: ['/opt/new/server'] }, processVm(), 'command[0]', /\/opt\/new\/server does not exist/, nowhere)
  t.deepEqual(vmUpdateOf({ command: ['/bin/sleep', '120'] }, processVm(), NODES, lookup, nowhere).changed, ['command'], 'the same program, other arguments')
})

test("a process VM's command and user; the fields of the other kind are refused", t => {
  const u = vmUpdateOf({ command: ['/bin/sh', '-c', 'exec sleep 5'], user: 'nobody' }, processVm(), NODES, lookup, here)
  t.deepEqual(u.changed, ['command', 'user'])
  t.deepEqual(u.spec.command, ['/bin/sh', '-c', 'exec sleep 5'])
  t.deepEqual(vmUpdateOf({ user: null }, processVm({ user: 'nobody' }), NODES, lookup, here).changed, ['user'], 'back to root: said, as --no-user')
  refused(t, { command: null }, processVm(), 'command', /a process VM needs a command/)
  refused(t, { command: [] }, processVm(), 'command', /must be a non-empty array of strings/)
  refused(t, { command: ['bin/x'] }, processVm(), 'command[0]', /is a relative path/)
  refused(t, { user: 'root' }, processVm(), 'user', /root is root|is root: --user runs the command as another user/)
  refused(t, { kernel: '/k/vmlinux' }, processVm(), 'kernel', /a process VM runs its command; kernel is for a qemu VM/)
  refused(t, { command: ['/bin/true'] }, kernelVm(), 'command', /a qemu VM boots a kernel or an image; a command is for a process VM/)
  refused(t, { user: 'nobody' }, kernelVm(), 'user', /only a process VM runs as a user of its node/)
  refused(t, { bootVolume: '/os/root' }, processVm({ volumes: [] }), 'bootVolume', /a process VM runs its command; it boots from no volume/)
})

test('what it boots waits until nothing of the VM runs, is said in its history, and is what the run records', t => {
  t.true(runsForUpdate(['cmdline'], { status: 'running', own: true }))
  t.true(runsForUpdate(['command'], { status: 'claimed', own: true }))
  t.false(runsForUpdate(['image'], { status: 'stopped', own: true }))
  const before = kernelVm().spec
  const after = vmUpdateOf({ cmdline: `console=ttyS0 ${'x'.repeat(80)}` }, { spec: before }, NODES, lookup, here).spec
  t.is(changeSummary(before, after, ['cmdline']), `cmdline console=ttyS0 -> console=ttyS0 ${'x'.repeat(43)}...`)
  t.is(changeSummary(processVm().spec, { ...processVm().spec, command: ['/bin/true'], user: 'nobody' }, ['command', 'user']), 'command /bin/sleep 60 -> /bin/true; user root -> nobody')
  // the digest a run's lease records: another boot is another digest; labels and size are no part of it
  t.is(bootDigest(before), bootDigest({ ...before }))
  t.not(bootDigest(before), bootDigest(after))
  t.not(bootDigest(processVm().spec), bootDigest(processVm({ user: 'nobody' }).spec))
  t.is(bootDigest(before), bootDigest({ ...before, labels: { a: 'b' }, cpu: 3, memoryBytes: 1 } as typeof before))
})

test('bootLine: what a VM runs or boots, in the one line vm show gives it (bb53: only the JSON had it)', t => {
  t.is(bootLine(processVm().spec), 'runs /bin/sleep 60')
  t.is(bootLine(processVm({ command: ['/bin/sh', '-c', 'echo "v3" $(id -u)', ''] }).spec), 'runs /bin/sh -c "echo \\"v3\\" $(id -u)" ""', 'an argument with spaces or quotes quoted, an empty one shown')
  t.is(bootLine(kernelVm().spec), 'boots kernel /k/vmlinux, initrd /k/initrd, command line "console=ttyS0"')
  t.is(bootLine(kernelVm({ initrd: undefined, cmdline: undefined }).spec), 'boots kernel /k/vmlinux')
  t.is(bootLine(kernelVm({ kernel: undefined, initrd: undefined, cmdline: undefined, image: '/img/disk.qcow2' }).spec), 'boots image /img/disk.qcow2')
  t.is(bootLine(kernelVm({ kernel: undefined, initrd: undefined, cmdline: undefined, volumes: ['vol-r'] }).spec, '/os/root'), 'boots from its first volume, /os/root')
})
