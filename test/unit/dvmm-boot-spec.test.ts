// What boots a VM is one thing: a command (process), or a kernel or an image (qemu).
// A tester's `vm create --kernel K --image I` was taken and the image ignored (the
// kernel is booted whenever one is given); an initrd or cmdline with an image would be
// ignored alike. The API refuses them naming the fields (400), the CLI before asking.
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { initrdProblem, kernelProblem } from '../../node/dvmm/boot-checks.ts'
import { fileProblemHere } from '../../node/dvmm/boot-fields.ts'
import { bootVolumeProblem } from '../../node/dvmm/vm-disks.ts'
import { vmDraft } from '../../node/dvmm/vms.ts'
import { bootFlagsProblem } from '../../node/dvmm/command-flags.ts'
import { toApiError } from '../../node/api/errors.ts'
import type { DocView } from '../../node/dvmm/view.ts'
import type { NodeView } from '../../crdt/placement/index.ts'

/** a FileCheck for which no kernel, initrd or image exists (programs do) */
const missing = (p: string, kind: string): string | null => kind === 'program' ? null : `${p} does not exist or is not a file`

const doc: DocView = { vms: new Map(), leases: new Map(), roll: new Map() }
const nodes: NodeView[] = [{ id: 'A', name: 'A', alive: true, draining: false, capacity: { cpu: 4, memoryBytes: 8 * 2 ** 30 }, labels: {} }]
const qemu = { name: 'q6', cpu: 1, memory: '256M', driver: 'qemu' }
/** every path given exists (the check of files on this node is not what is tested) */
const draft = (body: Record<string, unknown>): ReturnType<typeof vmDraft> => vmDraft(body, doc, nodes, () => null)
const refused = (body: Record<string, unknown>): { status: number, message: string } => {
  try {
    draft(body)
  } catch (err) {
    const e = toApiError(err)
    return { status: e.status, message: e.message }
  }
  throw new Error(`taken: ${JSON.stringify(body)}`)
}

test('POST /v1/vms: kernel and image together are refused (400), naming both', t => {
  const r = refused({ ...qemu, kernel: '/etc/passwd', image: '/etc/passwd' })
  t.is(r.status, 400)
  t.is(r.message, 'kernel and image: give kernel (with initrd, cmdline) or image, not both')
  const all = refused({ ...qemu, kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0', image: '/img' })
  t.is(all.status, 400)
  t.regex(all.message, /^kernel and image: /)
})

test('POST /v1/vms: an initrd or a cmdline without a kernel is refused, naming it', t => {
  const initrd = refused({ ...qemu, image: '/img', initrd: '/i' })
  t.is(initrd.status, 400)
  t.regex(initrd.message, /^initrd: goes with a kernel \(direct boot\), and none is given: an image or a volume boots through its own boot loader, which reads no initrd$/)
  t.regex(refused({ ...qemu, image: '/img', cmdline: 'console=ttyS0' }).message, /^cmdline: goes with a kernel \(direct boot\)/)
  // with neither kernel nor image: what is missing is said first
  t.regex(refused({ ...qemu, initrd: '/i' }).message, /^kernel: a qemu VM needs a kernel \(direct boot\), an image, or a volume to boot from/)
})

test('POST /v1/vms: a qemu VM with neither kernel nor image boots from its first volume; a volume given as the image is pointed there (bb29)', t => {
  const vols = { find: (ref: string) => ref === '/os/root' || ref === 'vol-1' ? { id: 'vol-1', path: '/os/root', snapshots: [] } : undefined, usedBy: () => undefined }
  const spec = vmDraft({ ...qemu, volumes: ['/os/root'] }, doc, nodes, () => null, vols).spec
  t.deepEqual(spec.volumes, ['vol-1'])
  t.is(spec.kernel, undefined)
  t.is(spec.image, undefined)
  let err: unknown
  try { vmDraft({ ...qemu, image: '/os/root' }, doc, nodes, missing, vols) } catch (e) { err = e }
  t.regex(toApiError(err).message, /^image: \/os\/root is a volume, not a file of this node: to boot from it, attach it as the first volume \(--volume \/os\/root\) and give no kernel or image/)
  t.regex(refused({ ...qemu, volumes: ['/os/root'], cmdline: 'x' }).message, /^cmdline: goes with a kernel/)
})

test('POST /v1/vms: a command with a kernel or an image is refused either way; one boot of each kind is taken', t => {
  t.regex(refused({ ...qemu, driver: 'process', command: ['/bin/true'], image: '/img' }).message, /^image: a process VM runs its command; image is for a qemu VM/)
  t.regex(refused({ ...qemu, command: ['/bin/true'], image: '/img' }).message, /^command: a qemu VM boots a kernel or an image; a command is for a process VM/)
  t.like(draft({ ...qemu, kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0' }).spec, { kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0' })
  const image = draft({ ...qemu, image: '/img' }).spec
  t.is(image.image, '/img')
  t.is(image.kernel, undefined)
  t.like(draft({ ...qemu, driver: 'process', memory: '16M', command: ['/bin/true'] }).spec, { command: ['/bin/true'] })
})

test('vm create: the boot flags are checked together before the API is asked', t => {
  const none = { kernel: false, initrd: false, cmdline: false, image: false, command: false }
  t.is(bootFlagsProblem({ ...none, kernel: true, image: true }), 'give --kernel (with --initrd, --cmdline) or --image, not both')
  t.is(bootFlagsProblem({ ...none, kernel: true, initrd: true, cmdline: true, image: true }), 'give --kernel (with --initrd, --cmdline) or --image, not both')
  t.is(bootFlagsProblem({ ...none, image: true, initrd: true }), '--initrd goes with --kernel (direct boot), and none is given: an --image boots through its own boot loader')
  t.is(bootFlagsProblem({ ...none, initrd: true, cmdline: true }), '--initrd and --cmdline go with --kernel (direct boot), and none is given')
  t.is(bootFlagsProblem({ ...none, command: true, image: true }), 'a command runs a process VM, --image is for a qemu VM: give one or the other')
  t.is(bootFlagsProblem({ ...none, command: true, kernel: true, initrd: true }), 'a command runs a process VM, --kernel and --initrd are for a qemu VM: give one or the other')
  for (const ok of [{ kernel: true }, { kernel: true, initrd: true, cmdline: true }, { image: true }, { command: true }, {}]) t.is(bootFlagsProblem({ ...none, ...ok }), undefined, JSON.stringify(ok))
})

test('a boot volume boots when its first sector ends in a boot signature; else the start says what it found', t => {
  const sector = Buffer.alloc(512)
  t.regex(bootVolumeProblem(sector, '/os/root') ?? '', /^its boot volume \/os\/root has nothing to boot: its first sector is all zeros/)
  sector.write('GRUB', 0)
  t.regex(bootVolumeProblem(sector, '/os/root') ?? '', /its first sector has no boot signature \(neither an MBR nor GPT's protective one\)/)
  sector[510] = 0x55
  sector[511] = 0xaa
  t.is(bootVolumeProblem(sector, '/os/root'), null)
  t.not(bootVolumeProblem(sector.subarray(0, 100), '/os/root'), null, 'a short read is no boot sector')
})

test('an initrd is an initramfs: a cpio archive or one the kernel can uncompress; any other file is refused naming it (bb53: a guest given one panicked at every start)', t => {
  const cpio = Buffer.from('070701000000000000000000')
  t.is(initrdProblem(cpio, '/i'), null, 'newc cpio (early microcode comes so)')
  t.is(initrdProblem(gzipSync(cpio), '/i'), null, 'gzip')
  for (const head of [[0x28, 0xb5, 0x2f, 0xfd, 0], [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0], [0x02, 0x21, 0x4c, 0x18], [0x42, 0x5a, 0x68, 0x39]]) t.is(initrdProblem(Uint8Array.from(head), '/i'), null, head.join(','))
  t.is(initrdProblem(Buffer.from('not an initramfs\n'), '/boot/junk'), '/boot/junk is not an initramfs: neither a cpio archive nor one compressed with gzip, bzip2, lzma, xz, lzo, lz4, zstd')
  t.is(initrdProblem(new Uint8Array(0), '/boot/empty'), '/boot/empty is empty, not an initramfs')
  t.is(initrdProblem(Buffer.from('0707'), '/i') != null, true, 'too short for its magic')
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-initrd-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  writeFileSync(join(dir, 'junk'), 'not an initramfs\n'.repeat(16))
  writeFileSync(join(dir, 'good'), gzipSync(cpio))
  t.regex(fileProblemHere(join(dir, 'junk'), 'initrd') ?? '', /junk is not an initramfs/)
  t.is(fileProblemHere(join(dir, 'good'), 'initrd'), null)
  t.regex(fileProblemHere(join(dir, 'junk'), 'kernel') ?? '', /not a kernel/, 'a kernel is looked into as a kernel')
  // through the API's check: a 400 naming initrd
  let said = ''
  try { vmDraft({ ...qemu, kernel: process.execPath, initrd: join(dir, 'junk') }, doc, nodes) } catch (err) { said = `${toApiError(err).status} ${toApiError(err).message}` }
  t.regex(said, /^400 initrd: .*junk is not an initramfs/)
})

test('a kernel is one QEMU boots: an ELF, a Linux bzImage or a multiboot image; any other file is refused naming it (bb54: it failed three starts with QEMU\'s "invalid kernel header")', t => {
  t.is(kernelProblem(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), '/k'), null, 'ELF')
  const bz = Buffer.alloc(1024)
  bz.write('HdrS', 0x202)
  t.is(kernelProblem(bz, '/k'), null, 'bzImage')
  const mb = Buffer.alloc(8192)
  mb.writeUInt32LE(0x1badb002, 4096)
  t.is(kernelProblem(mb, '/k'), null, 'multiboot, 4-aligned within 8 KiB')
  const off = Buffer.alloc(8192)
  off.writeUInt32LE(0x1badb002, 4097)
  t.is(kernelProblem(off, '/k'), '/k is not a kernel QEMU boots: neither an ELF (a vmlinux), a Linux bzImage (a vmlinuz) nor a multiboot image')
  t.is(kernelProblem(new Uint8Array(0), '/boot/empty'), '/boot/empty is empty, not a kernel')
  t.regex(kernelProblem(Buffer.from('ubuntu\n'), '/etc/hostname') ?? '', /^\/etc\/hostname is not a kernel QEMU boots/)
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-kernel-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  writeFileSync(join(dir, 'junk'), 'not a kernel\n')
  writeFileSync(join(dir, 'bz'), bz)
  t.regex(fileProblemHere(join(dir, 'junk'), 'kernel') ?? '', /junk is not a kernel QEMU boots/)
  t.is(fileProblemHere(join(dir, 'bz'), 'kernel'), null)
  let said = ''
  try { vmDraft({ ...qemu, kernel: join(dir, 'junk') }, doc, nodes) } catch (err) { said = `${toApiError(err).status} ${toApiError(err).message}` }
  t.regex(said, /^400 kernel: .*junk is not a kernel QEMU boots/)
})
