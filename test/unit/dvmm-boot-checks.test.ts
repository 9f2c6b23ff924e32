// A qemu VM's boot fields checked at create: an ELF kernel's memory needs (the
// appliance's kernel in 64M never booted, shown running), and vgrid.ip/vgrid.gw given
// as placeholders (image build printed them; the guest had no network).
import test from 'ava'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cmdlineProblem, elfLoadEnd, kernelMemoryProblem, KERNEL_CMDLINE_MAX, VGRID_CMDLINE_ROOM } from '../../node/dvmm/boot-checks.ts'

const MiB = 2 ** 20

/** an ELF64 little-endian header with PT_LOAD segments [paddr, memsz] (and a PT_NOTE, which does not count): a kernel's, or (`program`) an ordinary position-independent program's */
function elf (segments: Array<[number, number]>, program = false): Buffer {
  const phoff = 64
  const all: Array<[number, number, number]> = [[4, 0x100, 0x10], ...segments.map(([a, m]) => [1, a, m] as [number, number, number])]
  const b = Buffer.alloc(phoff + 56 * all.length)
  b.writeUInt32BE(0x7f454c46, 0)
  b[4] = 2
  b[5] = 1
  b.writeUInt16LE(program ? 3 : 2, 0x10)
  b.writeBigUInt64LE(BigInt(phoff), 0x20)
  b.writeUInt16LE(56, 0x36)
  b.writeUInt16LE(all.length, 0x38)
  all.forEach(([type, paddr, memsz], i) => {
    const at = phoff + i * 56
    b.writeUInt32LE(type, at)
    b.writeBigUInt64LE(program ? BigInt(paddr) : 0xffffffff80000000n + BigInt(paddr), at + 16)
    b.writeBigUInt64LE(BigInt(paddr), at + 24)
    b.writeBigUInt64LE(BigInt(memsz), at + 40)
  })
  return b
}

test('elfLoadEnd: the highest end of the loaded segments; null for what is no ELF64 kernel', t => {
  t.is(elfLoadEnd(elf([[16 * MiB, 26 * MiB], [0x3079000, 26767360]])), 0x3079000 + 26767360)
  t.is(elfLoadEnd(Buffer.from('MZ not an elf at all, a bzImage or junk'.padEnd(128))), null)
  t.is(elfLoadEnd(Buffer.alloc(10)), null)
  t.is(elfLoadEnd(elf([[0, 100 * MiB]], true)), null, 'an ordinary program given as a kernel is not judged (tests boot the node binary on the fake driver)')
  const cut = elf([[16 * MiB, MiB]]).subarray(0, 80)
  t.is(elfLoadEnd(cut), null, 'program headers past what was read: not guessed')
})

test('kernelMemoryProblem: memory below the kernel, its initrd and room to run is refused with the least to give; a bzImage is not judged', t => {
  const dir = mkdtempSync(join(tmpdir(), 'vgrid-boot-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const kernel = join(dir, 'vmlinux')
  const initrd = join(dir, 'initrd.img')
  // the appliance: loads to 74 MiB, initrd 1.2 MiB; it panicked at 80M and booted at 84M
  writeFileSync(kernel, elf([[16 * MiB, 58 * MiB]]))
  writeFileSync(initrd, Buffer.alloc(Math.round(1.2 * MiB)))
  t.is(kernelMemoryProblem(kernel, initrd, 64 * MiB, '64M'), '64M cannot boot this kernel: it loads up to 74.0 MiB of guest memory, its initrd takes 1.2 MiB more, and it needs room to run; give at least 84M, more for what the guest runs')
  t.not(kernelMemoryProblem(kernel, initrd, 80 * MiB, '80M'), null)
  t.is(kernelMemoryProblem(kernel, initrd, 84 * MiB, '84M'), null)
  t.is(kernelMemoryProblem(kernel, undefined, 83 * MiB, '83M'), null, 'no initrd: less needed')
  const bz = join(dir, 'vmlinuz')
  writeFileSync(bz, Buffer.alloc(4096, 1))
  t.is(kernelMemoryProblem(bz, initrd, 16 * MiB, '16M'), null)
  t.is(kernelMemoryProblem(join(dir, 'gone'), initrd, 16 * MiB, '16M'), null, 'unreadable: the start reports it')
})

test('cmdlineProblem: vgrid.ip and vgrid.gw, where given, are addresses (a copied placeholder is refused)', t => {
  t.is(cmdlineProblem('console=ttyS0 quiet panic=-1'), null)
  t.is(cmdlineProblem('console=ttyS0 vgrid.ip=10.1.2.3/24 vgrid.gw=10.1.2.1'), null)
  t.regex(cmdlineProblem('console=ttyS0 vgrid.ip=ADDR/PREFIX vgrid.gw=ADDR') ?? '', /^vgrid\.ip=ADDR\/PREFIX is not an IPv4 address with its prefix .*leave vgrid\.ip and vgrid\.gw out/)
  t.regex(cmdlineProblem('vgrid.ip=10.1.2.3') ?? '', /^vgrid\.ip=10\.1\.2\.3 is not/, 'a prefix is needed')
  t.regex(cmdlineProblem('vgrid.ip=10.1.2.3/33') ?? '', /^vgrid\.ip=10\.1\.2\.3\/33 is not/)
  t.regex(cmdlineProblem('vgrid.ip=10.1.2.3/24 vgrid.gw=ADDR') ?? '', /^vgrid\.gw=ADDR is not an IPv4 address/)
})

test('cmdlineProblem: the arguments vgrid adds itself are refused, and a vgrid one given twice (bb15: vgrid.disks=1 twice broke the guest\'s disk wait)', t => {
  t.regex(cmdlineProblem('console=ttyS0 quiet vgrid.disks=1 vgrid.stamp=GEN1') ?? '', /^vgrid\.disks is set by vgrid \(it adds vgrid\.name, vgrid\.disks, vgrid\.overlay, vgrid\.hosts: .*\): leave it out$/)
  t.regex(cmdlineProblem('vgrid.name=x') ?? '', /^vgrid\.name is set by vgrid/)
  t.is(cmdlineProblem('vgrid.stamp=a quiet quiet'), null, 'the init\'s own vgrid.stamp, and other arguments twice, are the user\'s')
  t.is(cmdlineProblem('vgrid.stamp=a vgrid.stamp=b'), 'vgrid.stamp is given twice')
})

test('cmdlineProblem: a command line longer than an x86 kernel takes, with room for vgrid\'s own arguments, is refused (bb54: the guest never booted and showed running)', t => {
  const most = KERNEL_CMDLINE_MAX - VGRID_CMDLINE_ROOM
  t.is(cmdlineProblem(`quiet ${'x'.repeat(most - 6)}`), null)
  t.is(cmdlineProblem(`quiet ${'x'.repeat(most - 5)}`), `is ${most + 1} bytes: an x86 kernel takes a command line of at most 2047, and vgrid adds up to 256 of its own (console=ttyS0, vgrid.name, vgrid.ip, vgrid.gw, vgrid.disks, vgrid.overlay): give at most ${most}`)
  t.regex(cmdlineProblem('é'.repeat(1000)) ?? '', /^is 2000 bytes/, 'bytes, not characters')
})
